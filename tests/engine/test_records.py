"""State records: each checkpoint's materialised ctx_state equals the full snapshot the
engine took at every checkpoint before deltas (kept here as the oracle), and records stay
small whatever the run's width."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from runs.examples.approval import ApprovalFlow
from runs.examples.chain import ChainFlow
from runs.examples.flaky import FlakyFlow
from runs.examples.mapreduce import MapFlow
from runs.examples.wordcount import WordCountFlow
from wfdash.workflow import Context, HumanResponseEvent, Workflow
from wfdash.workflow.checkpointer import Checkpoint, WorkflowCheckpointer
from wfdash.workflow.serialization import encode_event, encode_value
from wfdash.workflow.snapshots import is_full

pytestmark = pytest.mark.engine_only


def old_snapshot(ctx: Context) -> dict[str, Any]:
    """The snapshot every checkpoint stored before state records (the code of the last
    release, reading the same context fields): the oracle."""
    return {
        "version": 1,
        "store": {key: encode_value(key, value) for key, value in ctx.store._data.items()},
        "queued": [{"step": name, "events": [encode_event(ev) for _, ev in q]} for name, q in ctx._queued.items()],
        "in_flight": [{"step": name, "event": encode_event(ev)} for name, ev in ctx._in_flight.values()],
        "unsent": [encode_event(ev) for _, ev in ctx._unsent.values()],
        "collect": [
            {"expected": list(c.names), "events": [encode_event(ev) for _, ev in c.buffer]}
            for c in ctx._collectors
            if c.buffer
        ],
        "waiters": [
            {"event_type": w.event_type.__name__, "requirements": encode_value("requirements", w.requirements)}
            for w in ctx._waiters
        ],
        "awaiting_input": ctx._awaiting_input,
    }


def normalised(state: dict[str, Any]) -> dict[str, Any]:
    """Order between steps (and between collectors) is not state; order within each is."""
    state = json.loads(json.dumps(state))
    in_flight: dict[str, list[Any]] = {}
    for entry in state["in_flight"]:
        in_flight.setdefault(entry["step"], []).append(entry["event"])
    return {
        **state,
        "queued": {q["step"]: q["events"] for q in state["queued"]},
        "in_flight": in_flight,
        "collect": {json.dumps(c["expected"]): c["events"] for c in state["collect"]},
    }


@pytest.fixture
def oracle(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Per run, the old snapshot taken at the moment of each state record, in seq order."""
    taken: dict[str, list[dict[str, Any]]] = {}
    record = Context.checkpoint_record

    def recording(self: Context) -> dict[str, Any]:
        taken.setdefault(self.run_id, []).append(old_snapshot(self))
        return record(self)

    monkeypatch.setattr(Context, "checkpoint_record", recording)
    yield taken


def assert_equivalent(checkpoints: list[Checkpoint], snapshots: list[dict[str, Any]]) -> None:
    assert len(checkpoints) == len(snapshots)
    for checkpoint, snapshot in zip(checkpoints, snapshots, strict=True):
        assert normalised(checkpoint.ctx_state) == normalised(snapshot), f"seq {checkpoint.seq}"


async def _run(workflow: Workflow, **start: Any) -> tuple[WorkflowCheckpointer, str]:
    ckptr = WorkflowCheckpointer(workflow)
    handler = ckptr.run(**start)
    await handler
    return ckptr, handler.run_id


@pytest.mark.parametrize(
    ("workflow", "start"),
    [
        (ChainFlow, {"steps": 60}),
        (WordCountFlow, {"text": " ".join(f"w{i}" for i in range(200)), "chunks": 50}),
        (FlakyFlow, {"failures": 2}),
        (MapFlow, {"items": 300}),
    ],
    ids=["chain", "wordcount-50", "flaky", "map-300"],
)
async def test_it_materialises_every_checkpoint_as_the_full_snapshot(
    oracle: dict[str, list[dict[str, Any]]], workflow: type[Workflow], start: dict[str, Any]
) -> None:
    ckptr, run_id = await _run(workflow(), **start)
    checkpoints = ckptr.checkpoints[run_id]
    assert any(not is_full(c.state_record) for c in checkpoints)  # deltas were written
    assert_equivalent(checkpoints, oracle[run_id])


async def test_it_materialises_a_run_paused_for_a_human_and_its_answer(
    oracle: dict[str, list[dict[str, Any]]],
) -> None:
    ckptr = WorkflowCheckpointer(ApprovalFlow())
    handler = ckptr.run(subject="the plan")
    idle = asyncio.Event()
    handler.on_idle(idle.set)
    await asyncio.wait_for(idle.wait(), 5)
    handler.ctx.send_event(HumanResponseEvent(response="yes"))
    assert (await handler)["approved"] is True
    assert_equivalent(ckptr.checkpoints[handler.run_id], oracle[handler.run_id])


async def test_it_restores_a_fork_from_mid_fan_out_with_a_store_edit() -> None:
    ckptr, run_id = await _run(MapFlow(), items=500)
    checkpoints = ckptr.checkpoints[run_id]
    middle = checkpoints[len(checkpoints) // 2]
    state = middle.ctx_state
    assert state["queued"] or state["in_flight"]  # work was still pending there
    assert state["collect"]  # and results were waiting for the fan-in

    fork = ckptr.run_from(middle, store={"label": "forked"})
    result = await fork
    assert result == {"items": 500, "index_sum": sum(range(500)), "distinct": 500, "label": "forked"}
    fork_checkpoints = ckptr.checkpoints[fork.run_id]
    assert is_full(fork_checkpoints[0].state_record)  # a fork's records never reach into its parent


async def test_it_writes_records_whose_size_does_not_grow_with_the_fan_out_width() -> None:
    sizes: dict[int, float] = {}
    for items in (100, 2000):
        ckptr, run_id = await _run(MapFlow(), items=items)
        records = [c.state_record for c in ckptr.checkpoints[run_id]]
        sizes[items] = sum(len(json.dumps(r)) for r in records) / items
        deltas = [len(json.dumps(r)) for r in records[2:] if not is_full(r)]
        assert max(deltas) < 1000  # what one step consumed, produced and changed
    assert sizes[2000] < 1.2 * sizes[100], sizes


async def test_it_records_the_failed_attempts_before_a_step_succeeded() -> None:
    ckptr, run_id = await _run(FlakyFlow(), failures=2)
    fetch = [c for c in ckptr.checkpoints[run_id] if c.last_completed_step == "fetch"][0]
    assert [r["attempt"] for r in fetch.retries] == [1, 2]
    assert fetch.retries[0]["error"] == "ConnectionError: upstream unavailable (attempt 1)"
    assert all(r["duration_ms"] >= 0 for r in fetch.retries)
    assert ckptr.checkpoints[run_id][0].retries == []  # `prepare` succeeded at once
