"""The search index is written after a checkpoint's commit, not in it: triggers queue every
written or changed checkpoint, workers index the queue in the background, and a search indexes
what is still queued before it answers, so it never misses a committed checkpoint."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from runs import filters, search_index
from runs.models import Checkpoint, Run, RunStatus
from tests.runs.factories import checkpoint

pytestmark = pytest.mark.django_db


def _count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # noqa: S608
        return int(cursor.fetchone()[0])


def queued() -> int:
    return _count(search_index.QUEUE_TABLE)


def indexed() -> int:
    return _count(search_index.SEARCH_TABLE)


def found(q: str) -> set[object]:
    qs, _ = filters.checkpoint_filters({"q": q})
    return {c.pk for c in qs}


def joke(run: Run, seq: int, text: str) -> Checkpoint:
    return checkpoint(run, seq=seq, step="tick", output_event={"type": "Tick", "data": {"joke": text}})


@pytest.fixture
def run() -> Run:
    return Run.objects.create(workflow="chain", status=RunStatus.SUCCEEDED)


def test_a_write_only_queues_its_checkpoint_and_a_search_indexes_it_first(run: Run) -> None:
    search_index.catch_up(connection)
    row = joke(run, 1, "quokka smiles")
    assert (queued(), indexed()) == (1, 0)  # the write's transaction did not index it
    assert found("quokka") == {row.pk}  # nor does the search miss it
    assert (queued(), indexed()) == (0, 1)


def test_a_batch_takes_at_most_batch_rows_and_catch_up_takes_them_all(run: Run) -> None:
    search_index.catch_up(connection)
    total = 2 * search_index.BATCH + 5
    for seq in range(1, total + 1):
        joke(run, seq, f"word{seq} common")
    assert search_index.index_pending(connection) == search_index.BATCH
    assert queued() == total - search_index.BATCH
    assert search_index.catch_up(connection) == total - search_index.BATCH
    assert (queued(), indexed()) == (0, total)
    assert search_index.index_pending(connection) == 0


def test_changes_before_and_after_indexing_leave_only_the_newest_text(run: Run) -> None:
    search_index.catch_up(connection)
    row = joke(run, 1, "first draft")
    Checkpoint.objects.filter(pk=row.pk).update(output_event={"type": "Tick", "data": {"joke": "second draft"}})
    assert queued() == 2  # queued twice, indexed once
    assert found("second") == {row.pk} and found("first") == set()
    assert indexed() == 1
    Checkpoint.objects.filter(pk=row.pk).update(output_event={"type": "Tick", "data": {"joke": "third"}})
    assert found("second") == set()  # the update dropped the old text at once
    assert found("third") == {row.pk}
    Checkpoint.objects.filter(pk=row.pk).update(output_event={"type": "Tick", "data": {}})
    assert found("third") == set()


def test_a_deleted_checkpoint_leaves_nothing_behind_queued_or_indexed(run: Run) -> None:
    search_index.catch_up(connection)
    kept, gone = joke(run, 1, "kept words"), joke(run, 2, "gone words")
    search_index.catch_up(connection)
    gone_later = joke(run, 3, "gone before indexing")
    Checkpoint.objects.filter(pk__in=[gone.pk, gone_later.pk]).delete()
    assert found("words") == {kept.pk} and found("indexing") == set()
    assert (queued(), indexed()) == (0, 1)


@pytest.mark.django_db(transaction=True)
async def test_a_workers_background_task_indexes_the_queue() -> None:
    await sync_to_async(lambda: search_index.catch_up(connection))()  # what earlier tests left
    before = await sync_to_async(indexed)()
    run = await Run.objects.acreate(workflow="chain", status=RunStatus.SUCCEEDED)
    for seq in range(1, search_index.BATCH + 10):
        await sync_to_async(joke)(run, seq, f"background {seq}")
    assert await sync_to_async(queued)() == search_index.BATCH + 9
    task = asyncio.create_task(search_index.keep_indexing(interval=0.05))
    try:
        for _ in range(200):
            if await sync_to_async(queued)() == 0:
                break
            await asyncio.sleep(0.05)
        assert await sync_to_async(queued)() == 0
        assert await sync_to_async(indexed)() == before + search_index.BATCH + 9
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_workers_skip_a_batch_another_indexer_holds_and_a_search_waits_for_it(run: Run) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks on PostgreSQL's queue")
    row = joke(run, 1, "locked away")
    holding, release = threading.Event(), threading.Event()

    def other_indexer() -> None:
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(f"SELECT id FROM {search_index.QUEUE_TABLE} FOR UPDATE")  # noqa: S608
                holding.set()
                release.wait(10)
                cursor.execute("ROLLBACK")  # it failed: the rows stay queued
        finally:
            other.close()

    thread = threading.Thread(target=other_indexer)
    thread.start()
    try:
        assert holding.wait(10)
        assert search_index.index_pending(connection) == 0  # a worker leaves them to the holder
        threading.Timer(0.3, release.set).start()
        assert found("locked") == {row.pk}  # the search waited, then indexed them itself
    finally:
        release.set()
        thread.join()
    assert queued() == 0
