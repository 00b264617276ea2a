"""Durable runs: wfdash beside LangGraph's savers and DBOS Transact, on SQLite and PostgreSQL.

    .venv-bench/bin/python bench/persistence.py --out bench/results/persistence.json   # full
    .venv-bench/bin/python bench/persistence.py --quick                                 # smaller counts
    .venv-bench/bin/python bench/persistence.py --engines wfdash,dbos --backends sqlite --repeats 1 --quick

Engines, each in its own subprocess per backend and each in its documented configuration:
- `wfdash`: WorkflowCheckpointer + runs.store.DatabaseCheckpointStore (group commit) for one run,
  runs.executor.Worker for many; shipped settings (DB_CONN_MAX_AGE unset = 0, DEBUG off, no Redis;
  SQLite WAL + synchronous=NORMAL as settings.py sets them).
- `langgraph_sync`: SqliteSaver on one `sqlite3` connection / PostgresSaver on a psycopg_pool
  ConnectionPool (max_size 20, as LangGraph's docs show); sync nodes, `invoke`, a thread per run.
- `langgraph_async`: AsyncSqliteSaver on aiosqlite / AsyncPostgresSaver on an AsyncConnectionPool.
  Both LangGraph savers run `durability="sync"` (a step's checkpoint is saved before the next step
  starts, as ours and DBOS's are). Their SQLite gets synchronous=NORMAL like ours (setup() sets WAL).
- `dbos`: DBOS Transact, a workflow of `@DBOS.step`s; system database on SQLite (DBOS's own engine
  settings; pysqlite3's SQLite 3.51 because DBOS needs >= 3.42 and Python's is older) or PostgreSQL.

Repeats are interleaved: each repeat runs every engine once, in turn (reversed every other
repeat), each in a fresh child, so a slow spell of this shared machine falls on all of them.

Figures (each repeat on an emptied database; the file gives median, min and max over the repeats):
- `step_p50_us` / `step_p99_us`: a sequential run of N steps; the interval between consecutive durable
  records (step + snapshot + commit): the cost of one durable step.
- `completion_to_durable_p50_us` / `_p99_us`: from the end of each step body (perf_counter inside the
  step) to the completion of the first durable write after it: how long a result waits to be safe.
- `runs_per_s`: R runs of 3 steps, 50 in flight (wfdash: queued rows and one Worker(concurrency=50)).
- `concurrent_s`: C runs of 3 steps that each sleep 100 ms, all at once (ideal 0.3 s).
- `logical_bytes_per_step` / `physical_bytes_per_step`: what the engine stores for the latency run
  (wfdash: state + input + output JSON text and new blobs; LangGraph: checkpoint + metadata + writes
  + blobs; DBOS: step outputs + workflow inputs/outputs) and the growth of its tables with indexes
  and TOAST (SQLite dbstat, PostgreSQL pg_total_relation_size), per step; `*_100kb`: the same with an
  unchanging 100 KB value (random letters) carried through the run (state / workflow input).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import (  # noqa: E402
    ROOT,
    completion_to_durable,
    drop_pg,
    finish,
    header,
    intervals,
    log,
    median_min_max,
    pct,
    pg_physical_bytes,
    recreate_pg,
    sqlite_physical_bytes,
)

PG_DB = os.environ.get("BENCH_PG_DB", "wfdash_bench_persistence")
SLEEP = 0.1
SLEEPING_STEPS = 3
PAYLOAD_BYTES = 100_000
# Random letters, not "x" * 100_000: PostgreSQL's TOAST would compress that to almost nothing.
PAYLOAD = "".join(random.Random(0).choices(string.ascii_letters + string.digits, k=PAYLOAD_BYTES))
ENGINES = ("wfdash", "langgraph_sync", "langgraph_async", "dbos")
BACKENDS = ("sqlite", "postgresql")
SIZES: dict[str, dict[str, int]] = {
    "full": {"steps": 1000, "runs": 1000, "concurrency": 50, "concurrent": 1000, "payload_steps": 1000, "repeats": 5},
    "quick": {"steps": 200, "runs": 100, "concurrency": 50, "concurrent": 100, "payload_steps": 100, "repeats": 3},
}
METRICS = (
    "step_p50_us",
    "step_p99_us",
    "completion_to_durable_p50_us",
    "completion_to_durable_p99_us",
    "runs_per_s",
    "concurrent_s",
    "logical_bytes_per_step",
    "physical_bytes_per_step",
    "logical_bytes_per_step_100kb",
    "physical_bytes_per_step_100kb",
)
# The goals: ours / the best peer's (LangGraph's better saver or DBOS), same run.
GOALS = {
    "sqlite": {"step_p50_us": 0.5, "step_p99_us": 1.0},
    "postgresql": {"step_p50_us": 0.8, "step_p99_us": 1.0},
}


def latency_figures(durable_ends: list[float], step_ends: list[float]) -> dict[str, float]:
    steps = intervals(durable_ends)
    waits = completion_to_durable(step_ends, durable_ends)
    return {
        "step_p50_us": round(pct(steps, 0.5) * 1e6, 1),
        "step_p99_us": round(pct(steps, 0.99) * 1e6, 1),
        "completion_to_durable_p50_us": round(pct(waits, 0.5) * 1e6, 1),
        "completion_to_durable_p99_us": round(pct(waits, 0.99) * 1e6, 1),
    }


# == wfdash (child) =======================================================================


def child_wfdash(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return asyncio.run(_wfdash_main(args))


def _wfdash_config() -> dict[str, Any]:
    import django
    from django.conf import settings
    from django.db import connection

    db = settings.DATABASES["default"]
    out: dict[str, Any] = {
        "django": django.__version__,
        "conn_max_age": db.get("CONN_MAX_AGE"),
        "debug": settings.DEBUG,
        "store": "DatabaseCheckpointStore (group commit; batches run in asgiref's one sync thread)",
    }
    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute("select sqlite_version()")
            out["sqlite_version"] = cur.fetchone()[0]
            for p in ("journal_mode", "synchronous"):
                cur.execute(f"PRAGMA {p}")
                out[p] = cur.fetchone()[0]
        else:
            cur.execute("show server_version")
            out["server_version"] = cur.fetchone()[0]
            cur.execute("show synchronous_commit")
            out["synchronous_commit"] = cur.fetchone()[0]
    return out


def _wfdash_tables() -> list[str]:
    from runs.models import Blob, Checkpoint, Run

    return [Checkpoint._meta.db_table, Blob._meta.db_table, Run._meta.db_table]


def _wfdash_physical() -> int:
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            return sqlite_physical_bytes(cur, _wfdash_tables())
        return pg_physical_bytes(cur, _wfdash_tables())


def _wfdash_logical(run_id: str) -> int:
    """Text bytes of the run's checkpoint rows (state + input + output) plus its blobs."""
    from django.db import connection

    from runs.models import Blob, Checkpoint

    length = "length(CAST({} AS BLOB))" if connection.vendor == "sqlite" else "octet_length({}::text)"
    cols = " + ".join(f"COALESCE({length.format(c)}, 0)" for c in ("state", "input_event", "output_event"))
    key = run_id if connection.features.has_native_uuid_field else uuid.UUID(run_id).hex
    with connection.cursor() as cur:
        cur.execute(f"SELECT COALESCE(SUM({cols}), 0) FROM {Checkpoint._meta.db_table} WHERE run_id = %s", [key])
        rows = int(cur.fetchone()[0])
        data = "length(CAST(data AS BLOB))" if connection.vendor == "sqlite" else "octet_length(data)"
        cur.execute(f"SELECT COALESCE(SUM({data}), 0) FROM {Blob._meta.db_table}")
        blobs = int(cur.fetchone()[0])
    return rows + blobs


