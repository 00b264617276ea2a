"""Engine step overhead with OpenTelemetry tracing off and on (wfdash/telemetry.py).

    .venv/bin/python bench/tracing.py > bench/results/tracing.json        # about 40 s
    .venv/bin/python bench/tracing.py --steps 2000 --repeats 7 --rounds 5

A chain of N trivial steps (one step re-emitting an event to itself) checkpointed in memory
(WorkflowCheckpointer, the default store), timed with perf_counter after a warm-up run; the
median of all runs, with min and max, in microseconds per step. Each variant runs in
processes of its own, since tracing is set up once per process, and the variants take turns
(`--rounds` rounds of one process each, `--repeats` runs per process), so a machine that
gets busier during the benchmark skews them alike:

- `off_not_installed`: no OTEL_* variables, and every `opentelemetry` import fails (the
  app without the optional extra);
- `off_installed`: no OTEL_* variables, OpenTelemetry installed and already imported (by
  another library, say);
- `sdk_disabled`: an endpoint set but OTEL_SDK_DISABLED=true;
- `on`: exporting every span (OTLP/HTTP, batch processor) to a collector on 127.0.0.1 that
  accepts and discards them, run by this script's own process.

Prints one JSON document; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, gc, json, sys, time
BLOCK = {block}
if BLOCK:
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(name)
    sys.meta_path.insert(0, Blocker())
elif {preimport}:
    import opentelemetry.sdk.trace  # noqa: F401
from wfdash import telemetry
from wfdash.workflow import Event, StartEvent, StopEvent, Workflow, step
from wfdash.workflow.checkpointer import WorkflowCheckpointer

class Tick(Event):
    i: int

class Loop(Workflow):
    @step
    async def tick(self, ev: StartEvent | Tick) -> Tick | StopEvent:
        i = getattr(ev, "i", 0) + 1
        return StopEvent(result=i) if i >= ev_steps else Tick(i=i)

ev_steps = {steps}

async def one() -> float:
    cp = WorkflowCheckpointer(Loop())
    started = time.perf_counter()
    assert await cp.run() == ev_steps
    return (time.perf_counter() - started) / ev_steps * 1e6

async def main() -> list[float]:
    await one()  # warm-up: imports, class caches, the exporter's first connection
    times = []
    for _ in range({repeats}):
        gc.collect()
        times.append(await one())
    return times

times = asyncio.run(main())
telemetry.flush()
print(json.dumps({{"us_per_step": times, "tracing": telemetry.enabled(),
                  "otel_imported": any(m.startswith("opentelemetry") for m in sys.modules)}}))
"""


class _Discard(BaseHTTPRequestHandler):
    spans_bytes = 0

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Discard.spans_bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


def _variant(name: str, env: dict[str, str], *, steps: int, repeats: int, block: bool, preimport: bool) -> Any:
    """One process's runs of one variant."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    code = CHILD.format(block=block, preimport=preimport, steps=steps, repeats=repeats)
    print(f"{name}...", file=sys.stderr, flush=True)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _summary(results: list[Any]) -> dict[str, Any]:
    times = [t for r in results for t in r["us_per_step"]]
    return {
        "us_per_step_median": round(statistics.median(times), 2),
        "us_per_step_min": round(min(times), 2),
        "us_per_step_max": round(max(times), 2),
        "runs": len(times),
        "tracing_enabled": results[0]["tracing"],
        "opentelemetry_imported": results[0]["otel_imported"],
    }


def _commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted_changes": bool(git("status", "--porcelain"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    kw = {"steps": args.steps, "repeats": args.repeats}
    load_start = os.getloadavg()
    setups: dict[str, tuple[dict[str, str], bool, bool]] = {
        "off_not_installed": ({}, True, False),
        "off_installed": ({}, False, True),
        "sdk_disabled": ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SDK_DISABLED": "true"}, False, False),
        "on": ({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, False, False),
    }
    results: dict[str, list[Any]] = {name: [] for name in setups}
    try:
        for _ in range(args.rounds):
            for name, (env, block, preimport) in setups.items():
                results[name].append(_variant(name, env, block=block, preimport=preimport, **kw))
    finally:
        server.shutdown()
    variants = {name: _summary(r) for name, r in results.items()}
    off = variants["off_installed"]["us_per_step_median"]
    print(
        json.dumps(
            {
                "benchmark": "engine step overhead, tracing off vs on (in-memory checkpointer)",
                **_commit(),
                "python": platform.python_version(),
                "steps_per_run": args.steps,
                "variants": variants,
                "on_minus_off_us_per_step": round(variants["on"]["us_per_step_median"] - off, 2),
                "off_not_installed_minus_off_installed_us_per_step": round(
                    variants["off_not_installed"]["us_per_step_median"] - off, 2
                ),
                "otlp_bytes_received": _Discard.spans_bytes,
                "machine": {
                    "cpus": os.cpu_count(),
                    "loadavg_at_start": [round(x, 2) for x in load_start],
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
