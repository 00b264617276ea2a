"""Shape benchmark: how cost scales with the shape of a run (fan-out width, chain length, fork depth).

Compares wfdash (`WorkflowCheckpointer`, in memory and on `runs.store.DatabaseCheckpointStore`) with
llama-index-workflows 1.3 (its in-memory `WorkflowCheckpointer`) and LangGraph 1.2 (`Send` map-reduce;
InMemorySaver, sync SqliteSaver and PostgresSaver on a psycopg ConnectionPool, `durability="sync"` on the
durable savers). Prints one JSON document to stdout (progress to stderr).

    .venv-bench/bin/python bench/shapes.py --out bench/results/shapes.json   # full mode (~32 min on 2 cores)
    .venv-bench/bin/python bench/shapes.py --quick        # ~4 min: fan-out <= 1,000, chain <= 10,000

Shapes (every case in its own subprocess; each figure the median of its repeats, with min and max):

1. fanout.<engine>.<backend>.<N>: a start step sends N events (~120 bytes of text each) with
   ctx.send_event, a `@step(num_workers=10)` step answers each, a collector fans in with
   ctx.collect_events(ev, [Result] * N) (2N+1 steps, 2N+1 checkpoints). ms_per_event = run time / N.
   Bytes per event: wfdash `state_record_bytes` = sum of len(json.dumps(state_record)) over the run's
   checkpoints (what is stored, not the materialised ctx_state); durable backends add `row_bytes` (the
   text of the checkpoint rows' JSON columns: state + input_event + output_event) and `physical_bytes`
   (table + index growth: SQLite dbstat sum(pgsize) of the runs_* tables, PostgreSQL
   pg_total_relation_size of runs_checkpoint + runs_blob + runs_run). llama: sum of
   len(json.dumps(ctx_state)) over its checkpoints. LangGraph: serialized checkpoints + metadata + blobs +
   writes of the thread (`logical_bytes`), and the growth of its tables (`physical_bytes`).
2. chain.<engine>.<backend>.<N>: one step re-emitting an event to itself N times (counter in the event
   and in the store), durable; each repeat in a fresh subprocess; ms_per_step, physical and logical
   bytes per step, and the process' RSS growth over the run (VmRSS after - before, after a warm-up run).
   LangGraph: a self-looping node on sync SqliteSaver / PostgresSaver (pool), durability="sync".
3. fork.<backend>.{chain,fanout}: time from `await store.get_checkpoint(id, workflow)` (included)
   through `WorkflowCheckpointer(workflow, store=...).run_from(checkpoint)` until the first step of the
   new run starts executing (a step records time.perf_counter() at entry). From the last checkpoint of
   the longest chain that has a step to follow (seq N-1 of N: seq N's output is the StopEvent), and from
   the middle checkpoint (seq = checkpoints // 2) of the widest durable fan-out.

A repeat over --cap seconds (60 s; 20 s with --quick) is stopped from inside its steps and the case reads
"skipped: too slow" with its partial progress; larger sizes of the same case are then not tried. wfdash's
durable chains, whose 100,000-step runs are the goal measurement, get --chain-cap (300 s; 60 s quick).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import operator
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_PG_DB", "wfdash_bench_shapes")
PG_DB_LG = PG_DB + "_lg"
WORKERS = 10
SKIPPED = "skipped: too slow"
SKIPPED_SMALLER = "skipped: too slow (a smaller size of this case was already over the cap)"
WORKFLOWS_ENV = "shapes_fanout=shapes.ShapesFanout,shapes_chain=shapes.ShapesChain"

MODES: dict[str, dict[str, Any]] = {
    "full": {
        "fanout": [100, 1000, 10000],
        "chain": [1000, 10000, 100000],
        "repeats": {100: 5, 1000: 5, 10000: 3, 100000: 3},
        "fork_repeats": 5,
        "cap_s": 60.0,
        "chain_cap_s": 300.0,
        "lg_chain_backends": ["sqlite", "postgresql"],
    },
    "quick": {
        "fanout": [100, 1000],
        "chain": [1000, 10000],
        "repeats": {100: 3, 1000: 3, 10000: 3},
        "fork_repeats": 3,
        "cap_s": 20.0,
        "chain_cap_s": 60.0,
        "lg_chain_backends": ["sqlite"],
    },
}

GOALS = {
    "fanout_time_ratio_max": 1.5,  # ms/event at the largest N / at N=100
    "fanout_bytes_ratio_max": 1.2,  # bytes/event, same
    "chain_flat_ratio_max": 1.3,  # ms/step and bytes/step, largest / smallest chain
    "chain_rss_growth_mb_max": 20.0,  # over the largest chain
    "fork_latency_ms_max": 200.0,
}

BASE_TEXT = (
    "The quick brown fox jumps over the lazy dog while the workflow engine checkpoints every step "
    "of the run, durably and in order."
)


def work_text(i: int) -> str:
    """About 120 bytes of text, distinct per event."""
    return f"{i:07d} {BASE_TEXT}"[:120]


def log(msg: str) -> None:
    print(f"[shapes {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# == probes shared by every engine's step bodies ======================================


class CapExceeded(Exception):
    pass


class Probe:
    """Counts steps (partial progress), stops a run past its deadline, records the first step's entry."""

    def __init__(self) -> None:
        self.reset(float("inf"))

    def reset(self, deadline: float) -> None:
        self.deadline = deadline
        self.steps = 0
        self.work = 0
        self.cap_hit = False
        self.first_entry: float | None = None

    def tick(self, work: bool = False) -> None:
        now = time.perf_counter()
        if self.first_entry is None:
            self.first_entry = now
        self.steps += 1
        if work:
            self.work += 1
        if now > self.deadline:
            self.cap_hit = True
            raise CapExceeded("over the cap")


PROBE = Probe()


def rss_kb() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def stats(values: list[float], digits: int = 4) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "repeats": len(values),
    }


# == wfdash workflows (registered as shapes_fanout / shapes_chain in the children) =====


class FanStart(StartEvent):
    n: int


class Work(Event):
    i: int
    text: str


class Result(Event):
    i: int
    length: int


