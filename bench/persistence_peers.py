"""The peers of bench/persistence.py, run in its child processes: LangGraph's sync and async
savers and DBOS Transact, each in its documented configuration (see persistence.py's docstring).

The database comes from the environment persistence.py sets: DATABASE_URL (PostgreSQL) or
BENCH_SQLITE_DIR (a fresh SQLite file per repeat).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import json
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, TypedDict

from common import log, pg_physical_bytes, sqlite_physical_bytes
from persistence import PAYLOAD, SLEEP, SLEEPING_STEPS, latency_figures

LG_TABLES = {
    "sqlite": ("checkpoints", "writes"),
    "postgresql": ("checkpoints", "checkpoint_blobs", "checkpoint_writes"),
}
POOL_SIZE = 20


def run(engine: str, backend: str, size: dict[str, int], repeats: int) -> dict[str, Any]:
    if engine == "dbos":
        return asyncio.run(_dbos_main(backend, size, repeats))
    return LangGraphBench(backend, sync=engine == "langgraph_sync").main(size, repeats)


def _pg_url() -> str:
    return os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)


# == LangGraph ============================================================================

STEP_ENDS: list[float] = []


class LoopState(TypedDict):
    n: int
    steps: int
    payload: str


class ChainState(TypedDict):
    n: int
    sleep: float


def _route(state: LoopState) -> str:
    return "tick" if state["n"] < state["steps"] else "__end__"


def _stick(state: LoopState) -> dict[str, int]:
    out = {"n": state["n"] + 1}
    STEP_ENDS.append(time.perf_counter())
    return out


async def _atick(state: LoopState) -> dict[str, int]:
    out = {"n": state["n"] + 1}
    STEP_ENDS.append(time.perf_counter())
    return out


def _schain(state: ChainState) -> dict[str, int]:
    if state["sleep"]:
        time.sleep(state["sleep"])
    return {"n": state["n"] + 1}


async def _achain(state: ChainState) -> dict[str, int]:
    if state["sleep"]:
        await asyncio.sleep(state["sleep"])
    return {"n": state["n"] + 1}


def _graphs(sync: bool) -> tuple[Any, Any]:
    from langgraph.graph import END, START, StateGraph

    loop = StateGraph(LoopState)
    loop.add_node("tick", _stick if sync else _atick)
    loop.add_edge(START, "tick")
    loop.add_conditional_edges("tick", _route, ["tick", END])
    chain = StateGraph(ChainState)
    for name in ("a", "b", "c"):
        chain.add_node(name, _schain if sync else _achain)
    chain.add_edge(START, "a")
    chain.add_edge("a", "b")
    chain.add_edge("b", "c")
    chain.add_edge("c", END)
    return loop, chain


class LangGraphBench:
    def __init__(self, backend: str, sync: bool) -> None:
        self.backend, self.sync = backend, sync
        self.loop_graph, self.chain_graph = _graphs(sync)
        self.counter = 0
        self.path = ""

    # -- savers: a fresh database per section ------------------------------------------
    def _fresh(self) -> None:
        if self.backend == "sqlite":
            self.counter += 1
            self.path = str(Path(os.environ["BENCH_SQLITE_DIR"]) / f"langgraph-{self.counter}.sqlite3")
            return
        import psycopg

        with psycopg.connect(_pg_url(), autocommit=True) as conn:
            for table in LG_TABLES["postgresql"]:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute("DROP TABLE IF EXISTS checkpoint_migrations")

    def open_sync(self) -> tuple[Any, Any]:
        self._fresh()
        if self.backend == "sqlite":
            from langgraph.checkpoint.sqlite import SqliteSaver

            conn = sqlite3.connect(self.path, check_same_thread=False)
            saver = SqliteSaver(conn)
            saver.setup()
            conn.execute("PRAGMA synchronous=NORMAL")
            return saver, conn.close
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        pool = ConnectionPool(_pg_url(), max_size=POOL_SIZE, kwargs=kwargs, open=True)
        saver = PostgresSaver(pool)  # type: ignore[arg-type]
        saver.setup()
        return saver, pool.close

    async def open_async(self) -> tuple[Any, Any]:
        self._fresh()
        if self.backend == "sqlite":
            import aiosqlite
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            conn = await aiosqlite.connect(self.path)
            saver = AsyncSqliteSaver(conn)
            await saver.setup()
            await conn.execute("PRAGMA synchronous=NORMAL")
            return saver, conn.close
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
        pool = AsyncConnectionPool(_pg_url(), max_size=POOL_SIZE, kwargs=kwargs, open=False)
        await pool.open()
        saver = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        await saver.setup()
        return saver, pool.close

    # -- sizes ---------------------------------------------------------------------------
    def physical(self) -> int:
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                return sqlite_physical_bytes(conn, LG_TABLES["sqlite"])
        import psycopg

        with psycopg.connect(_pg_url(), autocommit=True) as conn:
            return pg_physical_bytes(conn, LG_TABLES["postgresql"])

    def logical(self, thread_id: str) -> int:
        """Checkpoints + metadata + writes (+ blobs on PostgreSQL) of one thread."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                ck = conn.execute(
                    "SELECT COALESCE(SUM(length(checkpoint) + length(metadata)), 0) FROM checkpoints "
                    "WHERE thread_id = ?",
                    (thread_id,),
                ).fetchone()[0]
                w = conn.execute(
                    "SELECT COALESCE(SUM(length(value)), 0) FROM writes WHERE thread_id = ?", (thread_id,)
                ).fetchone()[0]
                return int(ck) + int(w)
        import psycopg

        with psycopg.connect(_pg_url(), autocommit=True) as conn:
            total = 0
            for sql in (
                "SELECT COALESCE(SUM(octet_length(checkpoint::text) + octet_length(metadata::text)), 0) "
                "FROM checkpoints WHERE thread_id = %s",
                "SELECT COALESCE(SUM(octet_length(blob)), 0) FROM checkpoint_writes WHERE thread_id = %s",
                "SELECT COALESCE(SUM(octet_length(blob)), 0) FROM checkpoint_blobs WHERE thread_id = %s",
            ):
                row = conn.execute(sql, (thread_id,)).fetchone()
                total += int(row[0]) if row else 0
            return total

    # -- sections --------------------------------------------------------------------------
    def _latency_result(self, steps: int, thread_id: str, ends: list[float], before: int) -> dict[str, Any]:
        return {
            **latency_figures(ends, list(STEP_ENDS)),
            "logical_bytes_per_step": round(self.logical(thread_id) / steps, 1),
            "physical_bytes_per_step": round((self.physical() - before) / steps, 1),
        }

    def latency_sync(self, steps: int, payload: str) -> dict[str, Any]:
        saver, close = self.open_sync()
        try:
            app = self.loop_graph.compile(checkpointer=saver)
            app.invoke({"n": 0, "steps": 3, "payload": payload}, _cfg(3), durability="sync")  # warm-up
            ends = _stamp_puts(saver, "put")
            before = self.physical()
            STEP_ENDS.clear()
            cfg = _cfg(steps)
            gc.collect()
            state = app.invoke({"n": 0, "steps": steps, "payload": payload}, cfg, durability="sync")
            assert state["n"] == steps, state["n"]
            return self._latency_result(steps, cfg["configurable"]["thread_id"], ends, before)
        finally:
            close()

    async def latency_async(self, steps: int, payload: str) -> dict[str, Any]:
        saver, close = await self.open_async()
        try:
            app = self.loop_graph.compile(checkpointer=saver)
            await app.ainvoke({"n": 0, "steps": 3, "payload": payload}, _cfg(3), durability="sync")
            ends = _stamp_puts(saver, "aput")
            before = self.physical()
            STEP_ENDS.clear()
            cfg = _cfg(steps)
            gc.collect()
            state = await app.ainvoke({"n": 0, "steps": steps, "payload": payload}, cfg, durability="sync")
            assert state["n"] == steps, state["n"]
            return self._latency_result(steps, cfg["configurable"]["thread_id"], ends, before)
        finally:
            await close()

    def runs_sync(self, runs: int, concurrency: int, sleep: float) -> float:
        """Seconds for `runs` 3-step runs on a pool of `concurrency` threads (the sync API blocks one)."""
        saver, close = self.open_sync()
        try:
            app = self.chain_graph.compile(checkpointer=saver)

            def one(_: int) -> None:
                state = app.invoke({"n": 0, "sleep": sleep}, _cfg(3), durability="sync")
                assert state["n"] == 3, state

            one(0)  # warm-up
            with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
                gc.collect()
                t0 = time.perf_counter()
                list(pool.map(one, range(runs)))
                return time.perf_counter() - t0
        finally:
            close()

    async def runs_async(self, runs: int, concurrency: int, sleep: float) -> float:
        saver, close = await self.open_async()
        try:
            app = self.chain_graph.compile(checkpointer=saver)
            sem = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with sem:
                    state = await app.ainvoke({"n": 0, "sleep": sleep}, _cfg(3), durability="sync")
                    assert state["n"] == 3, state

            await app.ainvoke({"n": 0, "sleep": 0.0}, _cfg(3), durability="sync")
            gc.collect()
            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(runs)))
            return time.perf_counter() - t0
        finally:
            await close()

    def main(self, size: dict[str, int], repeats: int) -> dict[str, Any]:
        import importlib.metadata as md

        label = f"langgraph_{'sync' if self.sync else 'async'}/{self.backend}"
        reps: list[dict[str, Any]] = []
        for i in range(repeats):
            if self.sync:
                rep = self.latency_sync(size["steps"], "")
                payload = self.latency_sync(size["payload_steps"], PAYLOAD)
                elapsed = self.runs_sync(size["runs"], size["concurrency"], 0.0)
                concurrent_s = self.runs_sync(size["concurrent"], size["concurrent"], SLEEP)
            else:
                rep = asyncio.run(self.latency_async(size["steps"], ""))
                payload = asyncio.run(self.latency_async(size["payload_steps"], PAYLOAD))
                elapsed = asyncio.run(self.runs_async(size["runs"], size["concurrency"], 0.0))
                concurrent_s = asyncio.run(self.runs_async(size["concurrent"], size["concurrent"], SLEEP))
            rep["logical_bytes_per_step_100kb"] = payload["logical_bytes_per_step"]
            rep["physical_bytes_per_step_100kb"] = payload["physical_bytes_per_step"]
            rep["runs_per_s"] = round(size["runs"] / elapsed, 1)
            rep["concurrent_s"] = round(concurrent_s, 3)
            log("persistence", f"{label} repeat {i + 1}: {rep}")
            reps.append(rep)
        config = {
            "saver": {
                ("sqlite", True): "SqliteSaver (sqlite3, one connection, check_same_thread=False)",
                ("sqlite", False): "AsyncSqliteSaver (aiosqlite)",
                ("postgresql", True): f"PostgresSaver on ConnectionPool(max_size={POOL_SIZE})",
                ("postgresql", False): f"AsyncPostgresSaver on AsyncConnectionPool(max_size={POOL_SIZE})",
            }[(self.backend, self.sync)],
            "durability": "sync",
            "runs": "a thread per run in flight (ThreadPoolExecutor)" if self.sync else "asyncio.gather + semaphore",
            "langgraph": md.version("langgraph"),
        }
        if self.backend == "sqlite":
            config["sqlite_version"] = sqlite3.sqlite_version
        return {"config": config, "reps": reps}


