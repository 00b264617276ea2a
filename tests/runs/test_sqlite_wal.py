"""SQLite's WAL is checkpointed by a thread of its own, not inside a durable step's commit."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from runs import sqlite_wal


def _db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # as if the bound were never reached
    db.execute("CREATE TABLE t (x TEXT)")
    return db


def _wal_pages(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def test_a_round_copies_the_wal_and_restarts_it_once_it_is_long(tmp_path: Path) -> None:
    writer = _db(tmp_path / "db.sqlite3")
    checkpointer = sqlite3.connect(f"file:{tmp_path / 'db.sqlite3'}?mode=rw", uri=True, timeout=0, isolation_level=None)
    for _ in range(sqlite_wal.RESTART_PAGES + 50):
        writer.execute("INSERT INTO t VALUES (?)", ["x" * 3000])  # a page or more each
    busy, pages, copied = sqlite_wal.checkpoint(checkpointer)
    assert (busy, copied) == (0, pages) and pages > sqlite_wal.RESTART_PAGES
    writer.execute("INSERT INTO t VALUES ('after')")
    assert _wal_pages(writer) < 10  # the next write started the WAL over
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == sqlite_wal.RESTART_PAGES + 51


def test_a_round_while_a_reader_holds_the_wal_copies_what_it_can_and_waits_for_nothing(tmp_path: Path) -> None:
    writer = _db(tmp_path / "db.sqlite3")
    writer.execute("INSERT INTO t VALUES ('before')")
    reader = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # holds this snapshot
    for _ in range(sqlite_wal.RESTART_PAGES + 50):
        writer.execute("INSERT INTO t VALUES (?)", ["x" * 3000])
    checkpointer = sqlite3.connect(tmp_path / "db.sqlite3", timeout=0, isolation_level=None)
    busy, pages, copied = sqlite_wal.checkpoint(checkpointer)  # returns at once
    assert busy == 0 and copied < pages
    reader.execute("COMMIT")
    assert sqlite_wal.checkpoint(checkpointer)[2] == pages  # the rest, once the reader left


def test_each_database_file_gets_one_thread_and_memory_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[str] = []
    monkeypatch.setattr(sqlite_wal, "_started", set())
    monkeypatch.setattr(sqlite_wal.threading, "Thread", lambda target, args, **kw: _Recorder(started, args[0]))
    path = tmp_path / "db.sqlite3"
    _db(path)

    class Conn:
        vendor = "sqlite"

        def __init__(self, name: str) -> None:
            self.settings_dict = {"NAME": name}

    for name in (str(path), str(path), ":memory:", "file:memdb?mode=memory", str(tmp_path / "missing.sqlite3")):
        sqlite_wal.connection_created(None, Conn(name))
    assert started == [str(path.resolve())]


class _Recorder:
    def __init__(self, started: list[str], path: str) -> None:
        self.started, self.path = started, path

    def start(self) -> None:
        self.started.append(self.path)


@pytest.mark.django_db
def test_the_thread_runs_in_this_test_process() -> None:
    from django.db import connection

    connection.ensure_connection()
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's WAL")
    assert "sqlite-wal-checkpoints" in {t.name for t in threading.enumerate()}
