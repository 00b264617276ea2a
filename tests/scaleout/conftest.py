"""A small cluster on loopback: PostgreSQL (the test database), a private Redis, two daphne, two workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.conftest import SUBPROCESS_APP

ROOT = Path(__file__).resolve().parents[2]
APP_NAME = "wfdash-cluster"
LOGS = Path(os.environ.get("WFDASH_TEST_OUTPUT", ROOT / "test-output")) / "logs" / "scaleout"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class PrivateRedis:
    """A Redis of this test's own, so it can be killed and restarted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("private redis did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@dataclass
class Cluster:
    env: dict[str, str]
    redis: PrivateRedis
    servers: list[str] = field(default_factory=list)
    workers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    def popen(self, args: list[str], **env: str) -> subprocess.Popen[str]:
        LOGS.mkdir(parents=True, exist_ok=True)
        name = "-".join(a for a in args[2:4] if not a.startswith("-")) or "proc"
        log = open(LOGS / f"{name}-{len(self.procs)}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args, env={**self.env, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        self.procs.append(proc)
        return proc

    def start_server(self) -> str:
        port = free_port()
        self.popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wfdash.asgi:application"])
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/healthz")
        self.servers.append(base)
        return base

    def start_worker(self, name: str) -> subprocess.Popen[str]:
        proc = self.popen([sys.executable, "manage.py", "wfworker", "--worker-id", name, "--poll-interval", "0.05"])
        self.workers[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.redis.kill()


@pytest.fixture
def cluster(subprocess_env: dict[str, str]) -> Iterator[Cluster]:
    if connection.vendor != "postgresql":
        pytest.fail("the scale-out tests need PostgreSQL: run them with DATABASE_URL=postgres://... (.ci/test does)")
    redis = PrivateRedis()
    redis.start()
    env = {**subprocess_env, "REDIS_URL": redis.url, "WFDASH_LEASE_SECONDS": "2", "DB_CONN_MAX_AGE": "60"}
    # Tagged so drills (and teardown) can cut exactly the cluster's connections.
    env["DATABASE_URL"] = env["DATABASE_URL"].replace(SUBPROCESS_APP, APP_NAME)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    c = Cluster(env=env, redis=redis)
    try:
        c.start_server()
        c.start_server()
        c.start_worker("w1")
        c.start_worker("w2")
        yield c
    finally:
        c.stop()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [APP_NAME]
            )