def _cfg(steps: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}, "recursion_limit": steps + 100}


def _stamp_puts(saver: Any, method: str) -> list[float]:
    """Wrap the saver's put/aput to record when each checkpoint write completed."""
    ends: list[float] = []
    orig = getattr(saver, method)
    if asyncio.iscoroutinefunction(orig):

        async def wrapped(*a: Any, **kw: Any) -> Any:
            out = await orig(*a, **kw)
            ends.append(time.perf_counter())
            return out
    else:

        def wrapped(*a: Any, **kw: Any) -> Any:  # type: ignore[misc]
            out = orig(*a, **kw)
            ends.append(time.perf_counter())
            return out

    setattr(saver, method, wrapped)
    return ends


# == DBOS Transact ========================================================================

DBOS_STEP_ENDS: list[float] = []
DBOS_DURABLE_ENDS: list[float] = []


def _dbos_define() -> tuple[Any, Any]:
    from dbos import DBOS

    @DBOS.step()
    async def tick(n: int) -> int:
        DBOS_STEP_ENDS.append(time.perf_counter())
        return n + 1

    @DBOS.step()
    async def sleepy(n: int, sleep: float) -> int:
        if sleep:
            await asyncio.sleep(sleep)
        return n + 1

    @DBOS.workflow()
    async def chain(steps: int, payload: str) -> int:
        n = 0
        for _ in range(steps):
            n = await tick(n)
            # the step's output is in the system database once the call returns
            DBOS_DURABLE_ENDS.append(time.perf_counter())
        return n

    @DBOS.workflow()
    async def three(sleep: float) -> int:
        n = 0
        for _ in range(SLEEPING_STEPS):
            n = await sleepy(n, sleep)
        return n

    return chain, three


