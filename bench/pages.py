"""Run pages by run length: server time, HTML bytes and Chromium load time of the run page of
a 100-checkpoint run beside a 100,000-checkpoint one (issue "Linear cost ...", point 5).

    .venv/bin/python bench/pages.py [--sizes 100,100000] [--repeats 5] [--out bench/results/pages.json]

Runs are bulk-inserted into a fresh SQLite database (the embedded default) under /tmp; the
server time is Django's test client in this process (median of `--repeats` after one warm-up,
which also fills the per-process summary cache; the first, cold view is reported apart);
the load time is Chromium (Playwright, /usr/bin/chromium) against daphne on a free port, from
navigation start to the load event, median of 3. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WORKDIR = Path(tempfile.mkdtemp(prefix="wfdash-bench-pages-"))
DB = WORKDIR / "pages.sqlite3"
ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")},
    "DATABASE_URL": f"sqlite:///{DB}",
    "DJANGO_SETTINGS_MODULE": "wfdash.settings",
    "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
    "PYTHONPATH": str(ROOT),
}
os.environ.update(ENV)

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from runs.models import Checkpoint, Run, RunStatus  # noqa: E402

STATE = {"version": 1, "store": {"steps": {"v": 3}}, "queued": [], "in_flight": [], "unsent": [], "collect": [],
         "waiters": [], "awaiting_input": False}  # fmt: skip


def make_run(n: int) -> str:
    run = Run.objects.create(workflow="chain", status=RunStatus.SUCCEEDED, checkpoint_count=n, result={"ticks": n})
    t0 = timezone.now() - timedelta(hours=2)
    batch: list[Checkpoint] = []
    for seq in range(1, n + 1):
        batch.append(
            Checkpoint(
                run=run, workflow="chain", seq=seq, snapshot_seq=seq,
                last_completed_step="begin" if seq == 1 else "tick",
                input_event_type="ChainStart" if seq == 1 else "Tick", output_event_type="Tick",
                input_event={"type": "Tick", "data": {"n": seq}}, output_event={"type": "Tick", "data": {"n": seq + 1}},
                state=STATE, created_at=t0 + timedelta(milliseconds=20 * seq), duration_ms=5.0,
            )
        )  # fmt: skip
        if len(batch) == 5000:
            Checkpoint.objects.bulk_create(batch)
            batch = []
    Checkpoint.objects.bulk_create(batch)
    return str(run.id)


def server_times(client: Client, url: str, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    first = client.get(url)
    cold = (time.perf_counter() - started) * 1000
    assert first.status_code == 200, first.status_code
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return {
        "html_bytes": len(response.content),
        "server_ms_cold": round(cold, 1),
        "server_ms": summary(times),
    }


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1), "max": round(max(values), 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load_times(urls: dict[int, str], cookie: str, repeats: int = 3) -> dict[int, dict[str, float]]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wfdash.asgi:application"],
        env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        out: dict[int, dict[str, float]] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": f"http://127.0.0.1:{port}"}])
            page = context.new_page()
            for n, url in urls.items():
                page.goto(f"http://127.0.0.1:{port}{url}", wait_until="load")  # warm-up
                loads = []
                for _ in range(repeats):
                    page.goto(f"http://127.0.0.1:{port}{url}", wait_until="load", timeout=120_000)
                    timing = page.evaluate(
                        "() => { const t = performance.getEntriesByType('navigation')[0];"
                        " return t.loadEventEnd - t.startTime; }"
                    )
                    loads.append(float(timing))
                out[n] = summary(loads)
            browser.close()
        return out
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,100000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "", "bench-password-123")
    client = Client()
    client.force_login(user)
    runs = {n: make_run(n) for n in sizes}
    results: dict[str, Any] = {}
    for n, run_id in runs.items():
        results[str(n)] = server_times(client, f"/runs/{run_id}/", args.repeats)
    for n, load in load_times(
        {n: f"/runs/{run_id}/" for n, run_id in runs.items()}, client.cookies["sessionid"].value
    ).items():
        results[str(n)]["chromium_load_ms"] = load
    small, big = str(min(sizes)), str(max(sizes))
    ratios = {
        "server_ms": results[big]["server_ms"]["median"] / results[small]["server_ms"]["median"],
        "html_bytes": results[big]["html_bytes"] / results[small]["html_bytes"],
        "chromium_load_ms": results[big]["chromium_load_ms"]["median"] / results[small]["chromium_load_ms"]["median"],
    }
    doc = {
        "bench": "pages",
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "dirty": bool(
            subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "settings": "SQLite (WAL), DEBUG off, in-memory channel layer; runs bulk-inserted",
        "results": results,
        f"ratio_{big}_vs_{small}": {k: round(v, 2) for k, v in ratios.items()},
        "goals": {
            "within_2x": all(v <= 2 for v in ratios.values()),
            "server_under_150_ms": results[big]["server_ms"]["median"] < 150,
            "html_under_300_kb": results[big]["html_bytes"] < 300_000,
            "load_under_1_5_s": results[big]["chromium_load_ms"]["median"] < 1500,
        },
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