class ShapesFanout(Workflow):
    @step
    async def start(self, ctx: Context, ev: FanStart) -> Work | None:
        PROBE.tick()
        await ctx.store.set("n", ev.n)
        for i in range(ev.n):
            ctx.send_event(Work(i=i, text=work_text(i)))
        return None

    @step(num_workers=WORKERS)
    async def work(self, ev: Work) -> Result:
        PROBE.tick(work=True)
        return Result(i=ev.i, length=len(ev.text))

    @step
    async def collect(self, ctx: Context, ev: Result) -> StopEvent | None:
        PROBE.tick()
        n = await ctx.store.get("n")
        got = ctx.collect_events(ev, [Result] * n)
        return None if got is None else StopEvent(result=len(got))


class ChainStart(StartEvent):
    steps: int


class Tick(Event):
    n: int


class ShapesChain(Workflow):
    @step
    async def tick(self, ctx: Context, ev: ChainStart | Tick) -> Tick | StopEvent:
        PROBE.tick()
        if isinstance(ev, ChainStart):
            await ctx.store.set("steps", ev.steps)
            n = 1
        else:
            n = ev.n + 1
        await ctx.store.set("n", n)
        if n >= await ctx.store.get("steps"):
            return StopEvent(result=n)
        return Tick(n=n)


# == llama-index-workflows 1.3 (same shape, its API) ===================================


def llama_fanout() -> Any:
    """The fan-out on llama's API. Annotations are set explicitly: the event classes are local, and
    this module's postponed annotations would not resolve."""
    from workflows import Context as LContext
    from workflows import Workflow as LWorkflow
    from workflows import step as lstep
    from workflows.events import Event as LEvent
    from workflows.events import StartEvent as LStart
    from workflows.events import StopEvent as LStop

    LFanStart = type("LFanStart", (LStart,), {"__annotations__": {"n": int}, "__module__": __name__})
    LWork = type("LWork", (LEvent,), {"__annotations__": {"i": int, "text": str}, "__module__": __name__})
    LResult = type("LResult", (LEvent,), {"__annotations__": {"i": int, "length": int}, "__module__": __name__})

    async def start(self: Any, ctx: Any, ev: Any) -> Any:
        PROBE.tick()
        await ctx.store.set("n", ev.n)
        for i in range(ev.n):
            ctx.send_event(LWork(i=i, text=work_text(i)))
        return None

    async def work(self: Any, ev: Any) -> Any:
        PROBE.tick(work=True)
        return LResult(i=ev.i, length=len(ev.text))

    async def collect(self: Any, ctx: Any, ev: Any) -> Any:
        PROBE.tick()
        n = await ctx.store.get("n")
        got = ctx.collect_events(ev, [LResult] * n)
        return None if got is None else LStop(result=len(got))

    start.__annotations__ = {"ctx": LContext, "ev": LFanStart, "return": LWork | None}
    work.__annotations__ = {"ev": LWork, "return": LResult}
    collect.__annotations__ = {"ctx": LContext, "ev": LResult, "return": LStop | None}
    for fn in (start, work, collect):
        fn.__qualname__ = f"LlamaFanout.{fn.__name__}"
    steps = {
        "start": lstep(num_workers=1)(start),
        "work": lstep(num_workers=WORKERS)(work),
        "collect": lstep(num_workers=1)(collect),
    }
    return type("LlamaFanout", (LWorkflow,), {"__module__": __name__, **steps}), LFanStart


# == LangGraph 1.2 graphs (sync nodes, sync invoke) ====================================


class LgFanState(TypedDict):
    n: int
    results: Annotated[list[int], operator.add]
    total: int


class LgWorkState(TypedDict):
    i: int
    text: str


class LgChainState(TypedDict):
    n: int
    steps: int


def _lg_start(state: LgFanState) -> dict[str, Any]:
    PROBE.tick()
    return {}


def _lg_work(state: LgWorkState) -> dict[str, Any]:
    PROBE.tick(work=True)
    return {"results": [len(state["text"])]}


def _lg_collect(state: LgFanState) -> dict[str, Any]:
    PROBE.tick()
    return {"total": len(state["results"])}


def _lg_tick(state: LgChainState) -> dict[str, Any]:
    PROBE.tick()
    return {"n": state["n"] + 1}


def lg_fanout_graph() -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    g = StateGraph(LgFanState)
    g.add_node("start", _lg_start)
    g.add_node("work", _lg_work)
    g.add_node("collect", _lg_collect)
    g.add_edge(START, "start")
    g.add_conditional_edges(
        "start", lambda s: [Send("work", {"i": i, "text": work_text(i)}) for i in range(s["n"])], ["work"]
    )
    g.add_edge("work", "collect")
    g.add_edge("collect", END)
    return g


def lg_chain_graph() -> Any:
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(LgChainState)
    g.add_node("tick", _lg_tick)
    g.add_edge(START, "tick")
    g.add_conditional_edges("tick", lambda s: "tick" if s["n"] < s["steps"] else END, ["tick", END])
    return g