class _DbosDb:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.path = str(Path(os.environ["BENCH_SQLITE_DIR"]) / "dbos.sqlite3")
            self.url = f"sqlite:///{self.path}"
        else:
            self.url = _pg_url()

    def _conn(self) -> Any:
        if self.backend == "sqlite":
            import pysqlite3.dbapi2 as sqlite  # type: ignore[import-not-found]

            return sqlite.connect(self.path)
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    def physical(self) -> int:
        conn = self._conn()
        try:
            if self.backend == "sqlite":
                return sqlite_physical_bytes(conn)
            return pg_physical_bytes(conn, schema="dbos")
        finally:
            conn.close()

    def logical(self, workflow_id: str) -> int:
        """Step outputs + the workflow's inputs and output, as stored."""
        conn = self._conn()
        mark = "?" if self.backend == "sqlite" else "%s"
        schema = "" if self.backend == "sqlite" else "dbos."
        length = "length" if self.backend == "sqlite" else "octet_length"
        total = 0
        try:
            for table, cols in (
                ("operation_outputs", ("output", "error")),
                ("workflow_status", ("inputs", "output", "error")),
                ("workflow_input", ("inputs",)),
                ("workflow_output", ("output", "error")),
            ):
                expr = " + ".join(f"COALESCE({length}({c}), 0)" for c in cols)
                try:
                    cur = conn.cursor()
                    cur.execute(f"SELECT COALESCE(SUM({expr}), 0) FROM {schema}{table} WHERE workflow_uuid = {mark}",
                                (workflow_id,))  # fmt: skip
                    total += int(cur.fetchone()[0])
                except Exception:  # noqa: BLE001 - a table this DBOS version does not have
                    if self.backend == "postgresql":
                        conn.rollback()
        finally:
            conn.close()
        return total


