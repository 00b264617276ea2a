"""SQLite's WAL checkpoints, off the commit path.

By default the connection whose commit takes the WAL past 1,000 pages copies them into the
database file and syncs it inside that commit: with about 18 pages per durable step, one step
in fifty paid 10-15 ms (SQLite's p99 in bench/persistence.py). Here each process runs one
daemon thread per database file that checkpoints whenever the WAL has grown (PASSIVE: it
neither waits for nor blocks writers), on its own connection and outside the GIL. Connections
keep an automatic checkpoint only as a bound (settings' `wal_autocheckpoint`) on a WAL nobody
checkpoints.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from typing import Any

INTERVAL = 0.05
# Past this many pages, a WAL that is all copied is restarted: a writer that never pauses
# never lets SQLite start it over by itself, and it would grow to the bound.
RESTART_PAGES = 1000

log = logging.getLogger("runs.sqlite_wal")
_started: set[str] = set()
_lock = threading.Lock()


def connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Django's signal: the first connection to a database file starts its checkpointer."""
    if connection.vendor != "sqlite":
        return
    path = str(connection.settings_dict.get("NAME") or "")
    if not path or path == ":memory:" or path.startswith("file:") or not os.path.exists(path):
        return
    start(os.path.realpath(path))


def start(path: str) -> None:
    with _lock:
        if path in _started:
            return
        _started.add(path)
    threading.Thread(target=_checkpoint_forever, args=(path,), name="sqlite-wal-checkpoints", daemon=True).start()


def checkpoint(db: sqlite3.Connection) -> tuple[int, int, int]:
    """One round: copy what the WAL holds; restart it when it is long and all copied.
    Returns SQLite's (busy, pages in the WAL, pages copied) of the copy."""
    busy, pages, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    if not busy and pages >= RESTART_PAGES and copied == pages:
        # Nothing left to copy: this only waits for readers to leave the WAL (none: it skips).
        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    return busy, pages, copied


def _checkpoint_forever(path: str) -> None:
    db: sqlite3.Connection | None = None
    inode = None
    while True:
        time.sleep(INTERVAL)
        try:
            now: int | None = os.stat(path).st_ino
        except OSError:  # removed (a test database): it may come back
            now = None
        if db is not None and now != inode:
            db.close()
            db = None
        if now is None:
            continue
        try:
            if db is None:
                # mode=rw: never creates the file; timeout 0: a busy round is skipped, not waited for.
                db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0, isolation_level=None)
                inode = now
            checkpoint(db)
        except sqlite3.Error as exc:
            log.debug("WAL checkpoint of %s skipped: %s", path, exc)
            db.close() if db is not None else None
            db = None
