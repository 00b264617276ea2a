"""The JSON API's request and response schemas, shared by the server (`runs/api.py`) and the
Python client (`wfdash.client`): plain pydantic models, no Django, so the client installs
without the app and both sides read one definition.

django-ninja takes pydantic models as they are; `from_attributes` lets the server return ORM
rows. The live view's socket messages (`runs/live.py`'s TypedDicts) are here as models too.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    """A schema the server may fill from an ORM row's attributes."""

    model_config = ConfigDict(from_attributes=True)


class ErrorBody(ApiModel):
    code: str
    message: str
    field: str | None = None


class ErrorOut(ApiModel):
    error: ErrorBody


class ActivityOut(ApiModel):
    action: str
    username: str
    at: datetime
    detail: dict[str, Any]


class _RunFields(ApiModel):
    """What a run's detail and its list item share."""

    id: uuid.UUID
    workflow: str
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    parent_checkpoint_id: uuid.UUID | None
    fork_edits: dict[str, Any]
    checkpoint_count: int
    attempts: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    code_version_id: str | None = Field(description="digest of the code the run last ran with; null: not recorded")


class RunOut(_RunFields):
    start_event: dict[str, Any] | None
    result: Any = None
    activity: list[ActivityOut] = Field(description="who started, forked, cancelled or answered it (newest first)")
    trace_id: str | None = Field(
        None, description="the run's OpenTelemetry trace id (32 hex digits); null when runs are not traced"
    )


class RunListItem(_RunFields):
    """A run in a list: `start_event` and `result` can be megabytes, so a list carries the first
    PREVIEW_CHARS characters of their JSON; `url` (the run itself) has them whole."""

    url: str
    start_event_preview: str | None = Field(description="the start event's JSON, cut at PREVIEW_CHARS characters")
    start_event_truncated: bool
    result_preview: str | None = Field(description="the result's JSON, cut at PREVIEW_CHARS characters")
    result_truncated: bool


class RunPage(ApiModel):
    items: list[RunListItem]
    next_cursor: str | None


class RunIn(ApiModel):
    workflow: str = Field(min_length=1, max_length=100)
    input: dict[str, Any] = Field(default_factory=dict)


class CheckpointOut(ApiModel):
    id: uuid.UUID
    run_id: uuid.UUID
    seq: int
    workflow: str
    last_completed_step: str
    input_event_type: str
    output_event_type: str
    created_at: datetime
    duration_ms: float
    usage: list[dict[str, Any]] | None


class CheckpointDetailOut(CheckpointOut):
    input_event: dict[str, Any]
    output_event: dict[str, Any] | None
    ctx_state: dict[str, Any]


class MatchOut(ApiModel):
    field: str = Field(description='where a word of q was found: "input_event.topic", "store.notes.deep[0]"')
    snippet: str = Field(description="plain text around the match")
    ranges: list[list[int]] = Field(description="[start, end) of each matched word in snippet")


class CheckpointListItem(CheckpointOut):
    matches: list[MatchOut] | None = Field(None, description="with q: the fields its words were found in (else null)")


class CheckpointPage(ApiModel):
    items: list[CheckpointListItem]
    next_cursor: str | None


class ForkIn(ApiModel):
    output_event: dict[str, Any] | None = None
    store: dict[str, Any] | None = None


class RespondIn(ApiModel):
    response: str = Field(max_length=100_000)


class StepOut(ApiModel):
    name: str
    accepts: list[str]
    returns: list[str]
    num_workers: int


class WorkflowOut(ApiModel):
    name: str
    start_event: str
    steps: list[StepOut]
    event_types: dict[str, dict[str, Any]]


class RunFilters(ApiModel):
    workflow: str | None = Field(default=None, max_length=100)
    status: str | None = Field(default=None, max_length=20)
    parent: str | None = Field(default=None, max_length=60, description="parent run id, or its first 6+ hex digits")
    since: str | None = Field(default=None, max_length=60, description="30m, 24h, 7d or an ISO date-time")
    code_version: str | None = Field(default=None, max_length=64, description="code version digest, or 6+ hex digits")
    before: str | None = Field(default=None, max_length=120, description="cursor from next_cursor")


class CheckpointFilters(ApiModel):
    workflow: str | None = Field(default=None, max_length=100)
    run: str | None = Field(default=None, max_length=60, description="run id, or its first 6+ hex digits")
    step: str | None = Field(default=None, max_length=100)
    input_event_type: str | None = Field(default=None, max_length=100)
    output_event_type: str | None = Field(
        default=None, max_length=100, description='"None" for checkpoints whose step returned no event'
    )
    since: str | None = Field(default=None, max_length=60, description="30m, 24h, 7d or an ISO date-time")
    code_version: str | None = Field(default=None, max_length=64, description="code version digest, or 6+ hex digits")
    q: str | None = Field(
        default=None,
        max_length=200,  # runs.search.MAX_QUERY_CHARS (this module stays free of Django)
        description="words inside input events, output events and store values: all of them, each as a word "
        "start (3+ characters) or a whole word, case-insensitive",
    )
    before: str | None = Field(default=None, max_length=120)