async def _dbos_latency(db: _DbosDb, chain: Any, steps: int, payload: str) -> dict[str, Any]:
    from dbos import SetWorkflowID

    before = db.physical()
    DBOS_STEP_ENDS.clear()
    DBOS_DURABLE_ENDS.clear()
    workflow_id = str(uuid.uuid4())
    gc.collect()
    with SetWorkflowID(workflow_id):
        result = await chain(steps, payload)
    assert result == steps, result
    return {
        **latency_figures(list(DBOS_DURABLE_ENDS), list(DBOS_STEP_ENDS)),
        "logical_bytes_per_step": round(db.logical(workflow_id) / steps, 1),
        "physical_bytes_per_step": round((db.physical() - before) / steps, 1),
    }


async def _dbos_runs(three: Any, runs: int, concurrency: int, sleep: float) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            assert await three(sleep) == SLEEPING_STEPS

    gc.collect()
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return time.perf_counter() - t0


async def _dbos_main(backend: str, size: dict[str, int], repeats: int) -> dict[str, Any]:
    import importlib.metadata as md

    from dbos import DBOS

    db = _DbosDb(backend)
    config: dict[str, Any] = {"name": "wfdash_bench", "system_database_url": db.url, "log_level": "WARNING"}
    if backend == "sqlite":
        import pysqlite3.dbapi2 as sqlite

        # DBOS's SQLite schema needs unixepoch('subsec') (SQLite 3.42); Python 3.12's here is 3.40.
        config["db_engine_kwargs"] = {"module": sqlite}
    DBOS(config=config)  # type: ignore[arg-type]
    chain, three = _dbos_define()
    DBOS.launch()
    try:
        await chain(3, "")  # warm-up
        reps: list[dict[str, Any]] = []
        for i in range(repeats):
            rep = await _dbos_latency(db, chain, size["steps"], "")
            payload = await _dbos_latency(db, chain, size["payload_steps"], PAYLOAD)
            rep["logical_bytes_per_step_100kb"] = payload["logical_bytes_per_step"]
            rep["physical_bytes_per_step_100kb"] = payload["physical_bytes_per_step"]
            rep["runs_per_s"] = round(size["runs"] / await _dbos_runs(three, size["runs"], size["concurrency"], 0.0), 1)
            rep["concurrent_s"] = round(await _dbos_runs(three, size["concurrent"], size["concurrent"], SLEEP), 3)
            log("persistence", f"dbos/{backend} repeat {i + 1}: {rep}")
            reps.append(rep)
        conn = db._conn()
        try:
            cur = conn.cursor()
            if backend == "sqlite":
                pragmas = {}
                for p in ("journal_mode", "synchronous"):
                    cur.execute(f"PRAGMA {p}")
                    pragmas[p] = cur.fetchone()[0]
                cur.execute("select sqlite_version()")
                info: dict[str, Any] = {"sqlite_version": cur.fetchone()[0], **pragmas}
            else:
                info = {"schema": "dbos"}
        finally:
            conn.close()
    finally:
        DBOS.destroy()
    return {
        "config": {
            "dbos": md.version("dbos"),
            "system_database": backend,
            "steps": "async @DBOS.step functions in an async @DBOS.workflow; runs gathered with a semaphore",
            **info,
        },
        "reps": reps,
    }


if __name__ == "__main__":  # for a quick look: python bench/persistence_peers.py dbos sqlite
    import sys

    from persistence import SIZES

    print(json.dumps(run(sys.argv[1], sys.argv[2], SIZES["quick"], 1)))