def _wfdash_clear() -> None:
    from django.db import connection

    tables = _wfdash_tables()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        else:
            for table in tables:
                cur.execute(f"DELETE FROM {table}")
            cur.execute("VACUUM")


async def _wfdash_chain(steps: int, payload: str) -> dict[str, Any]:
    """One sequential run of `steps` ticks (+ the begin step) on an emptied database."""
    import durable_flows
    from asgiref.sync import sync_to_async

    from runs.examples.chain import ChainStart
    from runs.store import DatabaseCheckpointStore
    from wfdash.workflow.checkpointer import WorkflowCheckpointer

    await sync_to_async(_wfdash_clear)()
    store = DatabaseCheckpointStore()
    durable_ends: list[float] = []
    put = store.put_checkpoint

    async def timed_put(checkpoint: Any, workflow: Any) -> None:
        await put(checkpoint, workflow)
        durable_ends.append(time.perf_counter())

    store.put_checkpoint = timed_put  # type: ignore[method-assign]
    before = await sync_to_async(_wfdash_physical)()
    durable_flows.STEP_ENDS.clear()
    gc.collect()
    handler = WorkflowCheckpointer(durable_flows.StampedChain(), store=store).run(
        ChainStart(steps=steps, payload=payload)
    )
    result = await handler
    assert result == {"ticks": steps}, result
    n = steps + 1  # begin + the ticks: one checkpoint each
    assert len(durable_ends) == n, len(durable_ends)
    physical = await sync_to_async(_wfdash_physical)() - before
    logical = await sync_to_async(_wfdash_logical)(handler.run_id)
    return {
        **latency_figures(durable_ends, list(durable_flows.STEP_ENDS)),
        "logical_bytes_per_step": round(logical / n, 1),
        "physical_bytes_per_step": round(physical / n, 1),
    }


