"""Where a durable step's time goes in runs.store: engine, hop to the database thread, SQL + commit,
hop back; the same run without the checkpoint table's secondary indexes; and the bare cost of a
hop by each way of reaching a thread from the event loop.

    .venv-bench/bin/python bench/profile_store.py --backends sqlite,postgresql --steps 1000 --repeats 3

`write_paths` compares, alternating in one process, the store's write path as shipped (batches handed
straight to asgiref's sync thread), the one before it (every batch through sync_to_async) and a writer
thread with its own connection.

Each backend runs in its own subprocess with the app's shipped settings (as bench/persistence.py);
prints JSON. The index-free variant drops the indexes on a scratch database only: it measures what
they cost, it is not a configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import ROOT, drop_pg, finish, header, log, median_min_max, pct  # noqa: E402
from persistence import child_env  # noqa: E402

PG_DB = "wfdash_bench_profile"


def us(values: list[float]) -> dict[str, float]:
    return {"p50_us": round(pct(values, 0.5) * 1e6, 1), "p99_us": round(pct(values, 0.99) * 1e6, 1)}


async def breakdown(steps: int) -> dict[str, Any]:
    """One sequential chain; per step: engine, hop in, SQL + commit (in the thread), hop out."""
    import durable_flows

    import runs.store as store_mod
    from runs.examples.chain import ChainStart
    from wfdash.workflow.checkpointer import WorkflowCheckpointer

    spans: list[tuple[float, float]] = []
    apply = store_mod._apply_batch

    def timed_apply(ops: Any, retrying: bool) -> Any:
        t0 = time.perf_counter()
        try:
            return apply(ops, retrying)
        finally:
            spans.append((t0, time.perf_counter()))

    store_mod._apply_batch = timed_apply  # type: ignore[assignment]
    store = store_mod.DatabaseCheckpointStore()
    puts: list[tuple[float, float]] = []
    put = store.put_checkpoint

    async def timed_put(checkpoint: Any, workflow: Any) -> None:
        t0 = time.perf_counter()
        await put(checkpoint, workflow)
        puts.append((t0, time.perf_counter()))

    store.put_checkpoint = timed_put  # type: ignore[method-assign]
    try:
        gc.collect()
        await WorkflowCheckpointer(durable_flows.StampedChain(), store=store).run(ChainStart(steps=steps))
    finally:
        store_mod._apply_batch = apply  # type: ignore[assignment]
    # spans: the run's own row (run_started), one per put in order, then the run's end
    spans = spans[1 : len(puts) + 1]
    engine = [b[0] - a[1] for a, b in zip(puts, puts[1:], strict=False)]
    hop_in = [s[0] - p[0] for p, s in zip(puts, spans, strict=True)]
    sql = [s[1] - s[0] for s in spans]
    hop_out = [p[1] - s[1] for p, s in zip(puts, spans, strict=True)]
    step = [b[1] - a[1] for a, b in zip(puts, puts[1:], strict=False)]
    return {
        "durable_step": us(step),
        "engine_and_snapshot": us(engine),
        "put_to_thread": us(hop_in),
        "sql_and_commit_in_thread": us(sql),
        "thread_to_put_done": us(hop_out),
    }


def drop_secondary_indexes() -> list[str]:
    from django.db import connection

    from runs.models import Checkpoint

    names = [i.name for i in Checkpoint._meta.indexes]
    with connection.cursor() as cur:
        for name in names:
            cur.execute(f"DROP INDEX IF EXISTS {name}")
    return names


async def hops(n: int) -> dict[str, Any]:
    """The bare round trip from the event loop to a thread and back, by three routes."""
    from asgiref.sync import sync_to_async

    def noop() -> None:
        return None

    out: dict[str, Any] = {}
    times: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        await sync_to_async(noop)()
        times.append(time.perf_counter() - t0)
    out["asgiref_sync_to_async"] = us(times)

    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            await loop.run_in_executor(pool, noop)
            times.append(time.perf_counter() - t0)
    out["run_in_executor_one_thread"] = us(times)

    import queue

    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def serve() -> None:
        while (job := jobs.get()) is not None:
            fut = job
            loop.call_soon_threadsafe(fut.set_result, noop())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fut = loop.create_future()
        jobs.put(fut)
        await fut
        times.append(time.perf_counter() - t0)
    jobs.put(None)
    thread.join()
    out["own_thread_simple_queue"] = us(times)
    return out


class OwnWriterThread:
    """A writer thread with its own connection, the alternative the store does not take (see
    runs.store.in_database_thread): measured here beside it."""

    def __init__(self) -> None:
        import queue

        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            fn, loop, future = self.jobs.get()
            try:
                outcome, error = fn(), None
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                outcome, error = None, exc
            loop.call_soon_threadsafe(self.settle, future, outcome, error)

    @staticmethod
    def settle(future: asyncio.Future[Any], outcome: Any, error: BaseException | None) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(outcome)

    async def call(self, fn: Any) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.jobs.put((fn, loop, future))
        return await future


WRITE_PATHS = ("sync_to_async", "shipped", "own_thread")


def use_write_path(name: str, own: list[OwnWriterThread] = []) -> None:  # noqa: B006 - one per process
    """`shipped`: runs.store as it is (a batch handed to the database thread with a callback);
    `sync_to_async`: each batch through asgiref's sync_to_async, awaited by a task (the path a
    batch takes when the connection was lost; every batch took it two versions ago); `own_thread`:
    the same task, with a writer thread that has its own connection."""
    from asgiref.sync import sync_to_async

    import runs.store as store_mod

    shipped = getattr(store_mod, "_shipped_in_database_thread", None) or store_mod.in_database_thread
    store_mod._shipped_in_database_thread = shipped  # type: ignore[attr-defined]
    direct = getattr(store_mod, "_shipped_database_thread", None) or store_mod._database_thread
    store_mod._shipped_database_thread = direct  # type: ignore[attr-defined]
    # Every variant but `shipped` takes the task path (no executor: see runs.store._Batcher._send).
    store_mod._database_thread = direct if name == "shipped" else (lambda loop: None)  # type: ignore[assignment]
    if name == "shipped":
        store_mod.in_database_thread = shipped
    elif name == "sync_to_async":

        async def via_sync_to_async(fn: Any) -> Any:
            return await sync_to_async(fn)()

        store_mod.in_database_thread = via_sync_to_async
    else:
        if not own:
            own.append(OwnWriterThread())
        store_mod.in_database_thread = own[0].call


def child(steps: int, runs: int, repeats: int) -> dict[str, Any]:
    import django

    django.setup()
    from asgiref.sync import sync_to_async
    from django.core.management import call_command
    from persistence import _wfdash_clear, _wfdash_worker

    call_command("migrate", verbosity=0)
    paths = WRITE_PATHS

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        per: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
        for path in paths:
            use_write_path(path)
            await breakdown(5)  # warm-up
        for _ in range(repeats):  # alternating, so both see the same machine
            for path in paths:
                use_write_path(path)
                await sync_to_async(_wfdash_clear)()
                rep = await breakdown(steps)
                rep["runs_per_s"] = round(runs / await _wfdash_worker(runs, 2, 0.0, 50), 1)
                per[path].append(rep)
        out["write_paths"] = {
            p: {
                "step_p50_us": median_min_max(r["durable_step"]["p50_us"] for r in reps),
                "step_p99_us": median_min_max(r["durable_step"]["p99_us"] for r in reps),
                "runs_per_s": median_min_max(r["runs_per_s"] for r in reps),
                "breakdown_last_repeat": reps[-1],
            }
            for p, reps in per.items()
        }
        use_write_path("shipped")
        await sync_to_async(_wfdash_clear)()
        out["with_indexes"] = await breakdown(steps)
        out["dropped"] = await sync_to_async(drop_secondary_indexes)()
        await breakdown(5)
        out["without_secondary_indexes"] = await breakdown(steps)
        out["hops"] = await hops(2000)
        return out

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=200, help="three-step runs through one Worker per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps, args.runs, args.repeats)))
        return 0
    started = time.perf_counter()
    doc = header("profile_store", "custom", {"steps": args.steps, "runs": args.runs, "repeats": args.repeats})
    doc["results"] = {}
    for backend in args.backends.split(","):
        workdir = Path(tempfile.mkdtemp(prefix="wfdash-bench-profile-"))
        try:
            log("profile_store", f"{backend}: {args.steps} steps")
            proc = subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--child",
                    "--steps",
                    str(args.steps),
                    "--runs",
                    str(args.runs),
                    "--repeats",
                    str(args.repeats),
                ],  # fmt: skip
                env=child_env("wfdash", backend, workdir, PG_DB),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            doc["results"][backend] = json.loads(proc.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if backend == "postgresql":
                drop_pg(PG_DB)
    print(json.dumps(finish(doc, started), indent=2))
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfdash.settings")
    sys.exit(main())
