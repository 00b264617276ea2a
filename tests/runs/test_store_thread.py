"""The store's writes run in the one thread sync_to_async uses, whichever way they get there."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from runs.examples.chain import ChainFlow, ChainStart
from runs.models import Checkpoint
from runs.store import DatabaseCheckpointStore, in_database_thread
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_runs_a_write_in_the_thread_sync_to_async_uses() -> None:
    # The same thread means the same connection: a worker's claims and its checkpoint
    # writes never wait on each other's SQLite lock.
    assert await in_database_thread(threading.get_ident) == await sync_to_async(threading.get_ident)()
    assert await in_database_thread(threading.get_ident) != threading.get_ident()


def test_it_runs_a_write_in_the_calling_thread_inside_async_to_sync() -> None:
    async def which() -> int:
        ident: int = await in_database_thread(threading.get_ident)
        return ident

    assert async_to_sync(which)() == threading.get_ident()


async def test_it_hands_a_write_s_exception_back_to_its_caller() -> None:
    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await in_database_thread(fail)


async def test_a_cancelled_caller_does_not_stop_a_write_under_way() -> None:
    started, release = threading.Event(), threading.Event()
    done: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        done.append(True)

    task = asyncio.ensure_future(in_database_thread(slow))
    assert await asyncio.to_thread(started.wait, 5)  # the write is under way when cancelled
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    await sync_to_async(lambda: None)()  # queued behind the write: it has finished
    assert done == [True]


async def test_checkpoints_written_that_way_are_read_back_by_sync_to_async() -> None:
    handler = WorkflowCheckpointer(ChainFlow(), store=DatabaseCheckpointStore()).run(ChainStart(steps=5))
    assert await handler == {"ticks": 5}
    seqs = await sync_to_async(
        lambda: list(Checkpoint.objects.filter(run_id=handler.run_id).order_by("seq").values_list("seq", flat=True))
    )()
    assert seqs == [1, 2, 3, 4, 5, 6]


# -- the batcher: one trip to that thread per batch, retried when the connection is lost --------


async def test_writes_that_arrive_while_a_batch_commits_go_together_in_the_next() -> None:
    from runs import store

    started, release = threading.Event(), threading.Event()
    threads: set[int] = set()

    def first(retrying: bool) -> str:
        threads.add(threading.get_ident())
        started.set()
        release.wait(5)
        return "first"

    def later(n: int) -> object:
        def op(retrying: bool) -> int:
            threads.add(threading.get_ident())
            return n

        return op

    batches: list[int] = []
    apply = store._apply_batch

    def counting(ops: list[object], retrying: bool) -> list[object]:
        batches.append(len(ops))
        return apply(ops, retrying)  # type: ignore[arg-type]

    batcher = store._Batcher()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "_apply_batch", counting)
        head = asyncio.create_task(batcher.submit(first))
        await asyncio.to_thread(started.wait, 5)
        rest = [asyncio.create_task(batcher.submit(later(n))) for n in range(5)]
        await asyncio.sleep(0.01)
        release.set()
        assert await head == "first"
        assert await asyncio.gather(*rest) == [0, 1, 2, 3, 4]
    assert batches == [1, 5]
    assert threads == {await sync_to_async(threading.get_ident)()}


async def test_a_batch_that_lost_its_connection_is_retried_and_its_writers_hear_only_the_outcome() -> None:
    from django.db import OperationalError

    from runs import store

    apply = store._apply_batch
    calls: list[bool] = []

    def flaky(ops: list[object], retrying: bool) -> list[object]:
        calls.append(retrying)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return apply(ops, retrying)  # type: ignore[arg-type]

    batcher = store._Batcher()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store, "_apply_batch", flaky)
        assert await batcher.submit(lambda retrying: ("done", retrying)) == ("done", True)
        assert await batcher.submit(lambda retrying: "next") == "next"  # and the batcher goes on
    assert calls == [False, True, False]


async def test_a_cancelled_writer_leaves_its_write_committed_and_the_batcher_going() -> None:
    from runs import store

    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow(retrying: bool) -> None:
        started.set()
        release.wait(5)
        done.append("slow")

    batcher = store._Batcher()
    writer = asyncio.create_task(batcher.submit(slow))
    await asyncio.to_thread(started.wait, 5)
    writer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await writer
    assert await batcher.submit(lambda retrying: "after") == "after"
    assert done == ["slow"]