async def _wfdash_worker(runs: int, steps: int, sleep: float, concurrency: int) -> float:
    """Seconds for one Worker to run `runs` queued chain runs to success."""
    from asgiref.sync import sync_to_async

    from runs.executor import Worker
    from runs.models import Run, RunStatus

    start = {"type": "ChainStart", "data": {"steps": steps, "sleep": sleep, "payload": ""}}

    def queue() -> None:
        _wfdash_clear()
        Run.objects.bulk_create([Run(workflow="chain", start_event=start) for _ in range(runs)], batch_size=500)

    await sync_to_async(queue)()
    worker = Worker(concurrency=concurrency, poll_interval=0.01)
    gc.collect()
    t0 = time.perf_counter()
    await worker.run(exit_when_idle=True, install_signals=False)
    elapsed = time.perf_counter() - t0
    done = await Run.objects.filter(status=RunStatus.SUCCEEDED).acount()
    assert done == runs, (done, runs)
    return elapsed


async def _wfdash_main(args: argparse.Namespace) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    size = SIZES[args.size]
    await _wfdash_chain(5, "")  # warm-up: imports, connection, statement caches
    reps: list[dict[str, Any]] = []
    for i in range(args.repeats):
        rep = await _wfdash_chain(size["steps"], "")
        payload = await _wfdash_chain(size["payload_steps"], PAYLOAD)
        rep["logical_bytes_per_step_100kb"] = payload["logical_bytes_per_step"]
        rep["physical_bytes_per_step_100kb"] = payload["physical_bytes_per_step"]
        # "chain" with steps=2 is begin + 2 ticks: 3 steps; with steps=3 and a sleep, 3 of 4 steps sleep.
        rep["runs_per_s"] = round(size["runs"] / await _wfdash_worker(size["runs"], 2, 0.0, size["concurrency"]), 1)
        concurrent = size["concurrent"]
        rep["concurrent_s"] = round(await _wfdash_worker(concurrent, SLEEPING_STEPS, SLEEP, concurrent), 3)
        log("persistence", f"wfdash/{args.backend} repeat {i + 1}: {rep}")
        reps.append(rep)
    return {"config": await sync_to_async(_wfdash_config)(), "reps": reps}


# == orchestration (parent) ===============================================================


def child_env(engine: str, backend: str, workdir: Path, pg_db: str = PG_DB) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # shipped settings only: nothing from the caller's shell changes the app's configuration
        if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "DB_CONN_MAX_AGE", "WFDASH_WORKFLOWS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="wfdash.settings",
        DEBUG="0",
        SECRET_KEY=env.get("SECRET_KEY") or "wfdash-bench-not-secret",
        WFDASH_LOG_LEVEL="WARNING",
        WFDASH_WORKFLOWS="bench_stamped_chain=durable_flows.StampedChain",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(BENCH)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
    )
    if backend == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
        env["BENCH_SQLITE_DIR"] = str(workdir)
    else:
        env["DATABASE_URL"] = recreate_pg(pg_db).replace("postgresql://", "postgres://", 1)
    return env


