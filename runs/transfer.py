"""Export a run with its checkpoints as one JSON document, and import it, validated first."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from wfdash.workflow.checkpointer import Checkpoint as EngineCheckpoint
from wfdash.workflow.checkpointer import validate_snapshot
from wfdash.workflow.errors import SerializationError
from wfdash.workflow.snapshots import State, is_full

from . import inputs
from .models import Checkpoint, Run, RunStatus
from .states import expand_records
from .store import split_store

# Version 2 carries each checkpoint's state record (full, or what its step changed) as
# stored; version 1 (still read) carried the complete state of every checkpoint.
FORMAT = "wfdash.run/2"
FORMATS = ("wfdash.run/1", FORMAT)
RUN_FIELDS = (
    "workflow", "status", "start_event", "result", "error", "error_traceback", "fork_edits", "created_at",
    "started_at", "finished_at", "attempts", "checkpoint_count", "llm_calls", "prompt_tokens", "completion_tokens",
)  # fmt: skip


def export_run(run: Run) -> dict[str, Any]:
    """The run and its checkpoints' state records, blob references replaced by their values."""
    data: dict[str, Any] = {f: getattr(run, f) for f in RUN_FIELDS}
    for f in ("created_at", "started_at", "finished_at"):
        data[f] = data[f].isoformat() if data[f] else None
    data["id"] = str(run.id)
    data["parent_checkpoint_id"] = str(run.parent_checkpoint_id) if run.parent_checkpoint_id else None
    checkpoints = [
        {
            "id": str(c.id),
            "seq": c.seq,
            "last_completed_step": c.last_completed_step,
            "input_event": c.input_event,
            "output_event": c.output_event,
            "state": expand_records([c.state])[0],
            "created_at": c.created_at.isoformat(),
            "duration_ms": c.duration_ms,
            "usage": c.usage,
        }
        for c in Checkpoint.objects.filter(run=run).order_by("seq").iterator(chunk_size=500)
    ]
    return {"format": FORMAT, "run": data, "checkpoints": checkpoints}


def import_run(doc: Any) -> Run:
    """Validate everything against the workflow's registry, then insert in one transaction."""
    if not isinstance(doc, dict) or doc.get("format") not in FORMATS:
        raise inputs.InputError(f"not a wfdash run export (expected format {FORMAT!r})")
    state_key = "ctx_state" if doc["format"] == FORMATS[0] else "state"
    data, rows = doc.get("run"), doc.get("checkpoints")
    if not isinstance(data, dict) or not isinstance(rows, list):
        raise inputs.InputError("the export needs a 'run' object and a 'checkpoints' list")
    workflow = inputs.workflow_named(str(data.get("workflow")))
    registry = workflow.event_registry
    try:
        run_id = uuid.UUID(str(data.get("id")))
    except ValueError:
        raise inputs.InputError("the run id is not a UUID") from None
    if Run.objects.filter(pk=run_id).exists():
        raise inputs.InputError(f"run {run_id} exists already")
    status = data.get("status")
    if status not in RunStatus.values:
        raise inputs.InputError(f"unknown status {status!r}")
    try:
        if data.get("start_event") is not None:
            registry.decode(data["start_event"])
        for f in ("output_event",):
            if (data.get("fork_edits") or {}).get(f) is not None:
                registry.decode(data["fork_edits"][f])
        checkpoints: list[Checkpoint] = []
        # The records are replayed in order, as a restore would; each full one (and the
        # last state) is checked against the workflow's registry.
        state: State | None = None
        snapshot_seq = 0
        for expected_seq, row in enumerate(rows, start=1):
            if not isinstance(row, dict) or row.get("seq") != expected_seq:
                raise SerializationError(f"checkpoint {expected_seq}: seq must run 1, 2, 3... without gaps")
            record = row.get(state_key)
            if not isinstance(record, dict):
                raise SerializationError(f"checkpoint {expected_seq}: {state_key!r} must be an object")
            engine = EngineCheckpoint.from_record({**row, "ctx_state": record, "run_id": str(run_id)}, registry)
            if engine.last_completed_step not in workflow.steps:
                raise SerializationError(f"checkpoint {expected_seq}: unknown step {engine.last_completed_step!r}")
            if is_full(record):
                if state is not None:
                    validate_snapshot(workflow, state.ctx_state())
                state, snapshot_seq = State(record), expected_seq
            elif state is None:
                raise SerializationError(f"checkpoint {expected_seq}: the first record must be a full one")
            else:
                state.apply(record)
            checkpoints.append(
                Checkpoint(
                    id=uuid.UUID(str(row["id"])),
                    run_id=run_id,
                    workflow=data["workflow"],
                    seq=engine.seq,
                    last_completed_step=engine.last_completed_step,
                    input_event_type=type(engine.input_event).__name__,
                    output_event_type=type(engine.output_event).__name__ if engine.output_event else "",
                    input_event=row["input_event"],
                    output_event=row["output_event"],
                    state=record,
                    snapshot_seq=snapshot_seq,
                    created_at=engine.created_at,
                    duration_ms=engine.duration_ms,
                    usage=row.get("usage"),
                )
            )
        if state is not None:
            validate_snapshot(workflow, state.ctx_state())
    except (SerializationError, KeyError, TypeError, ValueError) as exc:
        raise inputs.InputError(f"invalid export: {exc}") from None
    inputs.reject_nul(doc, "the export")
    if Checkpoint.objects.filter(pk__in=[c.pk for c in checkpoints]).exists():
        raise inputs.InputError("some checkpoint ids exist already")
    parent_id = data.get("parent_checkpoint_id")
    parent = Checkpoint.objects.filter(pk=parent_id).first() if parent_id else None
    run = Run(
        id=run_id,
        workflow=data["workflow"],
        status=Run.status_on_import(status),
        start_event=data.get("start_event"),
        result=data.get("result"),
        error=str(data.get("error") or ""),
        error_traceback=str(data.get("error_traceback") or ""),
        fork_edits=data.get("fork_edits") or {},
        parent_checkpoint=parent,
        attempts=int(data.get("attempts") or 0),
        checkpoint_count=len(checkpoints),
        llm_calls=int(data.get("llm_calls") or 0),
        prompt_tokens=int(data.get("prompt_tokens") or 0),
        completion_tokens=int(data.get("completion_tokens") or 0),
    )
    for f in ("created_at", "started_at", "finished_at"):
        value = parse_datetime(data[f]) if isinstance(data.get(f), str) else None
        if value is not None:
            setattr(run, f, value)
    with transaction.atomic():
        run.save(force_insert=True)
        for c in checkpoints:
            c.state = split_store(c.state)
        Checkpoint.objects.bulk_create(checkpoints, batch_size=500)
    return run