class LgSaver:
    """A LangGraph saver on one backend, with byte accounting for one thread."""

    def __init__(self, backend: str, sqlite_path: str | None, pg_url: str | None) -> None:
        self.backend = backend
        self.close: Any = lambda: None
        self.saver: Any
        if backend == "memory":
            from langgraph.checkpoint.memory import InMemorySaver

            self.saver = InMemorySaver()
        elif backend == "sqlite":
            import sqlite3

            from langgraph.checkpoint.sqlite import SqliteSaver

            assert sqlite_path
            self.path = sqlite_path
            conn = sqlite3.connect(sqlite_path, check_same_thread=False)
            self.saver = SqliteSaver(conn)
            self.saver.setup()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self.conn = conn
            self.close = conn.close
        else:
            from langgraph.checkpoint.postgres import PostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            assert pg_url
            self.url = pg_url
            # LangGraph's documented setup: a pool, autocommit, no prepared statements, dict rows.
            pool: Any = ConnectionPool(
                conninfo=pg_url,
                max_size=20,
                kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
                open=True,
            )
            self.saver = PostgresSaver(pool)
            self.saver.setup()
            self.close = pool.close

    def physical(self) -> int:
        if self.backend == "memory":
            return 0
        if self.backend == "sqlite":
            row = self.conn.execute(
                "SELECT COALESCE(SUM(d.pgsize), 0) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
                "WHERE m.tbl_name IN ('checkpoints', 'writes')"
            ).fetchone()
            return int(row[0])
        import psycopg

        conn: Any
        with psycopg.connect(self.url, autocommit=True) as conn:
            return sum(
                int(conn.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0])
                for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
            )

    def logical(self, thread_id: str) -> int:
        conn: Any
        if self.backend == "memory":
            s = self.saver
            total = 0
            for ck, md, _parent in s.storage.get(thread_id, {}).get("", {}).values():
                total += len(ck[1]) + len(md[1])
            for key, (_t, data) in s.blobs.items():
                if key[0] == thread_id:
                    total += len(data)
            for key, inner in s.writes.items():
                if key[0] == thread_id:
                    total += sum(len(v[2][1]) for v in inner.values())
            return total
        if self.backend == "sqlite":
            c = self.conn
            a = c.execute(
                "SELECT COALESCE(SUM(length(checkpoint) + length(metadata)), 0) FROM checkpoints WHERE thread_id=?",
                (thread_id,),
            ).fetchone()[0]
            b = c.execute(
                "SELECT COALESCE(SUM(length(value)), 0) FROM writes WHERE thread_id=?", (thread_id,)
            ).fetchone()[0]
            return int(a) + int(b)
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            a = conn.execute(
                "SELECT COALESCE(SUM(octet_length(checkpoint::text) + octet_length(metadata::text)), 0) "
                "FROM checkpoints WHERE thread_id=%s",
                (thread_id,),
            ).fetchone()[0]
            b = conn.execute(
                "SELECT COALESCE(SUM(octet_length(blob)), 0) FROM checkpoint_blobs WHERE thread_id=%s", (thread_id,)
            ).fetchone()[0]
            w = conn.execute(
                "SELECT COALESCE(SUM(octet_length(blob)), 0) FROM checkpoint_writes WHERE thread_id=%s", (thread_id,)
            ).fetchone()[0]
            return int(a) + int(b) + int(w)


# == wfdash on Django (child helpers) ==================================================


def django_setup() -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute("select sqlite_version()")
            info: dict[str, Any] = {"vendor": "sqlite", "version": cur.fetchone()[0]}
            for p in ("journal_mode", "synchronous"):
                cur.execute(f"PRAGMA {p}")
                info[p] = cur.fetchone()[0]
            return info
        cur.execute("show server_version")
        info = {"vendor": "postgresql", "version": cur.fetchone()[0]}
        cur.execute("show synchronous_commit")
        info["synchronous_commit"] = cur.fetchone()[0]
        return info


def table_bytes() -> int:
    """Physical bytes (tables + indexes) of the runs tables."""
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute(
                "SELECT COALESCE(SUM(d.pgsize), 0) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
                "WHERE m.tbl_name LIKE 'runs\\_%' ESCAPE '\\'"
            )
            return int(cur.fetchone()[0])
        cur.execute(
            "SELECT pg_total_relation_size('runs_checkpoint') + pg_total_relation_size('runs_blob') "
            "+ pg_total_relation_size('runs_run')"
        )
        return int(cur.fetchone()[0])


def run_bytes(run_id: str) -> dict[str, int]:
    """state_record bytes (json.dumps of each stored record) and row bytes (JSON columns' text) of a run."""
    from django.db import connection

    from runs.models import Checkpoint

    states = Checkpoint.objects.filter(run_id=run_id).values_list("state", flat=True).iterator(chunk_size=2000)
    state_bytes = sum(len(json.dumps(s)) for s in states)
    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(CAST(state AS BLOB)) + length(CAST(input_event AS BLOB)) "
                "+ COALESCE(length(CAST(output_event AS BLOB)), 0)), 0) FROM runs_checkpoint WHERE run_id = %s",
                [uuid.UUID(run_id).hex],
            )
        else:
            cur.execute(
                "SELECT COUNT(*), COALESCE(SUM(octet_length(state::text) + octet_length(input_event::text) "
                "+ COALESCE(octet_length(output_event::text), 0)), 0) FROM runs_checkpoint WHERE run_id = %s",
                [run_id],
            )
        count, row_bytes = cur.fetchone()
    return {"checkpoints": int(count), "state_record_bytes": state_bytes, "row_bytes": int(row_bytes)}


async def _abort(handler: Any) -> None:
    try:
        await asyncio.wait_for(handler.cancel_run(), 5)
    except BaseException:  # noqa: BLE001 - however the run ended, it is over
        pass


async def _settle() -> None:
    """Let background tasks of a stopped run finish before the next repeat."""
    await asyncio.sleep(0.2)


# == children ==========================================================================


def child_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    engine, backend, n, repeats, cap = spec["engine"], spec["backend"], spec["n"], spec["repeats"], spec["cap"]
    if engine == "langgraph":
        return _lg_fanout(spec)
    info: dict[str, Any] = {}
    if engine == "wfdash" and backend != "memory":
        info["db"] = django_setup()
    return asyncio.run(_event_fanout(engine, backend, n, repeats, cap, info))


