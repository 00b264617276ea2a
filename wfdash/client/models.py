"""The types the client returns: the API's own schemas (`wfdash.api_schemas`), and models for
the sweep and fork-preview routes, written from their specs until the server's schemas for
them join `wfdash.api_schemas`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, model_validator

from wfdash.api_schemas import (
    TERMINAL_STATUSES,
    ActivityOut,
    CheckpointDetailOut,
    CheckpointOut,
    CheckpointPage,
    ErrorOut,
    ForkIn,
    LiveCheckpoint,
    LiveMessage,
    LiveRun,
    LiveSkipped,
    RespondIn,
    RunIn,
    RunListItem,
    RunOut,
    RunPage,
    StepOut,
    WorkflowOut,
)

__all__ = [
    "TERMINAL_STATUSES",
    "ActivityOut",
    "ChangedStep",
    "CheckpointDetailOut",
    "CheckpointOut",
    "CheckpointPage",
    "ErrorOut",
    "ExperimentId",
    "ExperimentOut",
    "ExperimentRun",
    "ForkIn",
    "ForkPreviewOut",
    "LiveCheckpoint",
    "LiveMessage",
    "LiveRun",
    "LiveSkipped",
    "RespondIn",
    "RunIn",
    "RunListItem",
    "RunOut",
    "RunPage",
    "SchemaChange",
    "StepOut",
    "SweepIn",
    "SweepOut",
    "SweepVariant",
    "WorkflowOut",
]

# The spec names experiments by "id" without a type: a UUID like runs', or an integer key.
ExperimentId = uuid.UUID | int


class SweepVariant(BaseModel):
    """One fork of a sweep: the same edits `fork()` takes."""

    output_event: dict[str, Any] | None = None
    store: dict[str, Any] | None = None


class SweepIn(BaseModel):
    """`POST /api/checkpoints/{id}/sweep/`: a list of variants, or a grid the server expands."""

    variants: list[SweepVariant] | None = None
    grid: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SweepIn:
        if (self.variants is None) == (self.grid is None):
            raise ValueError("give either variants or grid")
        return self


class SweepOut(BaseModel):
    experiment: ExperimentId
    runs: list[uuid.UUID]


class ExperimentRun(BaseModel):
    id: uuid.UUID
    variant: Any = None
    status: str
    edits: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    duration_ms: float | None = None
    tokens: int = 0


class ExperimentOut(BaseModel):
    """`GET /api/experiments/{id}/`: a sweep's runs, side by side."""

    id: ExperimentId
    checkpoint: uuid.UUID
    base_run: uuid.UUID
    created_at: datetime
    runs: list[ExperimentRun]


class ChangedStep(BaseModel):
    step: str
    diff: str


class SchemaChange(BaseModel):
    event: str
    change: str


class ForkPreviewOut(BaseModel):
    """`GET /api/checkpoints/{id}/fork-preview/`: what a fork would run under today's code."""

    code_version: str | None
    checkpoint_code_version: str | None
    changed_steps: list[ChangedStep]
    schema_changes: list[SchemaChange]
    will_run: list[str]