# -- sweeps (runs/api_experiments.py) and fork previews (runs/api_fork_preview.py) -------------

# runs.experiments.MAX_VARIANTS: a sweep's most variants (this module stays free of Django).
MAX_VARIANTS = 100


class SweepIn(ApiModel):
    variants: list[Any] | None = Field(
        default=None,
        description=f'1 to {MAX_VARIANTS} edit objects, each {{"output_event"?: {{...}}, "store"?: {{...}}}}',
    )
    grid: dict[str, Any] | None = Field(
        default=None,
        description='one or two fields and their values, e.g. {"output_event.topic": ["cats", "atoms"], '
        '"store.temperature": [0.1, 0.9]}: every combination is a variant',
    )
    name: str = Field(default="", max_length=200)


class SweepOut(ApiModel):
    experiment: uuid.UUID
    runs: list[uuid.UUID]
    url: str


class ChangeOut(ApiModel):
    path: str
    kind: str = Field(description="changed, added, removed or type")
    base: str
    variant: str


class VariantOut(ApiModel):
    id: uuid.UUID
    variant: int
    status: str
    edits: dict[str, Any] = Field(description="the variant's edits as given (for a grid, its combination)")
    fork_edits: dict[str, Any] = Field(description="the same, validated and encoded, as the run applied them")
    result: Any = Field(default=None, description="the whole result, unless result_truncated")
    result_truncated: bool = Field(description="the result's JSON is too long for this list; read it at url")
    error: str
    duration_ms: float | None
    tokens: int
    changes: list[ChangeOut] | None = Field(
        description="how the outcome differs from the base run's, once finished (null before)"
    )
    url: str


class ExperimentOut(ApiModel):
    id: uuid.UUID
    name: str
    checkpoint: uuid.UUID
    base_run: uuid.UUID
    created_by: str | None
    created_at: datetime
    counts: dict[str, int] = Field(description="variants per status")
    finished: bool
    runs: list[VariantOut]


class SchemaChangeOut(ApiModel):
    event: str
    change: str
    severity: Literal["error", "info"] = Field(description="error: the checkpoint's events may not load")
    field: str | None = None


class ChangedStepOut(ApiModel):
    step: str
    status: Literal["changed", "added", "removed"]
    diff: str = Field(description="unified diff of the step's source, checkpoint's run → now")


class ForkPreviewOut(ApiModel):
    checkpoint: uuid.UUID
    workflow: str
    code_version: str = Field(description="digest of the code a fork runs now (this server's)")
    checkpoint_code_version: str | None = Field(description="the code the checkpoint's run ran; null: unknown")
    code_changed: bool | None
    changed_steps: list[ChangedStepOut] | None = Field(description="null when the run's code was not recorded")
    schema_changes: list[SchemaChangeOut]
    will_run: list[str] = Field(description="the steps the fork starts with")
    compatible: bool = Field(description="false: a fork would be refused")
    load_error: str | None


class ErrorWithChanges(ErrorBody):
    """The API's error body, with `changes` when a fork is refused for them."""

    changes: list[SchemaChangeOut] | None = Field(default=None, description="with incompatible_code: what changed")


class ConflictOut(ApiModel):
    error: ErrorWithChanges


# -- the run's WebSocket (`/ws/runs/<id>/?after=<seq>`; runs/live.py has the server's TypedDicts) --


class LiveCheckpoint(BaseModel):
    """A checkpoint committed in the watched run; seqs arrive once and in order."""

    type: Literal["checkpoint"]
    id: uuid.UUID
    run_id: uuid.UUID
    seq: int
    last_completed_step: str
    input_event_type: str
    output_event_type: str
    created_at: datetime
    duration_ms: float
    llm_calls: int
    tokens: int
    retries: list[dict[str, Any]]


class LiveSkipped(BaseModel):
    """The checkpoints after `after` through `through` (`count` of them) that a catch-up left out
    (the client was further behind than one catch-up sends); the newest ones follow."""

    type: Literal["skipped"]
    after: int
    through: int
    count: int


class LiveRun(BaseModel):
    """The run's status, sent on connect and at each change, after the checkpoints committed
    before it."""

    type: Literal["run"]
    run_id: uuid.UUID
    workflow: str
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    checkpoint_count: int
    tokens: int
    parent_run_id: uuid.UUID | None
    parent_checkpoint_id: uuid.UUID | None
    error: str


LiveMessage = LiveCheckpoint | LiveSkipped | LiveRun

# Run statuses after which nothing changes (runs.models.TERMINAL).
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