async def _event_fanout(engine: str, backend: str, n: int, repeats: int, cap: float, info: dict) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    if engine == "wfdash":
        from wfdash.workflow.checkpointer import WorkflowCheckpointer

        wf_cls, start_cls = ShapesFanout, FanStart
    else:
        from workflows.checkpointer import WorkflowCheckpointer  # type: ignore[no-redef,assignment]

        wf_cls, start_cls = llama_fanout()
    durable = engine == "wfdash" and backend != "memory"

    def new_checkpointer() -> Any:
        wf = wf_cls(timeout=None)
        if durable:
            from runs.store import DatabaseCheckpointStore

            return WorkflowCheckpointer(wf, store=DatabaseCheckpointStore())
        return WorkflowCheckpointer(workflow=wf)

    def launch(cp: Any, n: int) -> Any:
        return cp.run(start_cls(n=n)) if engine == "wfdash" else cp.run(start_event=start_cls(n=n))

    # warm-up: imports, connection, caches
    PROBE.reset(float("inf"))
    await launch(new_checkpointer(), 10)

    per: dict[str, list[float]] = {k: [] for k in ("ms_per_run", "ms_per_event", "bytes_per_event")}
    if durable:
        per.update(row_bytes_per_event=[], physical_bytes_per_event=[])
    run_ids: list[str] = []
    checkpoints = 0
    for r in range(repeats):
        cp = new_checkpointer()
        before = await sync_to_async(table_bytes)() if durable else 0
        gc.collect()
        t0 = time.perf_counter()
        PROBE.reset(t0 + cap)
        handler = launch(cp, n)
        try:
            result = await handler
        except BaseException as exc:  # noqa: BLE001
            elapsed = time.perf_counter() - t0
            await _abort(handler)
            await _settle()
            if not PROBE.cap_hit:
                raise
            log(f"fanout {engine}/{backend}/{n}: over the cap ({exc!r:.80})")
            return {
                **info,
                "status": SKIPPED,
                "partial": {
                    "seconds": round(elapsed, 2),
                    "steps_done": PROBE.steps,
                    "events_done": PROBE.work,
                    "ms_per_event_done": round(elapsed / max(PROBE.work, 1) * 1e3, 3),
                },
                "completed_repeats": r,
            }
        elapsed = time.perf_counter() - t0
        assert result == n, result
        per["ms_per_run"].append(elapsed * 1e3)
        per["ms_per_event"].append(elapsed * 1e3 / n)
        if engine == "wfdash" and not durable:
            (ckpts,) = cp.checkpoints.values()
            checkpoints = len(ckpts)
            per["bytes_per_event"].append(sum(len(json.dumps(c.state_record)) for c in ckpts) / n)
        elif engine == "llama":
            (ckpts,) = cp.checkpoints.values()
            checkpoints = len(ckpts)
            per["bytes_per_event"].append(sum(len(json.dumps(c.ctx_state)) for c in ckpts) / n)
        else:
            run_id = handler.run_id
            run_ids.append(run_id)
            after = await sync_to_async(table_bytes)()
            b = await sync_to_async(run_bytes)(run_id)
            checkpoints = b["checkpoints"]
            per["bytes_per_event"].append(b["state_record_bytes"] / n)
            per["row_bytes_per_event"].append(b["row_bytes"] / n)
            per["physical_bytes_per_event"].append((after - before) / n)
        del cp
        log(f"fanout {engine}/{backend}/{n} #{r + 1}: {elapsed * 1e3 / n:.3f} ms/event")
    out = {**info, "n": n, "checkpoints_per_run": checkpoints}
    out.update({k: stats(v) for k, v in per.items()})
    if run_ids:
        out["run_ids"] = run_ids
    out["bytes_measure"] = (
        "sum len(json.dumps(ctx_state)) (llama stores the full context each time)"
        if engine == "llama"
        else "sum len(json.dumps(state_record))"
    )
    return out


def _lg_fanout(spec: dict[str, Any]) -> dict[str, Any]:
    backend, n, repeats, cap = spec["backend"], spec["n"], spec["repeats"], spec["cap"]
    saver = LgSaver(backend, spec.get("sqlite_path"), spec.get("pg_url"))
    durability = "sync" if backend != "memory" else "async"
    try:
        app = lg_fanout_graph().compile(checkpointer=saver.saver)

        def cfg() -> dict[str, Any]:
            return {
                "configurable": {"thread_id": str(uuid.uuid4())},
                "recursion_limit": 20,
                "max_concurrency": WORKERS,
            }

        PROBE.reset(float("inf"))
        app.invoke({"n": 10, "results": [], "total": 0}, cfg(), durability=durability)
        per: dict[str, list[float]] = {k: [] for k in ("ms_per_run", "ms_per_event", "bytes_per_event")}
        if backend != "memory":
            per["physical_bytes_per_event"] = []
        for r in range(repeats):
            c = cfg()
            before = saver.physical()
            gc.collect()
            t0 = time.perf_counter()
            PROBE.reset(t0 + cap)
            try:
                state = app.invoke({"n": n, "results": [], "total": 0}, c, durability=durability)
            except BaseException:
                elapsed = time.perf_counter() - t0
                if not PROBE.cap_hit:
                    raise
                return {
                    "status": SKIPPED,
                    "partial": {
                        "seconds": round(elapsed, 2),
                        "steps_done": PROBE.steps,
                        "events_done": PROBE.work,
                        "ms_per_event_done": round(elapsed / max(PROBE.work, 1) * 1e3, 3),
                    },
                    "completed_repeats": r,
                }
            elapsed = time.perf_counter() - t0
            assert state["total"] == n, state["total"]
            per["ms_per_run"].append(elapsed * 1e3)
            per["ms_per_event"].append(elapsed * 1e3 / n)
            per["bytes_per_event"].append(saver.logical(c["configurable"]["thread_id"]) / n)
            if backend != "memory":
                per["physical_bytes_per_event"].append((saver.physical() - before) / n)
            log(f"fanout langgraph/{backend}/{n} #{r + 1}: {elapsed * 1e3 / n:.3f} ms/event")
        out: dict[str, Any] = {"n": n, "durability": durability, "max_concurrency": WORKERS}
        out.update({k: stats(v) for k, v in per.items()})
        out["bytes_measure"] = "serialized checkpoints + metadata + channel blobs + task writes of the thread"
        return out
    finally:
        saver.close()


