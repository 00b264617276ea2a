"""Sweeps: time to validate and create a sweep of K variants, and server time of one poll of the
experiment's matrix (the fragment htmx fetches every 1-2 s while runs are unfinished): a poll
after a change (the whole matrix) and one that finds nothing changed (204).

    .venv/bin/python bench/experiments.py [--sizes 10,100] [--result-chars 100,10000] [--repeats 5]

A fresh SQLite database under /tmp (the embedded default); one finished chain run supplies the
checkpoint; the variants' runs are then marked finished with a result of about `result-chars`
characters differing from the base run's, so every row is diffed. Django's test client in this
process; median of `--repeats` after one warm-up. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORKDIR = Path(tempfile.mkdtemp(prefix="wfdash-bench-experiments-"))
os.environ.update(
    {
        "DATABASE_URL": f"sqlite:///{WORKDIR / 'experiments.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "wfdash.settings",
        "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    }
)
for name in ("REDIS_URL", "DEBUG"):
    os.environ.pop(name, None)

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from runs.experiments import create_sweep, version  # noqa: E402
from runs.models import Checkpoint, Run, RunStatus  # noqa: E402

STATE = {"version": 1, "store": {"steps": {"v": 3}, "sleep": {"v": 0.0}}, "queued": [], "in_flight": [],
         "unsent": [], "collect": [], "waiters": [], "awaiting_input": False}  # fmt: skip


def base_checkpoint(result_chars: int) -> Checkpoint:
    run = Run.objects.create(workflow="chain", status=RunStatus.SUCCEEDED, result={"text": "a" * result_chars})
    return Checkpoint.objects.create(
        run=run,
        workflow="chain",
        seq=1,
        snapshot_seq=1,
        last_completed_step="begin",
        input_event_type="ChainStart",
        output_event_type="Tick",
        input_event={"type": "ChainStart", "data": {"steps": 3}},
        output_event={"type": "Tick", "data": {"n": 1}},
        state=STATE,
    )


def median_ms(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100")
    parser.add_argument("--result-chars", default="100,10000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "", "pw-bench-123")
    client = Client()
    client.force_login(user)
    out: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(), "cases": []}
    for chars in [int(c) for c in args.result_chars.split(",")]:
        checkpoint = base_checkpoint(chars)
        for k in [int(s) for s in args.sizes.split(",")]:
            variants = [{"output_event": {"n": i + 1}} for i in range(k)]
            created: list[Any] = []

            def sweep(c: Checkpoint = checkpoint, v: list[Any] = variants, into: list[Any] = created) -> None:
                into.append(create_sweep(c.id, variants=v))

            create_ms = median_ms(sweep, args.repeats)
            experiment = created[-1]
            experiment.runs.update(status=RunStatus.SUCCEEDED, result={"text": "b" * chars})
            url = f"/experiments/{experiment.id}/?fragment=matrix"
            poll_ms = median_ms(lambda u=url: client.get(u), args.repeats)
            body = client.get(url).content
            unchanged = f"{url}&since={version(experiment)}"
            unchanged_ms = median_ms(lambda u=unchanged: client.get(u), args.repeats)
            assert client.get(unchanged).status_code == 204
            out["cases"].append(
                {
                    "variants": k,
                    "result_chars": chars,
                    "create_sweep_ms": create_ms,
                    "matrix_poll_ms": poll_ms,
                    "matrix_poll_bytes": len(body),
                    "unchanged_poll_ms": unchanged_ms,
                }
            )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
