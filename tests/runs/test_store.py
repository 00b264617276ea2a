"""DatabaseCheckpointStore: the engine's checkpointer writing to the database from any process."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async

from runs.examples.chain import ChainFlow, ChainStart
from runs.models import Blob, Checkpoint, Run, RunStatus
from runs.store import (
    DatabaseCheckpointStore,
    LeaseLost,
    _apply_batch,
    _apply_bulk,
    _apply_one_by_one,
    _CheckpointWrite,
)
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.django_db(transaction=True)


def _rows(run_id: str) -> list[Checkpoint]:
    return list(Checkpoint.objects.filter(run_id=run_id).order_by("seq"))


async def test_it_writes_runs_and_checkpoints_from_a_notebook_style_checkpointer() -> None:
    checkpointer = WorkflowCheckpointer(ChainFlow(), store=DatabaseCheckpointStore())
    handler = checkpointer.run(steps=3)
    assert await handler == {"ticks": 3}

    run = await Run.objects.aget(pk=handler.run_id)
    assert run.status == RunStatus.SUCCEEDED
    assert run.workflow == "chain"
    assert run.result == {"ticks": 3}
    assert run.start_event["type"] == "ChainStart"
    rows = await sync_to_async(_rows)(handler.run_id)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert [r.last_completed_step for r in rows] == ["begin", "tick", "tick", "tick"]
    assert rows[0].input_event_type == "ChainStart" and rows[-1].output_event_type == "StopEvent"
    assert all(r.workflow == "chain" for r in rows)


async def test_it_lists_and_reads_checkpoints_back_through_the_registry() -> None:
    store = DatabaseCheckpointStore()
    workflow = ChainFlow()
    handler = WorkflowCheckpointer(workflow, store=store).run(steps=2)
    await handler
    listed = await store.list_checkpoints(workflow, run_id=handler.run_id, last_completed_step="tick")
    assert [c.seq for c in listed] == [2, 3]
    one = await store.get_checkpoint(listed[0].id_, workflow)
    assert one.output_event is not None and one.output_event.n == 2  # type: ignore[attr-defined]
    assert one.ctx_state["store"]["steps"] == 2


async def test_it_forks_from_a_stored_checkpoint_in_a_new_run() -> None:
    store = DatabaseCheckpointStore()
    workflow = ChainFlow()
    first = WorkflowCheckpointer(workflow, store=store)
    handler = first.run(steps=4)
    await handler
    ckpt = (await store.list_checkpoints(workflow, run_id=handler.run_id, last_completed_step="begin"))[0]

    again = WorkflowCheckpointer(ChainFlow(), store=store)
    child = again.run_from(ckpt, store={"steps": 2})
    assert await child == {"ticks": 2}
    run = await Run.objects.aget(pk=child.run_id)
    assert str(run.parent_checkpoint_id) == ckpt.id_
    assert run.fork_edits == {"store": {"steps": 2}}
    assert [r.seq for r in await sync_to_async(_rows)(child.run_id)] == [1, 2]
    parent_rows = await sync_to_async(_rows)(handler.run_id)
    assert len(parent_rows) == 5  # the parent is untouched


async def test_it_stores_an_unchanging_large_value_once() -> None:
    document = "x" * 100_000
    handler = WorkflowCheckpointer(ChainFlow(), store=DatabaseCheckpointStore()).run(
        start_event=ChainStart(steps=20, payload=document)
    )
    await handler
    rows = await sync_to_async(_rows)(handler.run_id)
    assert len(rows) == 21
    sizes = [len(json.dumps(r.state)) for r in rows]
    assert max(sizes) < 1000, sizes
    assert await Blob.objects.acount() == 1
    blob = await Blob.objects.aget()
    assert len(blob.data) > 100_000


async def test_it_keeps_checkpoint_size_flat_in_run_length() -> None:
    handler = WorkflowCheckpointer(ChainFlow(), store=DatabaseCheckpointStore()).run(steps=1000)
    await handler
    rows = await sync_to_async(_rows)(handler.run_id)

    def size(r: Checkpoint) -> int:
        return len(json.dumps(r.state)) + len(json.dumps(r.input_event))

    # Records alternate between deltas and an occasional full one; the largest of
    # either kind late in the run is the size it was early on.
    early, late = max(size(r) for r in rows[10:110]), max(size(r) for r in rows[900:1000])
    assert late - early <= 3  # only the counter's digits differ


async def test_it_refuses_to_extend_a_run_owned_by_another_worker() -> None:
    store = DatabaseCheckpointStore()
    handler = WorkflowCheckpointer(ChainFlow(), store=store).run(steps=50, sleep=0.01)
    while await Checkpoint.objects.filter(run_id=handler.run_id).acount() < 2:
        await asyncio.sleep(0.01)
    await Run.objects.filter(pk=handler.run_id).aupdate(worker_id="someone-else")
    with pytest.raises(Exception, match="no longer owned"):
        await handler
    run = await Run.objects.aget(pk=handler.run_id)
    assert run.status == RunStatus.RUNNING and run.worker_id == "someone-else"


def _write(run: Run, seq: int, owner: str, **fields: object) -> _CheckpointWrite:
    row = Checkpoint(
        run_id=run.id,
        workflow="chain",
        seq=seq,
        last_completed_step="tick",
        input_event_type="Tick",
        output_event_type=str(fields.get("output_event_type", "")),
        input_event={"type": "Tick", "data": {"n": seq, "text": "é\u2028\"'"}},
        output_event=fields.get("output_event"),  # type: ignore[arg-type]
        state={"store": {"k": {"v": [1, None, True]}}, "queued": []},
        snapshot_seq=seq,
        duration_ms=1.5,
        usage=fields.get("usage"),  # type: ignore[arg-type]
    )
    values = {f.attname: getattr(row, f.attname) for f in Checkpoint._meta.concrete_fields}
    return _CheckpointWrite(values, {}, owner, list(fields.get("usage") or []))  # type: ignore[call-overload]


def _comparable(row: Checkpoint) -> dict[str, object]:
    return {
        f.attname: getattr(row, f.attname)
        for f in Checkpoint._meta.concrete_fields
        if f.attname not in ("id", "run_id", "created_at")
    }


def test_bulk_and_one_by_one_writes_store_the_same_rows_and_counters() -> None:
    usage = [{"model": "m", "prompt_tokens": 3, "completion_tokens": 4}]
    bulk_run, slow_run = (Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="me") for _ in "ab")
    variants = [
        {},
        {"output_event": {"type": "StopEvent", "data": {}}, "output_event_type": "StopEvent", "usage": usage},
    ]
    bulk = [_write(bulk_run, i + 1, "me", **v) for i, v in enumerate(variants)]
    slow = [_write(slow_run, i + 1, "me", **v) for i, v in enumerate(variants)]
    assert _apply_bulk(bulk) == [None, None]  # type: ignore[arg-type]
    assert _apply_one_by_one(slow, retrying=False) == [None, None]  # type: ignore[arg-type]
    assert [_comparable(r) for r in _rows(str(bulk_run.id))] == [_comparable(r) for r in _rows(str(slow_run.id))]
    assert [(r.id, r.created_at) for r in _rows(str(bulk_run.id))] == [(w.row.id, w.row.created_at) for w in bulk]
    for run in (bulk_run, slow_run):
        run.refresh_from_db()
        assert (run.checkpoint_count, run.llm_calls, run.prompt_tokens, run.completion_tokens) == (2, 1, 3, 4)


def test_a_batch_with_one_refused_write_commits_the_others() -> None:
    mine = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="me")
    theirs = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="other")
    ops = [_write(mine, 1, "me"), _write(theirs, 1, "me"), _write(mine, 2, "me"), _write(mine, 2, "me")]
    outcomes = _apply_batch(ops, retrying=False)  # type: ignore[arg-type]
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], LeaseLost) and "no longer owned" in str(outcomes[1])
    assert isinstance(outcomes[3], LeaseLost) and "already has checkpoint seq 2" in str(outcomes[3])
    assert [r.seq for r in _rows(str(mine.id))] == [1, 2] and _rows(str(theirs.id)) == []
    mine.refresh_from_db()
    assert mine.checkpoint_count == 2


@pytest.mark.django_db(transaction=True)
def test_a_lone_checkpoint_is_one_statement_on_postgresql_and_a_refused_one_writes_nothing() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    mine = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="me")
    theirs = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="other")
    usage = [{"prompt_tokens": 3, "completion_tokens": 4}]
    output = {"type": "StopEvent", "data": {"x": "é"}}
    lone = _write(mine, 1, "me", output_event=output, output_event_type="StopEvent", usage=usage)
    with CaptureQueriesContext(connection) as queries:
        assert _apply_batch([lone], retrying=False) == [None]  # type: ignore[arg-type]
    if connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"] for q in queries]
    bulk_run = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="me")
    assert _apply_bulk(
        [_write(bulk_run, 1, "me", output_event=output, output_event_type="StopEvent", usage=usage)]
    ) == [None]  # type: ignore[arg-type]
    (row,) = _rows(str(mine.id))
    assert _comparable(row) == _comparable(_rows(str(bulk_run.id))[0])
    assert (row.id, row.created_at) == (lone.row.id, lone.row.created_at)
    (outcome,) = _apply_batch([_write(theirs, 1, "me")], retrying=False)  # type: ignore[arg-type]
    assert isinstance(outcome, LeaseLost)
    (outcome,) = _apply_batch([_write(mine, 1, "me")], retrying=False)  # type: ignore[arg-type]
    assert isinstance(outcome, LeaseLost) and "already has checkpoint seq 1" in str(outcome)
    assert [r.seq for r in _rows(str(mine.id))] == [1] and _rows(str(theirs.id)) == []
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.checkpoint_count, mine.llm_calls, mine.prompt_tokens, mine.completion_tokens) == (1, 1, 3, 4)
    assert theirs.checkpoint_count == 0