def run_interleaved(engines: list[str], backend: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every engine once per repeat, in turn (a fresh child each time): a slow spell of this
    shared machine falls on all engines alike instead of on whichever ran then."""
    results: dict[str, dict[str, Any]] = {}
    for i in range(args.repeats):
        for engine in engines if i % 2 == 0 else engines[::-1]:
            one = run_child(engine, backend, args, repeats=1)
            merged = results.setdefault(engine, {"reps": [], "wall_s": 0.0, "loadavg_1min_before_after": []})
            if "reps" not in one:
                merged["status"] = one.get("status", "error")
                continue
            merged["config"] = one.get("config")
            merged["reps"] += one["reps"]
            merged["wall_s"] = round(merged["wall_s"] + one["wall_s"], 1)
            merged["loadavg_1min_before_after"].append(one["loadavg_1min_before_after"])
    for merged in results.values():
        if merged["reps"]:
            merged["figures"] = {m: median_min_max(r.get(m) for r in merged["reps"]) for m in METRICS}
    return results


def run_child(engine: str, backend: str, args: argparse.Namespace, repeats: int | None = None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="wfdash-bench-persistence-"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--backend", backend]
    cmd += ["--size", args.size, "--repeats", str(repeats or args.repeats)]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    log("persistence", f"{engine}/{backend}: starting")
    try:
        proc = subprocess.run(
            cmd,
            env=child_env(engine, backend, workdir),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            timeout=args.child_timeout,
        )
        if proc.returncode != 0:
            return {"status": f"error: exit code {proc.returncode} (see stderr)"}
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"status": f"error: over {args.child_timeout:.0f} s"}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if backend == "postgresql":
            drop_pg(PG_DB)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["loadavg_1min_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    result["figures"] = {m: median_min_max(r.get(m) for r in result["reps"]) for m in METRICS}
    return result


def best_peer(engines: dict[str, Any], metric: str, higher_is_better: bool = False) -> tuple[str, float] | None:
    """The peer (not wfdash) with the best median for `metric`."""
    found = [
        (name, e["figures"][metric]["median"])
        for name, e in engines.items()
        if name != "wfdash" and isinstance(e.get("figures", {}).get(metric, {}).get("median"), int | float)
    ]
    if not found:
        return None
    return (max if higher_is_better else min)(found, key=lambda x: x[1])


def compare(results: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ratios of wfdash over the best peer per metric, the goals met or missed) per backend."""
    ratios: dict[str, Any] = {}
    goals: dict[str, Any] = {}
    for backend, engines in results.items():
        ours = engines.get("wfdash", {}).get("figures")
        if not ours:
            continue
        ratios[backend] = {}
        for metric in METRICS:
            best = best_peer(engines, metric, higher_is_better=metric == "runs_per_s")
            value = ours[metric]["median"]
            if best is None or not isinstance(value, int | float) or not best[1]:
                continue
            ratios[backend][metric] = {"best_peer": best[0], "peer": best[1], "wfdash": value,
                                       "ratio": round(value / best[1], 3)}  # fmt: skip
        for metric, limit in GOALS.get(backend, {}).items():
            r = ratios[backend].get(metric)
            goals[f"{backend}.{metric}"] = {
                "max_ratio": limit,
                **(r or {}),
                "met": r is not None and r["ratio"] <= limit,
            }
    return ratios, goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 steps, 100 runs (instead of 1,000), 3 repeats")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--repeats", type=int, help="repeats per engine (default 5; 3 with --quick)")
    parser.add_argument("--out", help="also write the JSON document here")
    parser.add_argument("--child-timeout", type=float, default=1800)
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = "quick" if args.quick else "full"
    if args.repeats is None:
        args.repeats = SIZES[args.size]["repeats"]

    if args.child:
        if args.child == "wfdash":
            result = child_wfdash(args)
        else:
            import persistence_peers

            result = persistence_peers.run(args.child, args.backend, SIZES[args.size], args.repeats)
        print(json.dumps(result))
        return 0

    started = time.perf_counter()
    engines = [e for e in args.engines.split(",") if e]
    backends = [b for b in args.backends.split(",") if b]
    sizes = {**SIZES[args.size], "repeats": args.repeats}
    doc = header(
        "persistence",
        args.size,
        {
            "sizes": sizes,
            "wfdash": "shipped settings: DB_CONN_MAX_AGE, REDIS_URL, WFDASH_* unset; DEBUG off",
            "repeats": "interleaved: every engine once per repeat, in turn, a fresh child each",
            "langgraph_pool": "psycopg_pool ConnectionPool / AsyncConnectionPool, max_size 20",
            "langgraph_durability": "sync",
            "langgraph_sqlite_synchronous": "NORMAL (as ours)",
            "dbos": "DBOS(config={name, system_database_url}); SQLite through pysqlite3 (DBOS needs SQLite >= 3.42)",
        },
    )
    results = {backend: run_interleaved(engines, backend, args) for backend in backends}
    ratios, goals = compare(results)
    doc.update(results=results, ratios_vs_best_peer=ratios, goals=goals)
    finish(doc, started)
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