def child_chain(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["engine"] == "langgraph":
        return _lg_chain(spec)
    info = django_setup()
    return asyncio.run(_wfdash_chain(spec["n"], spec["cap"], info))


async def _wfdash_chain(n: int, cap: float, info: dict[str, Any]) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from runs.store import DatabaseCheckpointStore
    from wfdash.workflow.checkpointer import WorkflowCheckpointer

    PROBE.reset(float("inf"))
    await WorkflowCheckpointer(ShapesChain(timeout=None), store=DatabaseCheckpointStore()).run(ChainStart(steps=20))
    cp = WorkflowCheckpointer(ShapesChain(timeout=None), store=DatabaseCheckpointStore())
    before = await sync_to_async(table_bytes)()
    gc.collect()
    rss0 = rss_kb()
    t0 = time.perf_counter()
    PROBE.reset(t0 + cap)
    handler = cp.run(ChainStart(steps=n))
    try:
        result = await handler
    except BaseException as exc:  # noqa: BLE001
        elapsed = time.perf_counter() - t0
        await _abort(handler)
        if not PROBE.cap_hit:
            raise
        log(f"chain wfdash/{n}: over the cap ({exc!r:.80})")
        return {
            **info,
            "status": SKIPPED,
            "partial": {
                "seconds": round(elapsed, 2),
                "steps_done": PROBE.steps,
                "ms_per_step_done": round(elapsed / max(PROBE.steps, 1) * 1e3, 4),
            },
        }
    elapsed = time.perf_counter() - t0
    assert result == n, result
    gc.collect()
    rss1 = rss_kb()
    after = await sync_to_async(table_bytes)()
    b = await sync_to_async(run_bytes)(handler.run_id)
    return {
        **info,
        "n": n,
        "run_id": handler.run_id,
        "seconds": elapsed,
        "ms_per_step": elapsed * 1e3 / n,
        "checkpoints": b["checkpoints"],
        "physical_bytes_per_step": (after - before) / n,
        "state_record_bytes_per_step": b["state_record_bytes"] / n,
        "row_bytes_per_step": b["row_bytes"] / n,
        "rss_before_kb": rss0["VmRSS"],
        "rss_after_kb": rss1["VmRSS"],
        "rss_growth_mb": (rss1["VmRSS"] - rss0["VmRSS"]) / 1024,
        "peak_rss_kb": rss1["VmHWM"],
    }


def _lg_chain(spec: dict[str, Any]) -> dict[str, Any]:
    backend, n, cap = spec["backend"], spec["n"], spec["cap"]
    saver = LgSaver(backend, spec.get("sqlite_path"), spec.get("pg_url"))
    try:
        app = lg_chain_graph().compile(checkpointer=saver.saver)

        def cfg(steps: int) -> dict[str, Any]:
            return {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": steps + 10}

        PROBE.reset(float("inf"))
        app.invoke({"n": 0, "steps": 20}, cfg(20), durability="sync")
        c = cfg(n)
        before = saver.physical()
        gc.collect()
        rss0 = rss_kb()
        t0 = time.perf_counter()
        PROBE.reset(t0 + cap)
        try:
            state = app.invoke({"n": 0, "steps": n}, c, durability="sync")
        except BaseException:
            elapsed = time.perf_counter() - t0
            if not PROBE.cap_hit:
                raise
            log(f"chain langgraph/{backend}/{n}: over the cap")
            return {
                "status": SKIPPED,
                "partial": {
                    "seconds": round(elapsed, 2),
                    "steps_done": PROBE.steps,
                    "ms_per_step_done": round(elapsed / max(PROBE.steps, 1) * 1e3, 4),
                },
            }
        elapsed = time.perf_counter() - t0
        assert state["n"] == n, state
        gc.collect()
        rss1 = rss_kb()
        return {
            "n": n,
            "durability": "sync",
            "seconds": elapsed,
            "ms_per_step": elapsed * 1e3 / n,
            "physical_bytes_per_step": (saver.physical() - before) / n,
            "logical_bytes_per_step": saver.logical(c["configurable"]["thread_id"]) / n,
            "rss_before_kb": rss0["VmRSS"],
            "rss_after_kb": rss1["VmRSS"],
            "rss_growth_mb": (rss1["VmRSS"] - rss0["VmRSS"]) / 1024,
            "peak_rss_kb": rss1["VmHWM"],
        }
    finally:
        saver.close()


def child_fork(spec: dict[str, Any]) -> dict[str, Any]:
    info = django_setup()
    return asyncio.run(_fork(spec, info))


async def _fork(spec: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    from runs.models import Checkpoint as Row
    from runs.store import DatabaseCheckpointStore
    from wfdash.workflow.checkpointer import WorkflowCheckpointer

    def pick(run_id: str, where: str) -> tuple[str, int, int]:
        seqs = Row.objects.filter(run_id=run_id)
        last = seqs.order_by("-seq").values_list("seq", flat=True).first()
        assert last is not None, run_id
        seq = last - 1 if where == "last" else last // 2
        cid = seqs.get(seq=seq).id
        return str(cid), seq, last

    out: dict[str, Any] = {**info}
    cases = [
        ("chain", ShapesChain, spec.get("chain_run_id"), "last"),
        ("fanout", ShapesFanout, spec.get("fanout_run_id"), "mid"),
    ]
    for name, wf_cls, run_id, where in cases:
        if not run_id:
            out[name] = {"status": "not measured: no source run"}
            continue
        cid, seq, last = await sync_to_async(pick)(run_id, where)
        latencies, loads, totals = [], [], []
        # warm-up fork from another checkpoint of the same run (imports, statements, caches): the
        # chain's third-last (two steps to run), the fan-out's first (stopped once started)
        warm_seq = last - 2 if name == "chain" else 1
        warm_id = await sync_to_async(lambda rid=run_id, s=warm_seq: str(Row.objects.get(run_id=rid, seq=s).id))()
        PROBE.reset(float("inf"))
        warm_store = DatabaseCheckpointStore()
        wf = wf_cls(timeout=None)
        h = WorkflowCheckpointer(wf, store=warm_store).run_from(await warm_store.get_checkpoint(warm_id, wf))
        if name == "chain":
            await h
        else:  # a fork of the whole fan-out: stop it once started
            while PROBE.first_entry is None:
                await asyncio.sleep(0.001)
            await _abort(h)
            await _settle()
        for r in range(spec["repeats"]):
            store = DatabaseCheckpointStore()
            wf = wf_cls(timeout=None)
            gc.collect()
            PROBE.reset(time.perf_counter() + spec["cap"])
            t0 = time.perf_counter()
            checkpoint = await store.get_checkpoint(cid, wf)
            t_loaded = time.perf_counter()
            handler = WorkflowCheckpointer(wf, store=store).run_from(checkpoint)
            result = await handler
            t_end = time.perf_counter()
            assert PROBE.first_entry is not None
            expected = spec["chain_n"] if name == "chain" else spec["fanout_n"]
            assert result == expected, (result, expected)
            latencies.append((PROBE.first_entry - t0) * 1e3)
            loads.append((t_loaded - t0) * 1e3)
            totals.append((t_end - t0) * 1e3)
            log(f"fork {name} #{r + 1}: first step after {latencies[-1]:.1f} ms (load {loads[-1]:.1f} ms)")
        out[name] = {
            "source_run_id": run_id,
            "checkpoint_id": cid,
            "checkpoint_seq": seq,
            "run_checkpoints": last,
            "first_step_latency_ms": stats(latencies, 2),
            "get_checkpoint_ms": stats(loads, 2),
            "fork_run_total_ms": stats(totals, 1),
            "latencies_ms": [round(x, 2) for x in latencies],
        }
    return out


# == orchestration (parent) ============================================================


def pg_url(db: str) -> str:
    return PG_ADMIN_URL.rpartition("/")[0] + "/" + db


def recreate_pg(db: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')


def drop_pg(db: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    except Exception as exc:  # noqa: BLE001 - never fatal
        log(f"could not drop {db}: {exc}")


class Runner:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.sqlite_path = workdir / "wfdash.sqlite3"
        self.lg_counter = 0

    def env(self, backend: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
        env.update(
            DJANGO_SETTINGS_MODULE="wfdash.settings",
            DEBUG="0",
            SECRET_KEY=env.get("SECRET_KEY") or "wfdash-bench-not-secret",
            WFDASH_LOG_LEVEL="WARNING",
            WFDASH_WORKFLOWS=WORKFLOWS_ENV,
            PYTHONPATH=os.pathsep.join(
                [str(ROOT), str(BENCH)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            ),
        )
        if backend == "sqlite":
            env["DATABASE_URL"] = f"sqlite:///{self.sqlite_path}"
        elif backend == "postgresql":
            env["DATABASE_URL"] = pg_url(PG_DB).replace("postgresql://", "postgres://", 1)
        return env

    def lg_paths(self, backend: str) -> dict[str, Any]:
        if backend == "sqlite":
            self.lg_counter += 1
            return {"sqlite_path": str(self.workdir / f"langgraph-{self.lg_counter}.sqlite3")}
        if backend == "postgresql":
            recreate_pg(PG_DB_LG)
            return {"pg_url": pg_url(PG_DB_LG)}
        return {}

    def child(self, kind: str, spec: dict[str, Any], backend: str, timeout: float) -> dict[str, Any]:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--spec", json.dumps(spec)]
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, env=self.env(backend), cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"status": f"error: child exceeded {timeout:.0f} s"}
        if proc.returncode != 0:
            return {"status": f"error: child exit code {proc.returncode} (see stderr)"}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["child_wall_s"] = round(time.perf_counter() - t0, 2)
        result["loadavg_1min_before_after"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        return result


def _skipped(case: Any) -> bool:
    return isinstance(case, dict) and str(case.get("status", "")).startswith(("skipped", "error"))


def run_fanout(r: Runner, mode: dict[str, Any], cap: float, combos: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine, backend in combos:
        over = False
        for n in mode["fanout"]:
            key = f"{engine}.{backend}.{n}"
            if over:
                out.setdefault(engine, {}).setdefault(backend, {})[str(n)] = {"status": SKIPPED_SMALLER}
                continue
            reps = mode["repeats"][n]
            spec = {"engine": engine, "backend": backend, "n": n, "repeats": reps, "cap": cap}
            if engine == "langgraph":
                spec.update(r.lg_paths(backend))
            log(f"fanout {key}: {reps} repeats")
            res = r.child("fanout", spec, backend if engine == "wfdash" else "memory", cap * (reps + 2) + 300)
            out.setdefault(engine, {}).setdefault(backend, {})[str(n)] = res
            over = _skipped(res)
    return out


def run_chain(r: Runner, mode: dict[str, Any], caps: dict[str, float], combos: list[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for engine, backend in combos:
        cap = caps[engine]
        over = False
        for n in mode["chain"]:
            slot = out.setdefault(engine, {}).setdefault(backend, {})
            if over:
                slot[str(n)] = {"status": SKIPPED_SMALLER}
                continue
            reps = mode["repeats"][n]
            runs: list[dict[str, Any]] = []
            for i in range(reps):
                spec: dict[str, Any] = {"engine": engine, "backend": backend, "n": n, "cap": cap}
                if engine == "langgraph":
                    spec.update(r.lg_paths(backend))
                log(f"chain {engine}.{backend}.{n} repeat {i + 1}/{reps} (fresh process)")
                res = r.child("chain", spec, backend if engine == "wfdash" else "memory", cap + 300)
                if _skipped(res):
                    slot[str(n)] = {**res, "completed_repeats": len(runs)}
                    over = True
                    break
                runs.append(res)
                log(
                    f"chain {engine}.{backend}.{n}: {res['ms_per_step']:.4f} ms/step, "
                    f"{res['physical_bytes_per_step']:.0f} B/step, RSS +{res['rss_growth_mb']:.1f} MB"
                )
            if over:
                continue
            case: dict[str, Any] = {"n": n}
            for k in (
                "ms_per_step",
                "physical_bytes_per_step",
                "state_record_bytes_per_step",
                "row_bytes_per_step",
                "logical_bytes_per_step",
                "rss_growth_mb",
            ):
                if k in runs[0]:
                    case[k] = stats([x[k] for x in runs])
            case["peak_rss_kb"] = max(x["peak_rss_kb"] for x in runs)
            if engine == "wfdash":
                case["run_ids"] = [x["run_id"] for x in runs]
                case["checkpoints_per_run"] = runs[0]["checkpoints"]
                case["db"] = {
                    k: v
                    for k, v in runs[0].items()
                    if k in ("vendor", "version", "journal_mode", "synchronous", "synchronous_commit")
                }
            case["per_repeat"] = [
                {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in x.items()
                    if k not in ("vendor", "version", "journal_mode", "synchronous", "synchronous_commit")
                }
                for x in runs
            ]
            slot[str(n)] = case
    return out


def _median(case: Any, key: str) -> float | None:
    if isinstance(case, dict) and isinstance(case.get(key), dict):
        return case[key].get("median")
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarize(results: dict[str, Any], mode: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    summary: dict[str, Any] = {"fanout": {}, "chain": {}, "fork": {}}
    goals: dict[str, Any] = {}
    lo, hi = str(mode["fanout"][0]), str(mode["fanout"][-1])
    for engine, backends in results.get("fanout", {}).items():
        for backend, sizes in backends.items():
            row = {}
            for n, case in sizes.items():
                if _skipped(case):
                    row[n] = case.get("status")
                    continue
                row[n] = {
                    "ms_per_event": _median(case, "ms_per_event"),
                    "bytes_per_event": _median(case, "bytes_per_event"),
                    "physical_bytes_per_event": _median(case, "physical_bytes_per_event"),
                }
            summary["fanout"][f"{engine}.{backend}"] = row
            if engine != "wfdash":
                continue
            a, b = sizes.get(hi), sizes.get(lo)
            t = _ratio(_median(a, "ms_per_event"), _median(b, "ms_per_event"))
            goal: dict[str, Any] = {
                "sizes": [int(lo), int(hi)],
                "time_ratio": t,
                "time_ratio_max": GOALS["fanout_time_ratio_max"],
                "time_met": t is not None and t <= GOALS["fanout_time_ratio_max"],
            }
            for k in ("bytes_per_event", "physical_bytes_per_event", "row_bytes_per_event"):
                rb = _ratio(_median(a, k), _median(b, k))
                if rb is not None:
                    goal[f"{k}_ratio"] = rb
                    goal[f"{k}_met"] = rb <= GOALS["fanout_bytes_ratio_max"]
            goal["bytes_ratio_max"] = GOALS["fanout_bytes_ratio_max"]
            goal["met"] = goal["time_met"] and all(v for k, v in goal.items() if k.endswith("_per_event_met"))
            goals[f"fanout_{backend}_per_event_{hi}_vs_{lo}"] = goal
    clo, chi = str(mode["chain"][0]), str(mode["chain"][-1])
    for engine, backends in results.get("chain", {}).items():
        for backend, sizes in backends.items():
            row = {}
            for n, case in sizes.items():
                if _skipped(case):
                    row[n] = case.get("status")
                    continue
                row[n] = {
                    "ms_per_step": _median(case, "ms_per_step"),
                    "physical_bytes_per_step": _median(case, "physical_bytes_per_step"),
                    "rss_growth_mb": _median(case, "rss_growth_mb"),
                }
            summary["chain"][f"{engine}.{backend}"] = row
            if engine != "wfdash":
                continue
            oks = [c for c in sizes.values() if not _skipped(c)]
            ms = [x for c in oks if (x := _median(c, "ms_per_step")) is not None]
            by = [x for c in oks if (x := _median(c, "physical_bytes_per_step")) is not None]
            tr = _ratio(max(ms), min(ms)) if ms and len(oks) == len(sizes) else None
            br = _ratio(max(by), min(by)) if by and len(oks) == len(sizes) else None
            rss = _median(sizes.get(chi), "rss_growth_mb")
            goals[f"chain_{backend}_flat_{clo}_to_{chi}"] = {
                "ms_per_step_max_over_min": tr,
                "physical_bytes_per_step_max_over_min": br,
                "ratio_max": GOALS["chain_flat_ratio_max"],
                f"rss_growth_mb_at_{chi}": rss,
                "rss_growth_mb_max": GOALS["chain_rss_growth_mb_max"],
                "time_met": tr is not None and tr <= GOALS["chain_flat_ratio_max"],
                "bytes_met": br is not None and br <= GOALS["chain_flat_ratio_max"],
                "rss_met": rss is not None and rss < GOALS["chain_rss_growth_mb_max"],
            }
    for backend, fork in results.get("fork", {}).items():
        for name in ("chain", "fanout"):
            case = fork.get(name) if isinstance(fork, dict) else None
            lat = _median(case, "first_step_latency_ms")
            summary["fork"][f"{backend}.{name}"] = {
                "first_step_latency_ms": lat,
                "get_checkpoint_ms": _median(case, "get_checkpoint_ms"),
                "checkpoint_seq": case.get("checkpoint_seq") if isinstance(case, dict) else None,
            }
            goals[f"fork_{backend}_{name}_under_200ms"] = {
                "measured_ms": lat,
                "max_ms": GOALS["fork_latency_ms_max"],
                "met": lat is not None and lat < GOALS["fork_latency_ms_max"],
            }
    return summary, goals


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    def version(p: str) -> str | None:
        try:
            return md.version(p)
        except md.PackageNotFoundError:
            return None

    def git(*a: str) -> str | None:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain")
    return {
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "git_dirty_files": status.splitlines()[:40] if status else [],
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "packages": {
            p: version(p)
            for p in (
                "Django",
                "pydantic",
                "asgiref",
                "psycopg",
                "psycopg-pool",
                "llama-index-workflows",
                "langgraph",
                "langgraph-checkpoint",
                "langgraph-checkpoint-sqlite",
                "langgraph-checkpoint-postgres",
                "matplotlib",
            )
        },
    }


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    panels = [
        (axes[0][0], "fanout", "ms_per_event", "fan-out: ms per event", "events (N)"),
        (axes[0][1], "fanout", "bytes", "fan-out: bytes per event (solid: logical, dashed: physical)", "events (N)"),
        (axes[1][0], "chain", "ms_per_step", "durable chain: ms per step", "steps"),
        (axes[1][1], "chain", "bytes", "durable chain: bytes per step (solid: logical, dashed: physical)", "steps"),
    ]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    series = sorted(
        {(e, b) for shape in ("fanout", "chain") for e, bs in doc["results"].get(shape, {}).items() for b in bs}
    )
    color = {s: colors[i % len(colors)] for i, s in enumerate(series)}
    for ax, shape, key, title, xlabel in panels:
        labelled: set[str] = set()
        for engine, backends in doc["results"].get(shape, {}).items():
            for backend, sizes in backends.items():
                label = f"{engine} / {backend}"
                if key != "bytes":
                    keys = [key]
                elif shape == "fanout":
                    keys = ["bytes_per_event", "physical_bytes_per_event"]
                else:
                    logical = "state_record_bytes_per_step" if engine == "wfdash" else "logical_bytes_per_step"
                    keys = [logical, "physical_bytes_per_step"]
                for j, k in enumerate(keys):
                    pts = [(int(n), _median(c, k)) for n, c in sizes.items() if not _skipped(c) and _median(c, k)]
                    if not pts:
                        continue
                    xs, ys = zip(*sorted(pts), strict=True)
                    ax.plot(
                        xs,
                        ys,
                        marker="o",
                        color=color[(engine, backend)],
                        linestyle="-" if j == 0 else "--",
                        label=None if label in labelled else label,
                    )
                    labelled.add(label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"bench/shapes.py ({doc['mode']}); missing points: over the {doc['settings']['cap_s']:.0f} s cap")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fan-out up to 1,000, chain up to 10,000, 3 repeats")
    parser.add_argument("--cap", type=float, help="seconds per repeat before a case is stopped (60 full, 20 quick)")
    parser.add_argument(
        "--chain-cap", type=float, help="seconds per repeat for wfdash's durable chains (300 full, 60 quick)"
    )
    parser.add_argument("--out", help="also write the JSON here (and the growth plot next to it)")
    parser.add_argument("--only", default="fanout,chain,fork", help="comma list of shapes to run")
    parser.add_argument("--backends", default="memory,sqlite,postgresql")
    parser.add_argument("--no-peers", action="store_true", help="wfdash only")
    parser.add_argument("--plot", help="write the growth plot here (default: shapes_growth.png next to --out)")
    parser.add_argument("--replot", metavar="JSON", help="only redraw the growth plot from a results file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        spec = json.loads(args.spec)
        fn = {"fanout": child_fanout, "chain": child_chain, "fork": child_fork}[args.child]
        print(json.dumps(fn(spec), default=str))
        return 0

    if args.replot:
        target = Path(args.plot) if args.plot else Path(args.replot).parent / "shapes_growth.png"
        plot(json.loads(Path(args.replot).read_text()), target)
        log(f"plot: {target}")
        return 0

    mode_name = "quick" if args.quick else "full"
    mode = MODES[mode_name]
    cap = args.cap or mode["cap_s"]
    chain_cap = args.chain_cap or mode["chain_cap_s"]
    only = set(args.only.split(","))
    backends = [b for b in args.backends.split(",") if b]
    durable = [b for b in backends if b != "memory"]
    peers = not args.no_peers
    started = time.time()
    load_start = [round(x, 2) for x in os.getloadavg()]
    env_info = environment()
    workdir = Path(tempfile.mkdtemp(prefix="wfdash-shapes-"))
    results: dict[str, Any] = {}
    try:
        if "postgresql" in backends:
            recreate_pg(PG_DB)
        r = Runner(args, workdir)
        if "fanout" in only:
            combos = [("wfdash", b) for b in backends]
            if peers:
                combos += [("llama", "memory")] if "memory" in backends else []
                combos += [("langgraph", b) for b in backends]
            results["fanout"] = run_fanout(r, mode, cap, combos)
        if "chain" in only:
            lg = [b for b in durable if b in mode["lg_chain_backends"]] if peers else []
            combos = [("wfdash", b) for b in durable] + [("langgraph", b) for b in lg]
            results["chain"] = run_chain(r, mode, {"wfdash": chain_cap, "langgraph": cap}, combos)
        if "fork" in only:
            results["fork"] = {}
            for backend in durable:
                chain = results.get("chain", {}).get("wfdash", {}).get(backend, {}).get(str(mode["chain"][-1]), {})
                fan = results.get("fanout", {}).get("wfdash", {}).get(backend, {}).get(str(mode["fanout"][-1]), {})
                spec = {
                    "chain_run_id": (chain.get("run_ids") or [None])[-1],
                    "chain_n": mode["chain"][-1],
                    "fanout_run_id": (fan.get("run_ids") or [None])[-1],
                    "fanout_n": mode["fanout"][-1],
                    "repeats": mode["fork_repeats"],
                    "cap": cap,
                }
                log(f"fork {backend}")
                results["fork"][backend] = r.child("fork", spec, backend, cap * (mode["fork_repeats"] + 2) + 300)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if "postgresql" in backends:
            drop_pg(PG_DB)
            drop_pg(PG_DB_LG)
    summary, goals = summarize(results, mode)
    doc = {
        "benchmark": "shapes",
        "mode": mode_name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "environment": env_info,
        "machine": {
            "nproc": os.cpu_count(),
            "loadavg_at_start": load_start,
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "cap_s": cap,
            "chain_cap_s_wfdash": chain_cap,
            "langgraph_chain_backends": mode["lg_chain_backends"],
            "fanout_sizes": mode["fanout"],
            "chain_sizes": mode["chain"],
            "repeats_by_size": mode["repeats"],
            "fork_repeats": mode["fork_repeats"],
            "fanout_workers": WORKERS,
            "event_text_bytes": len(work_text(0)),
            "backends": backends,
            "django": "DEBUG=0, no Redis; SQLite WAL + synchronous=NORMAL (settings.py); "
            "PostgreSQL database " + PG_DB + " recreated",
            "langgraph": "sync nodes, app.invoke; InMemorySaver with the default durability, SqliteSaver (WAL, "
            "synchronous=NORMAL) and PostgresSaver(ConnectionPool(max_size=20, autocommit, prepare_threshold=0, "
            "dict_row)) with durability='sync'; fan-out: Send per event, max_concurrency=10",
            "llama": "llama-index-workflows WorkflowCheckpointer (in memory only: it has no durable store)",
            "timing": "time.perf_counter around one run; warm-up run first in each process; "
            "chains: a fresh subprocess per repeat (clean RSS)",
        },
        "goals_spec": GOALS,
        "results": results,
        "summary": summary,
        "goals": goals,
    }
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    plot_path = Path(args.plot) if args.plot else (Path(args.out).parent / "shapes_growth.png" if args.out else None)
    if plot_path is not None:
        plot(doc, plot_path)
        log(f"plot: {plot_path}")
    return 0


if __name__ == "__main__":
    # Run as the module `shapes`, so that the workflow classes the registry imports
    # (WFDASH_WORKFLOWS=...=shapes.ShapesFanout) are the ones the steps' PROBE lives with.
    sys.path.insert(0, str(BENCH))
    import shapes

    sys.exit(shapes.main())
