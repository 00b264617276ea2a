"""Persistence benchmark: durable steps, worker throughput, concurrency and checkpoint size.

Compares wfdash (WorkflowCheckpointer + runs.store.DatabaseCheckpointStore + runs.executor.Worker)
with LangGraph (SqliteSaver / AsyncSqliteSaver, PostgresSaver / AsyncPostgresSaver) on SQLite and
PostgreSQL, and prints one JSON document to stdout.

    .venv-bench/bin/python bench/persistence.py            # full run (~5 min on 2 cores)
    .venv-bench/bin/python bench/persistence.py --quick    # smaller counts (~1 min)
    .venv-bench/bin/python bench/persistence.py --backends sqlite --no-langgraph
    .venv-bench/bin/python bench/persistence.py --profile latency --backends sqlite   # cProfile to stderr

Each (engine, backend) pair runs in its own subprocess, because Django reads DATABASE_URL once:
SQLite uses a fresh temporary file, PostgreSQL the database `wfdash_bench` (dropped and recreated).
Django runs with DEBUG off (as in production) and without Redis (no cross-process announcements).

What is measured (N = 1000 by default, 200 with --quick):

1. latency: one run of ChainFlow(steps=N) through WorkflowCheckpointer(store=DatabaseCheckpointStore()),
   sequential, so each step waits for its own commit. "durable step" = interval between the completions
   of consecutive put_checkpoint calls (engine step + snapshot + committed checkpoint); also the
   put_checkpoint latency alone, the created_at deltas, and total time / checkpoints.
   LangGraph: a self-looping node, durability="sync" (a step's checkpoint is saved before the next
   step starts, as ours), intervals between consecutive aput/put completions.
2. throughput: N queued runs of chain steps=2 (begin + 2 ticks = 3 steps) executed by
   Worker(concurrency=50, poll_interval=0.01).run(exit_when_idle=True). LangGraph: a 3-node chain,
   N runs through asyncio.gather with a semaphore of 50 on the async saver.
3. concurrent: N runs of chain steps=3, sleep=0.1 (begin does not sleep, then 3 ticks sleep 100 ms)
   on Worker(concurrency=N): ideal = 3 x 0.1 s. LangGraph: 3 nodes each sleeping 100 ms, all N runs
   gathered at once.
4. bytes: per checkpoint at the 10th and the N-th durable step (ours: ctx_state + input_event +
   output_event text; LangGraph: checkpoint + metadata + the writes that produced it + new blobs),
   physical table growth per checkpoint, and the same with an unchanging 100 KB store/state value.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live import drop_pg_database, pg_url, recreate_pg_database  # noqa: E402 - bench/live.py's helpers

ROOT = Path(__file__).resolve().parent.parent
PG_DB = os.environ.get("BENCH_PG_DB", "wfdash_bench")
SLEEP = 0.1
SLEEPING_STEPS = 3
PAYLOAD_BYTES = 100_000

SIZES: dict[str, dict[str, int]] = {
    "full": {"steps": 1000, "runs": 1000, "concurrency": 50, "concurrent": 1000, "payload_steps": 1000},
    "quick": {"steps": 200, "runs": 200, "concurrency": 50, "concurrent": 200, "payload_steps": 100},
}

GOALS = {
    "durable_step_p50_us_sqlite": 250.0,
    "three_step_runs_per_s_sqlite": 600.0,
    "concurrent_excess_s": 1.0,
    # bytes at step N / bytes at step 10 (Tick.n grows by a few digits; nothing else may)
    "bytes_growth_ratio_max": 1.05,
    # extra bytes per checkpoint caused by an unchanged 100 KB value (a blob reference is ~80 bytes)
    "payload_extra_bytes_max": 1000,
}


# -- small helpers ------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """The p-quantile (0..1) by linear interpolation; NaN if empty."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def dist_us(seconds: list[float]) -> dict[str, float]:
    us = [s * 1e6 for s in seconds]
    return {
        "n": len(us),
        "p50_us": round(pct(us, 0.50), 1),
        "p90_us": round(pct(us, 0.90), 1),
        "p99_us": round(pct(us, 0.99), 1),
        "mean_us": round(statistics.fmean(us), 1) if us else float("nan"),
        "max_us": round(max(us), 1) if us else float("nan"),
    }


