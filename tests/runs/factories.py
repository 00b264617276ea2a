"""Runs and checkpoints written directly, as a worker would, for page and input tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from runs.models import Checkpoint, Run, RunStatus


def viewer() -> Any:
    """A user with the runs permissions (view, add, change)."""
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="runs", codename__in=["view_run", "add_run", "change_run"])
    )
    return user


def make_run(
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]],
    *,
    workflow: str = "chain",
    parent: Checkpoint | None = None,
    status: str = RunStatus.SUCCEEDED,
    result: Any = None,
    error: str = "",
    fork_edits: dict[str, Any] | None = None,
    times: list[tuple[float, float]] | None = None,
    retries: dict[int, list[dict[str, Any]]] | None = None,
) -> Run:
    """A run whose checkpoint #k is rows[k-1] = (step, output data, store), each a full record.

    `times` gives (start ms, end ms) per checkpoint from one origin; `retries` maps a seq to
    its failed attempts.
    """
    run = Run.objects.create(
        workflow=workflow,
        status=status,
        result=result,
        error=error,
        parent_checkpoint=parent,
        fork_edits=fork_edits or {},
        checkpoint_count=len(rows),
    )
    t0 = timezone.now() - timedelta(hours=1)
    for seq, (step, out, store) in enumerate(rows, start=1):
        start, end = times[seq - 1] if times else (10.0 * seq - 4, 10.0 * seq)
        Checkpoint.objects.create(
            run=run,
            workflow=workflow,
            seq=seq,
            snapshot_seq=seq,
            last_completed_step=step,
            input_event_type="Tick",
            output_event_type="Tick",
            input_event={"type": "Tick", "data": {"step": step}},
            output_event={"type": "Tick", "data": out},
            state={
                "version": 1,
                "store": {k: {"v": v} for k, v in store.items()},
                "queued": [],
                "in_flight": [],
                "collect": [],
                "waiters": [],
                "awaiting_input": False,
            },
            created_at=t0 + timedelta(milliseconds=end),
            duration_ms=end - start,
            retries=(retries or {}).get(seq),
        )
    return run


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
