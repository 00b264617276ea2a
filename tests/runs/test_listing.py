"""The explorer's indexes are partial on `Checkpoint.listed`. A worker's durable write on SQLite
leaves a checkpoint unlisted (six index pages fewer in its commit) and the search queue's
indexer lists it; every reader of those indexes catches up first, so none misses a committed
checkpoint. PostgreSQL lists at write time."""

from __future__ import annotations

import io
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connection
from django.test import Client

from runs import filters, search_index
from runs.examples.chain import ChainFlow
from runs.models import Checkpoint
from runs.store import DatabaseCheckpointStore
from tests.runs.factories import checkpoint
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.django_db(transaction=True)


def _listed(run_id: str) -> list[bool]:
    return list(Checkpoint.objects.filter(run_id=run_id).order_by("seq").values_list("listed", flat=True))


async def _durable_run(steps: int = 3) -> str:
    handler = WorkflowCheckpointer(ChainFlow(), store=DatabaseCheckpointStore()).run(steps=steps)
    assert await handler == {"ticks": steps}
    return handler.run_id


async def test_a_durable_write_is_listed_by_the_indexer_on_sqlite_and_at_once_on_postgresql() -> None:
    run_id = await _durable_run()
    listed = await sync_to_async(_listed)(run_id)
    assert listed == [connection.vendor != "sqlite"] * 4
    await sync_to_async(search_index.catch_up)(connection)
    assert await sync_to_async(_listed)(run_id) == [True] * 4


def _queued() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {search_index.QUEUE_TABLE}")  # noqa: S608
        return int(cursor.fetchone()[0])


def test_a_reader_lists_what_is_left_without_indexing_it_for_search() -> None:
    # After a bulk import nobody indexed yet, the explorer must not pay for full-text indexing.
    from asgiref.sync import async_to_sync

    search_index.catch_up(connection)
    run_id = async_to_sync(_durable_run)()
    assert _queued() == 4
    assert Checkpoint.listing().filter(run_id=run_id).count() == 4
    assert _listed(run_id) == [True] * 4 and _queued() == 4
    assert search_index.list_pending(connection) == 0


def test_every_reader_of_the_explorer_indexes_sees_unlisted_checkpoints(admin_client: Client) -> None:
    from asgiref.sync import async_to_sync

    def fresh_run() -> str:
        # A new unlisted run for each reader: the first reader's catch-up lists the previous one.
        run_id = async_to_sync(_durable_run)()
        if connection.vendor == "sqlite":
            assert _listed(run_id) == [False] * 4
        return run_id

    def ticks(ids: set[str], run_id: str) -> None:
        expected = Checkpoint.objects.filter(run_id=run_id, last_completed_step="tick").values_list("id", flat=True)
        assert ids == {str(c) for c in expected}

    run_id = fresh_run()
    qs, _ = filters.checkpoint_filters({"workflow": "chain", "step": "tick"})
    ticks({str(c.pk) for c in qs if str(c.run_id) == run_id}, run_id)

    run_id = fresh_run()
    body = admin_client.get("/api/checkpoints/", {"step": "tick", "run": run_id}).json()
    ticks({item["id"] for item in body["items"]}, run_id)

    run_id = fresh_run()
    page = admin_client.get("/checkpoints/", {"step": "tick", "workflow": "chain"})
    assert page.status_code == 200
    assert run_id[:8] in page.content.decode()

    run_id = fresh_run()
    out = io.StringIO()
    call_command("checkpoints", "--step", "tick", "--run", run_id, "--json", stdout=out)
    ticks({json.loads(line)["id"] for line in out.getvalue().splitlines()}, run_id)

    run_id = fresh_run()
    listed = async_to_sync(DatabaseCheckpointStore().list_checkpoints)(ChainFlow(), last_completed_step="tick")
    ticks({c.id_ for c in listed if c.run_id == run_id}, run_id)

    run_id = fresh_run()
    admin_page = admin_client.get("/admin/runs/checkpoint/", {"q": run_id})
    assert admin_page.status_code == 200
    assert admin_page.context["cl"].result_count == 4


@pytest.mark.parametrize(
    ("params", "index"),
    [
        ({}, "ckpt_recent_idx"),
        ({"workflow": "chain", "step": "tick"}, "ckpt_wf_step_idx"),
        ({"input_event_type": "Tick"}, "ckpt_input_idx"),
        ({"output_event_type": "StopEvent"}, "ckpt_output_idx"),
    ],
)
def test_the_explorer_queries_use_the_partial_indexes(params: dict[str, str], index: str) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL plans an empty table by its statistics, not by its indexes")
    qs, _ = filters.checkpoint_filters(params)
    plan = qs.order_by("-created_at", "-id")[:51].explain()
    assert index in plan, plan


def test_repair_lists_rows_written_while_the_triggers_were_missing() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("only SQLite drops triggers in a table rebuild")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {search_index.SEARCH_TABLE}_insert")
    row = checkpoint()
    Checkpoint.objects.filter(pk=row.pk).update(listed=False)  # as a durable write leaves it
    assert search_index.repair(connection)
    assert list(Checkpoint.objects.values_list("listed", flat=True)) == [True]