def log(msg: str) -> None:
    print(f"[persistence {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Profiler:
    """cProfile around one section when --profile names it; a no-op otherwise.

    On Python 3.12 cProfile uses sys.monitoring, so it also sees the sync_to_async thread.
    """

    def __init__(self, wanted: str | None, section: str, label: str) -> None:
        self.active = wanted in (section, "all")
        self.label = f"{label}:{section}"
        self.prof: Any = None

    def __enter__(self) -> Profiler:
        if self.active:
            import cProfile

            self.prof = cProfile.Profile()
            self.prof.enable()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.prof is None:
            return
        import io
        import pstats

        self.prof.disable()
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(self.prof, stream=out).sort_stats(key).print_stats(35)
            print(f"===== cProfile {self.label} by {key} =====\n{out.getvalue()}", file=sys.stderr)


# == wfdash (child process) ===========================================================


def child_ours(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command

    t = time.perf_counter()
    call_command("migrate", verbosity=0)
    log(f"ours/{args.backend}: migrated in {time.perf_counter() - t:.1f}s")
    return asyncio.run(_ours_main(args))


def _ours_db_info() -> dict[str, Any]:
    import django
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute("select sqlite_version()")
            version = cur.fetchone()[0]
            pragmas = {}
            for p in ("journal_mode", "synchronous", "busy_timeout"):
                cur.execute(f"PRAGMA {p}")
                pragmas[p] = cur.fetchone()[0]
            return {"vendor": "sqlite", "version": version, "pragmas": pragmas, "django": django.__version__}
        cur.execute("show server_version")
        version = cur.fetchone()[0]
        cur.execute("show synchronous_commit")
        sc = cur.fetchone()[0]
        return {"vendor": "postgresql", "version": version, "synchronous_commit": sc, "django": django.__version__}


def _ours_table_bytes() -> dict[str, int]:
    """Physical bytes of the runs tables (with their indexes and TOAST)."""
    from django.db import connection

    from runs.models import Blob, Checkpoint, Run

    tables = {"checkpoint": Checkpoint._meta.db_table, "blob": Blob._meta.db_table, "run": Run._meta.db_table}
    out: dict[str, int] = {}
    with connection.cursor() as cur:
        for key, table in tables.items():
            if connection.vendor == "sqlite":
                cur.execute(
                    "SELECT COALESCE(SUM(d.pgsize), 0) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
                    "WHERE m.tbl_name = %s",
                    [table],
                )
            else:
                cur.execute("SELECT pg_total_relation_size(%s)", [table])
            out[key] = int(cur.fetchone()[0])
    out["total"] = sum(out.values())
    return out


def _ours_row_bytes(run_id: str, seqs: list[int]) -> dict[int, dict[str, int]]:
    """Stored bytes of the JSON columns of the given checkpoints of a run."""
    from django.db import connection
    from django.db.models import BigIntegerField, Sum
    from django.db.models.expressions import RawSQL

    from runs.models import Checkpoint

    if connection.vendor == "sqlite":

        def size(col: str) -> RawSQL:
            return RawSQL(f"COALESCE(length(CAST({col} AS BLOB)), 0)", [], output_field=BigIntegerField())

        def phys(col: str) -> RawSQL:
            return size(col)
    else:

        def size(col: str) -> RawSQL:
            return RawSQL(f"COALESCE(octet_length({col}::text), 0)", [], output_field=BigIntegerField())

        def phys(col: str) -> RawSQL:
            return RawSQL(f"COALESCE(pg_column_size({col}), 0)", [], output_field=BigIntegerField())

    rows = (
        Checkpoint.objects.filter(run_id=run_id, seq__in=seqs)
        .annotate(
            ctx=size("ctx_state"),
            inp=size("input_event"),
            outp=size("output_event"),
            pctx=phys("ctx_state"),
            pinp=phys("input_event"),
            poutp=phys("output_event"),
        )
        .values_list("seq", "ctx", "inp", "outp", "pctx", "pinp", "poutp")
    )
    out: dict[int, dict[str, int]] = {}
    if not seqs:  # every checkpoint of the run, summed
        total = Checkpoint.objects.filter(run_id=run_id).aggregate(
            n=Sum(size("ctx_state")) + Sum(size("input_event")) + Sum(size("output_event"))
        )["n"]
        return {0: {"total": int(total or 0)}}
    for seq, ctx, inp, outp, pctx, pinp, poutp in rows:
        out[seq] = {
            "ctx_state": ctx,
            "input_event": inp,
            "output_event": outp,
            "total": ctx + inp + outp,
            "stored_total": pctx + pinp + poutp,
        }
    return out


async def _ours_latency_run(args: argparse.Namespace, steps: int, payload: str) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from runs.examples.chain import ChainFlow, ChainStart
    from runs.models import Blob, Checkpoint
    from runs.store import DatabaseCheckpointStore
    from wfdash.workflow.checkpointer import WorkflowCheckpointer

    store = DatabaseCheckpointStore()
    starts: list[float] = []
    ends: list[float] = []
    put = store.put_checkpoint

    async def timed_put(checkpoint: Any, workflow: Any) -> None:
        starts.append(time.perf_counter())
        await put(checkpoint, workflow)
        ends.append(time.perf_counter())

    store.put_checkpoint = timed_put  # type: ignore[method-assign]
    before = await sync_to_async(_ours_table_bytes)()
    blob_before = await sync_to_async(lambda: sum(len(b) for b in Blob.objects.values_list("data", flat=True)))()
    checkpointer = WorkflowCheckpointer(ChainFlow(), store=store)
    gc.collect()
    t0 = time.perf_counter()
    handler = checkpointer.run(ChainStart(steps=steps, sleep=0.0, payload=payload))
    result = await handler
    total = time.perf_counter() - t0
    assert result == {"ticks": steps}, result
    run_id = handler.run_id
    after = await sync_to_async(_ours_table_bytes)()
    blob_after = await sync_to_async(lambda: sum(len(b) for b in Blob.objects.values_list("data", flat=True)))()
    n = len(ends)
    created = await sync_to_async(
        lambda: list(Checkpoint.objects.filter(run_id=run_id).order_by("seq").values_list("created_at", flat=True))
    )()
    assert len(created) == n == steps + 1, (len(created), n)
    seqs = sorted({1, 2, 10, steps, n})
    rows = await sync_to_async(_ours_row_bytes)(run_id, seqs)
    all_rows = await sync_to_async(_ours_row_bytes)(run_id, [])
    growth = {k: after[k] - before[k] for k in after}
    return {
        "run_id": run_id,
        "steps": steps,
        "checkpoints": n,
        "total_s": round(total, 4),
        "per_checkpoint_us": round(total / n * 1e6, 1),
        "durable_step": dist_us([b - a for a, b in zip(ends, ends[1:], strict=False)]),
        "put_checkpoint": dist_us([e - s for s, e in zip(starts, ends, strict=True)]),
        "created_at_delta": dist_us([(b - a).total_seconds() for a, b in zip(created, created[1:], strict=False)]),
        "bytes_by_seq": {str(s): rows[s] for s in seqs if s in rows},
        "bytes_all_checkpoints": all_rows[0]["total"],
        "table_growth_bytes": growth,
        "table_growth_per_checkpoint": {k: round(v / n, 1) for k, v in growth.items()},
        "blob_bytes_added": blob_after - blob_before,
    }


async def _ours_warmup() -> None:
    """One short run first: imports (the registry imports every configured workflow), connection, caches."""
    from runs.examples.chain import ChainFlow, ChainStart
    from runs.store import DatabaseCheckpointStore
    from wfdash.workflow.checkpointer import WorkflowCheckpointer

    for payload in ("", "w" * 1000):
        checkpointer = WorkflowCheckpointer(ChainFlow(), store=DatabaseCheckpointStore())
        await checkpointer.run(ChainStart(steps=5, payload=payload))


async def _ours_queue(runs: int, steps: int, sleep: float) -> None:
    from asgiref.sync import sync_to_async

    from runs.models import Run

    start = {"type": "ChainStart", "data": {"steps": steps, "sleep": sleep, "payload": ""}}

    def insert() -> None:
        Run.objects.bulk_create([Run(workflow="chain", start_event=start) for _ in range(runs)], batch_size=500)

    await sync_to_async(insert)()


async def _ours_clear() -> None:
    """Empty the runs tables between sections (TRUNCATE on PostgreSQL resets their size too)."""
    from asgiref.sync import sync_to_async
    from django.db import connection

    from runs.models import Blob, Checkpoint, Run

    def clear() -> None:
        tables = [Checkpoint._meta.db_table, Run._meta.db_table, Blob._meta.db_table]
        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
            else:
                for table in tables:
                    cur.execute(f"DELETE FROM {table}")
        if connection.vendor == "sqlite":
            with connection.cursor() as cur:
                cur.execute("VACUUM")

    await sync_to_async(clear)()


async def _ours_worker_section(runs: int, steps: int, sleep: float, concurrency: int) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from django.db.models import Count

    from runs.executor import Worker
    from runs.models import Checkpoint, Run

    await _ours_clear()
    await _ours_queue(runs, steps, sleep)
    worker = Worker(concurrency=concurrency, poll_interval=0.01)
    gc.collect()
    t0 = time.perf_counter()
    await worker.run(exit_when_idle=True, install_signals=False)
    elapsed = time.perf_counter() - t0

    def check() -> dict[str, Any]:
        statuses = dict(Run.objects.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        times = list(Run.objects.exclude(finished_at=None).values_list("started_at", "finished_at"))
        durations = [(f - s).total_seconds() for s, f in times]
        first = min(s for s, _ in times) if times else None
        return {
            "statuses": statuses,
            "checkpoints": Checkpoint.objects.count(),
            "run_duration_s": {
                "p50": round(pct(durations, 0.5), 4),
                "p99": round(pct(durations, 0.99), 4),
                "max": round(max(durations), 4) if durations else None,
            },
            # started_at is set when a run is claimed: how long claiming all of them took
            "last_claim_after_first_s": round((max(s for s, _ in times) - first).total_seconds(), 4) if times else None,
            "last_finish_after_first_claim_s": round((max(f for _, f in times) - first).total_seconds(), 4)
            if times
            else None,
        }

    info = await sync_to_async(check)()
    assert info["statuses"].get("succeeded") == runs, info["statuses"]
    return {"runs": runs, "steps_per_run": steps + 1, "elapsed_s": round(elapsed, 4), **info}


async def _ours_main(args: argparse.Namespace) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    size = SIZES[args.size]
    label = f"ours/{args.backend}"
    out: dict[str, Any] = {"db": await sync_to_async(_ours_db_info)()}
    await _ours_warmup()

    if "latency" in args.sections:
        with Profiler(args.profile, "latency", label):
            out["latency"] = await _ours_latency_run(args, size["steps"], "")
        log(f"{label}: latency per checkpoint {out['latency']['per_checkpoint_us']} us")
    if "payload" in args.sections:
        with Profiler(args.profile, "payload", label):
            out["payload"] = await _ours_latency_run(args, size["payload_steps"], "x" * PAYLOAD_BYTES)
        log(f"{label}: payload run done")
    if "throughput" in args.sections:
        with Profiler(args.profile, "throughput", label):
            res = await _ours_worker_section(size["runs"], 2, 0.0, size["concurrency"])
        res["concurrency"] = size["concurrency"]
        res["runs_per_s"] = round(size["runs"] / res["elapsed_s"], 1)
        out["throughput"] = res
        log(f"{label}: throughput {res['runs_per_s']} runs/s")
    if "concurrent" in args.sections:
        with Profiler(args.profile, "concurrent", label):
            res = await _ours_worker_section(size["concurrent"], SLEEPING_STEPS, SLEEP, size["concurrent"])
        ideal = round(SLEEPING_STEPS * SLEEP, 3)
        res.update(
            concurrency=size["concurrent"],
            sleeping_steps=SLEEPING_STEPS,
            ideal_s=ideal,
            excess_s=round(res["elapsed_s"] - ideal, 4),
        )
        out["concurrent"] = res
        log(f"{label}: {size['concurrent']} concurrent runs in {res['elapsed_s']} s (ideal {ideal})")
    return out


# == LangGraph (child process) ========================================================


class LoopState(TypedDict):
    n: int
    steps: int
    payload: str


class ChainState(TypedDict):
    n: int
    sleep: float


def _lg_route(state: LoopState) -> str:
    return "tick" if state["n"] < state["steps"] else "__end__"


async def _lg_atick(state: LoopState) -> dict[str, int]:
    return {"n": state["n"] + 1}


def _lg_stick(state: LoopState) -> dict[str, int]:
    return {"n": state["n"] + 1}


async def _lg_chain_node(state: ChainState) -> dict[str, int]:
    if state["sleep"]:
        await asyncio.sleep(state["sleep"])
    return {"n": state["n"] + 1}


def _lg_graphs() -> dict[str, Any]:
    """The graphs, uncompiled: a self-looping node (latency, bytes) and a 3-node chain (runs)."""
    from langgraph.graph import END, START, StateGraph

    def loop(node: Any) -> Any:
        g = StateGraph(LoopState)
        g.add_node("tick", node)
        g.add_edge(START, "tick")
        g.add_conditional_edges("tick", _lg_route, ["tick", END])
        return g

    chain = StateGraph(ChainState)
    for name in ("a", "b", "c"):
        chain.add_node(name, _lg_chain_node)
    chain.add_edge(START, "a")
    chain.add_edge("a", "b")
    chain.add_edge("b", "c")
    chain.add_edge("c", END)
    return {"async_loop": loop(_lg_atick), "sync_loop": loop(_lg_stick), "chain": chain}


class _LgBackend:
    """Opens fresh LangGraph savers on one backend, one database (file) per section."""

    def __init__(self, backend: str, workdir: Path, sqlite_sync: str) -> None:
        self.backend = backend
        self.workdir = workdir
        self.sqlite_sync = sqlite_sync
        self.counter = 0

    def _sqlite_path(self) -> str:
        self.counter += 1
        return str(self.workdir / f"langgraph-{self.counter}.sqlite3")

    def _pg_url(self) -> str:
        recreate_pg_database(PG_DB)
        return pg_url(PG_DB)

    # async savers ---------------------------------------------------------------
    async def open_async(self) -> tuple[Any, Any]:
        """(saver, closer) for a fresh database."""
        if self.backend == "sqlite":
            import aiosqlite
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            path = self._sqlite_path()
            conn = await aiosqlite.connect(path)
            saver = AsyncSqliteSaver(conn)
            await saver.setup()
            await conn.execute(f"PRAGMA synchronous={self.sqlite_sync}")
            saver._bench_path = path  # type: ignore[attr-defined]
            return saver, conn.close
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg import AsyncConnection
        from psycopg.rows import dict_row

        conn = await AsyncConnection.connect(self._pg_url(), autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = AsyncPostgresSaver(conn)
        await saver.setup()
        return saver, conn.close

    def open_sync(self) -> tuple[Any, Any]:
        if self.backend == "sqlite":
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            path = self._sqlite_path()
            conn = sqlite3.connect(path, check_same_thread=False)
            saver = SqliteSaver(conn)
            saver.setup()
            conn.execute(f"PRAGMA synchronous={self.sqlite_sync}")
            saver._bench_path = path  # type: ignore[attr-defined]
            return saver, conn.close
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        conn = Connection.connect(self._pg_url(), autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(conn)
        saver.setup()
        return saver, conn.close


def _lg_sizes_sqlite(path: str, thread_id: str) -> tuple[dict[int, dict[str, int]], dict[str, int]]:
    """Per-step bytes (checkpoint + metadata + the writes that produced it) and physical table sizes."""
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        writes = dict(
            conn.execute(
                "SELECT checkpoint_id, SUM(COALESCE(length(value), 0)) FROM writes WHERE thread_id=? "
                "GROUP BY checkpoint_id",
                (thread_id,),
            ).fetchall()
        )
        per_step: dict[int, dict[str, int]] = {}
        for _cid, parent, meta, ck, md in conn.execute(
            "SELECT checkpoint_id, parent_checkpoint_id, CAST(metadata AS TEXT), length(checkpoint), length(metadata) "
            "FROM checkpoints WHERE thread_id=?",
            (thread_id,),
        ):
            step = int(json.loads(meta)["step"])
            w = int(writes.get(parent, 0)) if parent else 0
            per_step[step] = {"checkpoint": ck, "metadata": md, "writes": w, "blobs": 0, "total": ck + md + w}
        phys = {
            name: int(size)
            for name, size in conn.execute(
                "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
                "WHERE m.tbl_name IN ('checkpoints', 'writes') GROUP BY m.tbl_name"
            )
        }
    finally:
        conn.close()
    phys["total"] = sum(phys.values())
    return per_step, phys


def _lg_sizes_pg(url: str, thread_id: str) -> tuple[dict[int, dict[str, int]], dict[str, int]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        writes = dict(
            conn.execute(
                "SELECT checkpoint_id, SUM(COALESCE(octet_length(blob), 0)) FROM checkpoint_writes "
                "WHERE thread_id=%s GROUP BY checkpoint_id",
                (thread_id,),
            ).fetchall()
        )
        blobs = {
            (ch, ver): int(n)
            for ch, ver, n in conn.execute(
                "SELECT channel, version, COALESCE(octet_length(blob), 0) FROM checkpoint_blobs WHERE thread_id=%s",
                (thread_id,),
            ).fetchall()
        }
        rows = conn.execute(
            "SELECT checkpoint_id, parent_checkpoint_id, (metadata->>'step')::int, octet_length(checkpoint::text), "
            "octet_length(metadata::text), checkpoint->'channel_versions' FROM checkpoints WHERE thread_id=%s",
            (thread_id,),
        ).fetchall()
        versions = {cid: cv or {} for cid, _p, _s, _c, _m, cv in rows}
        per_step: dict[int, dict[str, int]] = {}
        for _cid, parent, step, ck, md, cv in rows:
            old = versions.get(parent, {}) if parent else {}
            new_blobs = sum(blobs.get((ch, str(v)), 0) for ch, v in (cv or {}).items() if old.get(ch) != v)
            w = int(writes.get(parent, 0)) if parent else 0
            per_step[int(step)] = {
                "checkpoint": ck,
                "metadata": md,
                "writes": w,
                "blobs": new_blobs,
                "total": ck + md + w + new_blobs,
            }
        phys = {
            t: int(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0])
            for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        }
    phys["total"] = sum(phys.values())
    return per_step, phys


def _lg_sizes(lgb: _LgBackend, saver: Any, thread_id: str) -> tuple[dict[int, dict[str, int]], dict[str, int]]:
    if lgb.backend == "sqlite":
        return _lg_sizes_sqlite(saver._bench_path, thread_id)
    return _lg_sizes_pg(pg_url(PG_DB), thread_id)


def _timed_saver(saver: Any, method: str) -> tuple[list[float], list[float]]:
    starts: list[float] = []
    ends: list[float] = []
    orig = getattr(saver, method)
    if asyncio.iscoroutinefunction(orig):

        async def wrapped(*a: Any, **kw: Any) -> Any:
            starts.append(time.perf_counter())
            try:
                return await orig(*a, **kw)
            finally:
                ends.append(time.perf_counter())
    else:

        def wrapped(*a: Any, **kw: Any) -> Any:  # type: ignore[misc]
            starts.append(time.perf_counter())
            try:
                return orig(*a, **kw)
            finally:
                ends.append(time.perf_counter())

    setattr(saver, method, wrapped)
    return starts, ends


def _lg_latency_summary(
    lgb: _LgBackend,
    saver: Any,
    thread_id: str,
    steps: int,
    total: float,
    starts: list[float],
    ends: list[float],
    phys_before: dict[str, int],
) -> dict[str, Any]:
    per_step, phys = _lg_sizes(lgb, saver, thread_id)
    growth = {k: v - phys_before.get(k, 0) for k, v in phys.items()}
    wanted = sorted({1, 2, 10, steps})
    n = len(ends)
    return {
        "steps": steps,
        "checkpoints": n,
        "total_s": round(total, 4),
        "per_step_us": round(total / steps * 1e6, 1),
        "per_checkpoint_us": round(total / n * 1e6, 1),
        "durable_step": dist_us([b - a for a, b in zip(ends, ends[1:], strict=False)]),
        "put_checkpoint": dist_us([e - s for s, e in zip(starts, ends, strict=True)]),
        "bytes_by_step": {str(s): per_step[s] for s in wanted if s in per_step},
        "bytes_all_checkpoints": sum(v["total"] for v in per_step.values()),
        "table_growth_bytes": growth,
        "table_growth_per_checkpoint": round(growth["total"] / max(n, 1), 1),
    }


def _loop_config(steps: int) -> tuple[str, dict[str, Any]]:
    thread_id = str(uuid.uuid4())
    return thread_id, {"configurable": {"thread_id": thread_id}, "recursion_limit": steps + 100}


async def _lg_latency_async(lgb: _LgBackend, graphs: dict[str, Any], steps: int, payload: str) -> dict[str, Any]:
    saver, close = await lgb.open_async()
    try:
        app = graphs["async_loop"].compile(checkpointer=saver)
        # warm-up on another thread: imports, prepared statements, caches
        await app.ainvoke({"n": 0, "steps": 5, "payload": payload}, _loop_config(5)[1], durability="sync")
        _, phys_before = _lg_sizes(lgb, saver, "none")
        starts, ends = _timed_saver(saver, "aput")
        thread_id, cfg = _loop_config(steps)
        gc.collect()
        t0 = time.perf_counter()
        state = await app.ainvoke({"n": 0, "steps": steps, "payload": payload}, cfg, durability="sync")
        total = time.perf_counter() - t0
        assert state["n"] == steps, state["n"]
        return _lg_latency_summary(lgb, saver, thread_id, steps, total, starts, ends, phys_before)
    finally:
        await close()


def _lg_latency_sync(lgb: _LgBackend, graphs: dict[str, Any], steps: int) -> dict[str, Any]:
    saver, close = lgb.open_sync()
    try:
        app = graphs["sync_loop"].compile(checkpointer=saver)
        app.invoke({"n": 0, "steps": 5, "payload": ""}, _loop_config(5)[1], durability="sync")
        _, phys_before = _lg_sizes(lgb, saver, "none")
        starts, ends = _timed_saver(saver, "put")
        thread_id, cfg = _loop_config(steps)
        gc.collect()
        t0 = time.perf_counter()
        state = app.invoke({"n": 0, "steps": steps, "payload": ""}, cfg, durability="sync")
        total = time.perf_counter() - t0
        assert state["n"] == steps, state["n"]
        return _lg_latency_summary(lgb, saver, thread_id, steps, total, starts, ends, phys_before)
    finally:
        close()


async def _lg_runs(
    lgb: _LgBackend, graphs: dict[str, Any], runs: int, concurrency: int | None, sleep: float, durability: str
) -> dict[str, Any]:
    saver, close = await lgb.open_async()
    try:
        app = graphs["chain"].compile(checkpointer=saver)
        sem = asyncio.Semaphore(concurrency or runs)
        durations: list[float] = []

        async def one() -> None:
            async with sem:
                s = time.perf_counter()
                cfg = {"configurable": {"thread_id": str(uuid.uuid4())}}
                state = await app.ainvoke({"n": 0, "sleep": sleep}, cfg, durability=durability)
                assert state["n"] == 3, state
                durations.append(time.perf_counter() - s)

        # warm-up (not counted): imports, prepared statements
        await app.ainvoke({"n": 0, "sleep": 0.0}, {"configurable": {"thread_id": "warm-up"}}, durability=durability)
        gc.collect()
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(runs)))
        elapsed = time.perf_counter() - t0
        return {
            "runs": runs,
            "steps_per_run": 3,
            "durability": durability,
            "concurrency": concurrency or runs,
            "elapsed_s": round(elapsed, 4),
            "run_duration_s": {"p50": round(pct(durations, 0.5), 4), "p99": round(pct(durations, 0.99), 4)},
        }
    finally:
        await close()


def child_langgraph(args: argparse.Namespace) -> dict[str, Any]:
    import importlib.metadata as md

    size = SIZES[args.size]
    label = f"langgraph/{args.backend}"
    graphs = _lg_graphs()
    workdir = Path(tempfile.mkdtemp(prefix="wfdash-bench-lg-"))
    lgb = _LgBackend(args.backend, workdir, args.lg_sqlite_synchronous)
    out: dict[str, Any] = {
        "versions": {
            p: md.version(p)
            for p in (
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-checkpoint-sqlite",
                "langgraph-checkpoint-postgres",
            )
        },
        "sqlite_synchronous": args.lg_sqlite_synchronous if args.backend == "sqlite" else None,
        "saver_async": "AsyncSqliteSaver (aiosqlite)" if args.backend == "sqlite" else "AsyncPostgresSaver (1 conn)",
    }
    try:
        if "latency" in args.sections:
            with Profiler(args.profile, "latency", label):
                out["latency"] = asyncio.run(_lg_latency_async(lgb, graphs, size["steps"], ""))
            out["latency_sync_saver"] = _lg_latency_sync(lgb, graphs, size["steps"])
            log(f"{label}: latency per step {out['latency']['per_step_us']} us")
        if "payload" in args.sections:
            out["payload"] = asyncio.run(_lg_latency_async(lgb, graphs, size["payload_steps"], "x" * PAYLOAD_BYTES))
            log(f"{label}: payload run done")
        if "throughput" in args.sections:
            with Profiler(args.profile, "throughput", label):
                res = asyncio.run(_lg_runs(lgb, graphs, size["runs"], size["concurrency"], 0.0, "sync"))
            res["runs_per_s"] = round(size["runs"] / res["elapsed_s"], 1)
            out["throughput"] = res
            res2 = asyncio.run(_lg_runs(lgb, graphs, size["runs"], size["concurrency"], 0.0, "async"))
            res2["runs_per_s"] = round(size["runs"] / res2["elapsed_s"], 1)
            out["throughput_durability_async"] = res2
            log(f"{label}: throughput {res['runs_per_s']} runs/s (sync), {res2['runs_per_s']} (async)")
        if "concurrent" in args.sections:
            with Profiler(args.profile, "concurrent", label):
                res = asyncio.run(_lg_runs(lgb, graphs, size["concurrent"], None, SLEEP, "sync"))
            ideal = round(SLEEPING_STEPS * SLEEP, 3)
            res.update(sleeping_steps=SLEEPING_STEPS, ideal_s=ideal, excess_s=round(res["elapsed_s"] - ideal, 4))
            out["concurrent"] = res
            log(f"{label}: {size['concurrent']} concurrent runs in {res['elapsed_s']} s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# == orchestration (parent process) ====================================================


def run_child(engine: str, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WFDASH_WORKFLOWS", "DEBUG")}
    env.update(
        DJANGO_SETTINGS_MODULE="wfdash.settings",
        DEBUG="0",
        SECRET_KEY=env.get("SECRET_KEY") or "wfdash-bench-not-secret",
        WFDASH_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
    )
    tmp = Path(tempfile.mkdtemp(prefix="wfdash-bench-"))
    try:
        if backend == "sqlite":
            env["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
        else:
            recreate_pg_database(PG_DB)
            env["DATABASE_URL"] = pg_url(PG_DB).replace("postgresql://", "postgres://", 1)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            engine,
            "--backend",
            backend,
            "--size",
            args.size,
            "--sections",
            ",".join(args.sections),
            "--lg-sqlite-synchronous",
            args.lg_sqlite_synchronous,
        ]
        if args.profile:
            cmd += ["--profile", args.profile]
        log(f"{engine}/{backend}: starting")
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=args.child_timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"{engine}/{backend} failed with exit code {proc.returncode}")
        result = json.loads(proc.stdout)
        result["wall_s"] = round(time.perf_counter() - t0, 1)
        result["loadavg_1min_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if backend == "postgresql" and not args.keep_db:
            drop_pg_database(PG_DB)


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or not b:
        return None
    return round(a / b, 3)


def summarize(results: dict[str, Any], size: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(summary table, ratios ours/langgraph, goals)."""
    n = size["steps"]
    summary: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for backend, engines in results.items():
        ours = engines.get("ours", {})
        lg = engines.get("langgraph", {})
        row: dict[str, Any] = {}
        for name, eng, key10, keyn in (("ours", ours, "10", str(n)), ("langgraph", lg, "10", str(n))):
            bykey = "bytes_by_seq" if name == "ours" else "bytes_by_step"
            pn = str(size["payload_steps"])
            row[name] = {
                "durable_step_p50_us": _get(eng, "latency", "durable_step", "p50_us"),
                "durable_step_p99_us": _get(eng, "latency", "durable_step", "p99_us"),
                "per_step_total_over_steps_us": _get(eng, "latency", "per_checkpoint_us")
                if name == "ours"
                else _get(eng, "latency", "per_step_us"),
                "three_step_runs_per_s": _get(eng, "throughput", "runs_per_s"),
                "concurrent_elapsed_s": _get(eng, "concurrent", "elapsed_s"),
                "concurrent_ideal_s": _get(eng, "concurrent", "ideal_s"),
                "concurrent_excess_s": _get(eng, "concurrent", "excess_s"),
                "bytes_step10": _get(eng, "latency", bykey, key10, "total"),
                f"bytes_step{n}": _get(eng, "latency", bykey, keyn, "total"),
                "bytes_step10_100kb_value": _get(eng, "payload", bykey, "10", "total"),
                f"bytes_step{pn}_100kb_value": _get(eng, "payload", bykey, pn, "total"),
                "bytes_all_checkpoints": _get(eng, "latency", "bytes_all_checkpoints"),
                "bytes_all_checkpoints_100kb_value": _get(eng, "payload", "bytes_all_checkpoints"),
                "table_growth_per_checkpoint": _get(eng, "latency", "table_growth_per_checkpoint", "total")
                if name == "ours"
                else _get(eng, "latency", "table_growth_per_checkpoint"),
                "table_growth_per_checkpoint_100kb_value": _get(eng, "payload", "table_growth_per_checkpoint", "total")
                if name == "ours"
                else _get(eng, "payload", "table_growth_per_checkpoint"),
            }
        row["ours"]["blob_bytes_100kb_value"] = _get(ours, "payload", "blob_bytes_added")
        summary[backend] = row
        ratios[backend] = {
            k: _ratio(row["ours"].get(k), row["langgraph"].get(k))
            for k in row["ours"]
            if k in row["langgraph"] and k != "concurrent_ideal_s"
        }

    goals: dict[str, Any] = {}
    s_ours = _get(summary, "sqlite", "ours") or {}
    p50 = s_ours.get("durable_step_p50_us")
    goals["durable_step_p50_under_250us_sqlite"] = {
        "target_us": GOALS["durable_step_p50_us_sqlite"],
        "measured_us": p50,
        "met": p50 is not None and p50 < GOALS["durable_step_p50_us_sqlite"],
    }
    rps = s_ours.get("three_step_runs_per_s")
    goals["three_step_runs_per_s_sqlite"] = {
        "target": GOALS["three_step_runs_per_s_sqlite"],
        "measured": rps,
        "met": rps is not None and rps >= GOALS["three_step_runs_per_s_sqlite"],
    }
    for backend in results:
        ours = _get(summary, backend, "ours") or {}
        ex = ours.get("concurrent_excess_s")
        goals[f"concurrent_within_1s_of_ideal_{backend}"] = {
            "ideal_s": ours.get("concurrent_ideal_s"),
            "measured_s": ours.get("concurrent_elapsed_s"),
            "excess_s": ex,
            "met": ex is not None and ex <= GOALS["concurrent_excess_s"],
        }
        b10, bn = ours.get("bytes_step10"), ours.get(f"bytes_step{n}")
        growth = _ratio(bn, b10)
        goals[f"bytes_flat_in_run_length_{backend}"] = {
            "bytes_step10": b10,
            f"bytes_step{n}": bn,
            "ratio": growth,
            "max_ratio": GOALS["bytes_growth_ratio_max"],
            "met": growth is not None and growth <= GOALS["bytes_growth_ratio_max"],
        }
        p10 = ours.get("bytes_step10_100kb_value")
        extra = p10 - b10 if isinstance(p10, int) and isinstance(b10, int) else None
        goals[f"bytes_independent_of_unchanged_value_{backend}"] = {
            "bytes_step10": b10,
            "bytes_step10_100kb_value": p10,
            "extra_bytes": extra,
            "max_extra": GOALS["payload_extra_bytes_max"],
            "blob_bytes_100kb_value": ours.get("blob_bytes_100kb_value"),
            "met": extra is not None and extra <= GOALS["payload_extra_bytes_max"],
        }
    return summary, ratios, goals


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(p: str) -> str | None:
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": {p: version(p) for p in ("Django", "psycopg", "pydantic", "asgiref", "langgraph", "aiosqlite")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (200 instead of 1000)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma list: sqlite,postgresql")
    parser.add_argument(
        "--sections", default="latency,payload,throughput,concurrent", help="comma list of sections to run"
    )
    parser.add_argument("--no-langgraph", action="store_true", help="measure wfdash only")
    parser.add_argument("--no-ours", action="store_true", help="measure LangGraph only")
    parser.add_argument(
        "--profile",
        choices=["latency", "payload", "throughput", "concurrent", "all"],
        help="cProfile this section in every child; the report goes to stderr",
    )
    parser.add_argument(
        "--lg-sqlite-synchronous",
        default="NORMAL",
        choices=["NORMAL", "FULL"],
        help="PRAGMA synchronous for LangGraph's SQLite savers (ours uses NORMAL via settings)",
    )
    parser.add_argument("--out", help="also write the JSON document to this file")
    parser.add_argument("--keep-db", action="store_true", help="leave the PostgreSQL bench database behind")
    parser.add_argument("--child-timeout", type=float, default=900)
    # internal: run one engine on one backend and print its JSON
    parser.add_argument("--child", choices=["ours", "langgraph"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=list(SIZES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if args.size is None:
        args.size = "quick" if args.quick else "full"

    if args.child:
        result = child_ours(args) if args.child == "ours" else child_langgraph(args)
        json.dump(result, sys.stdout)
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    engines = [e for e, skip in (("ours", args.no_ours), ("langgraph", args.no_langgraph)) if not skip]
    started = time.time()
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    for backend in backends:
        for engine in engines:
            results.setdefault(backend, {})[engine] = run_child(engine, backend, args)
    summary, ratios, goals = summarize(results, SIZES[args.size])
    doc = {
        "benchmark": "persistence",
        "mode": args.size,
        "sizes": SIZES[args.size],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "environment": environment(),
        "notes": [
            "durable step = interval between completions of consecutive checkpoint writes "
            "(engine step + snapshot + committed checkpoint); p50/p99 over the run",
            "ours: WorkflowCheckpointer + DatabaseCheckpointStore (group commit, one sync_to_async DB thread); "
            "Django DEBUG off; SQLite WAL + synchronous=NORMAL (settings.py)",
            "langgraph: durability='sync' so each step's checkpoint is saved before the next step, like ours; "
            "'throughput_durability_async' is LangGraph's default mode, for reference",
            "ours' chain has a begin step before the ticks, so ChainFlow(steps=N) writes N+1 checkpoints "
            "and the concurrent runs have 4 steps of which 3 sleep",
            "bytes (ours): text length of ctx_state + input_event + output_event of the checkpoint row; "
            "langgraph: checkpoint + metadata + the task writes that produced it + channel blobs new in it",
            "table growth includes indexes; ours also counts the runs_run table (updated per checkpoint); "
            "PostgreSQL compresses 'x'*100000 with TOAST, so its physical growth understates the logical bytes",
        ],
        "results": results,
        "summary": summary,
        "ratios_ours_over_langgraph": ratios,
        "goals": goals,
    }
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
