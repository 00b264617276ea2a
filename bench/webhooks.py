"""Webhooks: what the status-change trigger costs, and how fast a worker dispatches and delivers.

    .venv/bin/python bench/webhooks.py [--runs 2000] [--postgres] [--out bench/results/webhooks.json]

A fresh database (SQLite under /tmp, or with --postgres a scratch database on
127.0.0.1:5432 dropped afterwards). `status_change_us`: one run's `UPDATE ... SET status`
in its own transaction (what finishing a run adds to its commit), median of all, with no
endpoint (the trigger records nothing) and with one active endpoint (it inserts a
transition row). `dispatch_per_s`: transitions turned into deliveries (one endpoint).
`deliver_per_s`: deliveries signed and POSTed by one worker's webhook task to a receiver on
127.0.0.1 answering 204 (another process on the same 2 cores).
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
parser = argparse.ArgumentParser()
parser.add_argument("--runs", type=int, default=2000)
parser.add_argument("--postgres", action="store_true")
parser.add_argument("--out", type=Path)
parser.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
args = parser.parse_args()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default listen backlog (5) drops concurrent connects
    daemon_threads = True


if args.receive:
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()

PG_NAME = f"wfdash_bench_hooks_{os.getpid()}"
if args.postgres:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {PG_NAME}")
    DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{PG_NAME}"
else:
    DATABASE_URL = f"sqlite:///{Path(tempfile.mkdtemp(prefix='wfdash-bench-hooks-')) / 'hooks.sqlite3'}"
os.environ.update(
    DATABASE_URL=DATABASE_URL,
    DJANGO_SETTINGS_MODULE="wfdash.settings",
    WFDASH_WEBHOOK_ALLOW_PRIVATE="1",
    WFDASH_LOG_LEVEL="WARNING",
)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from runs import webhook_delivery, webhooks  # noqa: E402
from runs.models import Run, RunStatus, RunTransition, WebhookDelivery, WebhookEndpoint  # noqa: E402


def status_changes(n: int) -> float:
    """Median µs of one run's status change to succeeded, each in its own transaction."""
    ids = [r.id for r in Run.objects.bulk_create([Run(workflow="chain", status=RunStatus.RUNNING) for _ in range(n)])]
    times = []
    for run_id in ids:
        t = time.perf_counter()
        with transaction.atomic():
            Run.objects.filter(pk=run_id).update(status=RunStatus.SUCCEEDED, updated_at=timezone.now())
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1e6, 1)


async def deliver_all(n: int) -> float:
    task = asyncio.create_task(webhook_delivery.run_forever("bench"))
    t = time.perf_counter()
    while await WebhookDelivery.objects.filter(status="succeeded").acount() < n:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


def main() -> dict[str, Any]:
    call_command("migrate", verbosity=0)
    n = args.runs
    out: dict[str, Any] = {"database": "postgresql" if args.postgres else "sqlite", "runs": n}
    out["status_change_us_no_endpoint"] = status_changes(n)
    assert not RunTransition.objects.exists()
    # The receiver is another process, so it does not share this one's interpreter lock.
    receiver = subprocess.Popen([sys.executable, __file__, "--receive"], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/hook"
    WebhookEndpoint.objects.create(url=url, events=["succeeded"], secret=webhooks.new_secret())
    out["status_change_us_with_endpoint"] = status_changes(n)
    assert RunTransition.objects.count() == n
    t = time.perf_counter()
    while webhooks.dispatch():
        pass
    out["dispatch_per_s"] = round(n / (time.perf_counter() - t))
    assert WebhookDelivery.objects.count() == n
    elapsed = asyncio.run(deliver_all(n))
    out["deliver_per_s"] = round(n / elapsed)
    out["loadavg"] = os.getloadavg()
    receiver.terminate()
    receiver.wait()
    return out


try:
    result = main()
finally:
    connections.close_all()
    if args.postgres:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
text = json.dumps(result, indent=2)
print(text)
if args.out:
    args.out.write_text(text + "\n")
