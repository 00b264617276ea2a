"""The types the client returns: the API's own schemas (`wfdash.api_schemas`), the very models
the server validates and answers with."""

from __future__ import annotations

import uuid

from wfdash.api_schemas import (
    TERMINAL_STATUSES,
    ActivityOut,
    ChangedStepOut,
    ChangeOut,
    CheckpointDetailOut,
    CheckpointOut,
    CheckpointPage,
    ErrorOut,
    ExperimentOut,
    ForkIn,
    ForkPreviewOut,
    LiveCheckpoint,
    LiveMessage,
    LiveRun,
    LiveSkipped,
    RespondIn,
    RunIn,
    RunListItem,
    RunOut,
    RunPage,
    SchemaChangeOut,
    StepOut,
    SweepIn,
    SweepOut,
    VariantOut,
    WorkflowOut,
)

__all__ = [
    "TERMINAL_STATUSES",
    "ActivityOut",
    "ChangeOut",
    "ChangedStepOut",
    "CheckpointDetailOut",
    "CheckpointOut",
    "CheckpointPage",
    "ErrorOut",
    "ExperimentId",
    "ExperimentOut",
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
    "SchemaChangeOut",
    "StepOut",
    "SweepIn",
    "SweepOut",
    "VariantOut",
    "WorkflowOut",
]

# An experiment's id, as the client takes it (a UUID, or its text).
ExperimentId = uuid.UUID | str
