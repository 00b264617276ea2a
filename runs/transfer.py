"""Export a run with its checkpoints as one JSON document, and import it, validated first."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from django.db import transaction
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

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
            "retries": c.retries,
        }
        for c in Checkpoint.objects.filter(run=run).order_by("seq").iterator(chunk_size=500)
    ]
    return {"format": FORMAT, "run": data, "checkpoints": checkpoints}


# Counters fit PostgreSQL's bigint; times are finite and non-negative.
MAX_COUNT = 2**62
MAX_MS = 1e12
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]


def _storable(value: datetime) -> datetime:
    # Year 1 with a positive offset is year 0 in UTC, which no database stores.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None
    if not 1900 <= utc.year <= 9999:
        raise ValueError("the time must fall between the years 1900 and 9999")
    return utc


Time = Annotated[AwareDatetime, AfterValidator(_storable)]
Text = Annotated[str, Field(max_length=1_000_000)]
Name = Annotated[str, Field(min_length=1, max_length=100)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Usage(BaseModel):
    """One LLM call as a step recorded it (other keys are kept as they are)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    model: str = Field(default="", max_length=200)
    prompt_tokens: Count = 0
    completion_tokens: Count = 0


class _Retry(_Strict):
    attempt: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    error: Annotated[str, Field(max_length=10_000)]
    duration_ms: Annotated[float, Field(ge=0, le=MAX_MS)]


class _RunDoc(_Strict):
    id: uuid.UUID
    workflow: Name
    status: RunStatus
    start_event: dict[str, Any] | None = None
    result: Any = None
    error: Text = ""
    error_traceback: Text = ""
    fork_edits: dict[str, Any] = {}
    created_at: Time
    started_at: Time | None = None
    finished_at: Time | None = None
    attempts: Annotated[int, Field(ge=0, le=1000, strict=True)] = 0
    checkpoint_count: Count = 0
    llm_calls: Count = 0
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    parent_checkpoint_id: uuid.UUID | None = None


class _CheckpointDoc(_Strict):
    id: uuid.UUID
    seq: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]
    last_completed_step: Name
    input_event: dict[str, Any]
    output_event: dict[str, Any] | None
    state: dict[str, Any] | None = None  # version 2
    ctx_state: dict[str, Any] | None = None  # version 1
    created_at: Time
    duration_ms: Annotated[float, Field(ge=0, le=MAX_MS)]
    usage: list[_Usage] | None = None
    retries: list[_Retry] | None = None


class _ExportDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: str
    run: _RunDoc
    checkpoints: list[_CheckpointDoc]


def read_export(raw: bytes) -> Any:
    """Parse an export file: UTF-8, strict JSON (no NaN or Infinity), bounded nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise inputs.InputError(f"the file is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise inputs.InputError(f"the file is not valid JSON: {exc}") from None
    except RecursionError:
        raise inputs.InputError(f"the file is nested too deeply (at most {inputs.MAX_DEPTH} levels)") from None
    return doc


def _no_constant(name: str) -> Any:
    raise inputs.InputError(f"the file contains {name}, which is not JSON")


def import_run(doc: Any) -> Run:
    """Validate every field (types, ranges, dates, ids, references, events against the
    workflow's registry, state records by replaying them), then insert all in one
    transaction, or nothing."""
    if not isinstance(doc, dict) or doc.get("format") not in FORMATS:
        raise inputs.InputError(f"not a wfdash run export (expected format {FORMAT!r})")
    inputs.reject_nul(doc, "the export")
    try:
        parsed = _ExportDoc.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise inputs.InputError(f"invalid export: {where}: {first['msg']}") from None
    data = parsed.run
    state_key = "ctx_state" if parsed.format == FORMATS[0] else "state"
    workflow = inputs.workflow_named(data.workflow)
    registry = workflow.event_registry
    if Run.objects.filter(pk=data.id).exists():
        raise inputs.InputError(f"run {data.id} exists already")
    ids = [c.id for c in parsed.checkpoints]
    if len(set(ids)) != len(ids):
        raise inputs.InputError("invalid export: two checkpoints share an id")
    if data.parent_checkpoint_id in ids:
        raise inputs.InputError("invalid export: the run cannot be forked from its own checkpoint")
    parent = None
    if data.parent_checkpoint_id is not None:
        parent = Checkpoint.objects.filter(pk=data.parent_checkpoint_id).first()
        if parent is None:
            raise inputs.InputError(
                f"the run was forked from checkpoint {data.parent_checkpoint_id}, which is not in this database: "
                "import its parent run first"
            )
        if parent.workflow != data.workflow:
            raise inputs.InputError("invalid export: the parent checkpoint belongs to another workflow")
    try:
        if data.start_event is not None:
            registry.decode(data.start_event)
        if data.fork_edits.get("output_event") is not None:
            registry.decode(data.fork_edits["output_event"])
        checkpoints: list[Checkpoint] = []
        # The records are replayed in order, as a restore would; each full one (and the
        # last state) is checked against the workflow's registry.
        state: State | None = None
        snapshot_seq = 0
        for expected_seq, row in enumerate(parsed.checkpoints, start=1):
            if row.seq != expected_seq:
                raise SerializationError(f"checkpoint {expected_seq}: seq must run 1, 2, 3... without gaps")
            record = getattr(row, state_key)
            if record is None:
                raise SerializationError(f"checkpoint {expected_seq}: {state_key!r} must be an object")
            if row.last_completed_step not in workflow.steps:
                raise SerializationError(f"checkpoint {expected_seq}: unknown step {row.last_completed_step!r}")
            input_event = registry.decode(row.input_event)
            output_event = registry.decode(row.output_event) if row.output_event is not None else None
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
                    id=row.id,
                    run_id=data.id,
                    workflow=data.workflow,
                    seq=row.seq,
                    last_completed_step=row.last_completed_step,
                    input_event_type=type(input_event).__name__,
                    output_event_type=type(output_event).__name__ if output_event is not None else "",
                    input_event=row.input_event,
                    output_event=row.output_event,
                    state=record,
                    snapshot_seq=snapshot_seq,
                    created_at=row.created_at,
                    duration_ms=row.duration_ms,
                    usage=[u.model_dump() for u in row.usage] if row.usage is not None else None,
                    retries=[r.model_dump() for r in row.retries] if row.retries else None,
                )
            )
        if state is not None:
            validate_snapshot(workflow, state.ctx_state())
    except SerializationError as exc:
        raise inputs.InputError(f"invalid export: {exc}") from None
    if Checkpoint.objects.filter(pk__in=ids).exists():
        raise inputs.InputError("some checkpoint ids exist already")
    run = Run(
        id=data.id,
        workflow=data.workflow,
        status=Run.status_on_import(data.status),
        start_event=data.start_event,
        result=data.result,
        error=data.error,
        error_traceback=data.error_traceback,
        fork_edits=data.fork_edits,
        parent_checkpoint=parent,
        attempts=data.attempts,
        checkpoint_count=len(checkpoints),
        llm_calls=data.llm_calls,
        prompt_tokens=data.prompt_tokens,
        completion_tokens=data.completion_tokens,
        created_at=data.created_at,
        started_at=data.started_at,
        finished_at=data.finished_at,
    )
    with transaction.atomic():
        run.save(force_insert=True)
        for c in checkpoints:
            c.state = split_store(c.state)
        Checkpoint.objects.bulk_create(checkpoints, batch_size=500)
    return run
