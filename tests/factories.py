"""Rows the tests build directly: runs and checkpoints with a valid (empty) state."""

from __future__ import annotations

from typing import Any

from runs.models import Checkpoint, Run, RunStatus

EMPTY_STATE: dict[str, Any] = {
    "version": 1,
    "store": {},
    "queued": [],
    "in_flight": [],
    "unsent": [],
    "collect": [],
    "waiters": [],
    "awaiting_input": False,
}


def state_with(store: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A full (version 1) stored state holding `store` (values stored inline)."""
    return {**EMPTY_STATE, "store": {key: {"v": value} for key, value in store.items()}, **fields}


def checkpoint(
    run: Run | None = None,
    *,
    workflow: str = "chain",
    seq: int = 1,
    step: str = "begin",
    input_event: dict[str, Any] | None = None,
    output_event: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Checkpoint:
    """A checkpoint of `run` (a new finished run of `workflow` if None) whose state is a full record."""
    run = run or Run.objects.create(workflow=workflow, status=RunStatus.SUCCEEDED)
    input_event = input_event or {"type": "ChainStart", "data": {"steps": 2}}
    output_event = output_event if output_event is not None else {"type": "Tick", "data": {"n": 1}}
    return Checkpoint.objects.create(
        run=run,
        workflow=run.workflow,
        seq=seq,
        snapshot_seq=seq,
        last_completed_step=step,
        input_event_type=input_event["type"],
        output_event_type=output_event["type"] if output_event else "",
        input_event=input_event,
        output_event=output_event or None,
        state=state or EMPTY_STATE,
    )
