from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Subprocesses' PostgreSQL sessions carry this name, so cleanup ends theirs and no other.
SUBPROCESS_APP = "wfdash-test-subprocess"


def subprocess_db_env() -> dict[str, str]:
    """Environment for a manage.py subprocess that uses this test session's database."""
    from django.db import connection

    s = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WFDASH_WORKFLOWS")}
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{s['NAME']}"
    else:
        auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
        env["DATABASE_URL"] = (
            f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
            f"?application_name={SUBPROCESS_APP}"
        )
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def subprocess_env(transactional_db: None) -> dict[str, str]:
    return subprocess_db_env()


@pytest.fixture
def spawn(subprocess_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `manage.py ARGS` in the background; every process is killed at teardown."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env={**subprocess_env, **(env or {})},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    _close_other_sessions(only=SUBPROCESS_APP)


def _close_other_sessions(only: str | None = None) -> None:
    """A killed process's PostgreSQL session can outlive it briefly and block dropping the test DB."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND (%s::text IS NULL OR application_name = %s)",
                [only, only],
            )


@pytest.fixture
def manage(subprocess_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `manage.py ARGS` to completion and return its result (exit code, stdout, stderr)."""

    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=subprocess_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def _end_stray_sessions(django_db_setup: None, django_db_blocker: object) -> Iterator[None]:
    """Torn down just before the test database is dropped: end sessions left by threads and subprocesses."""
    yield
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        _close_other_sessions()
