"""API: a fork's preview (`GET /api/checkpoints/{id}/fork-preview/`) and the refusal of a fork
whose checkpoint the current code may not load (409 `incompatible_code`).

Registered on the API in runs/api.py, so it shares its auth and error handlers.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from django.http import Http404, HttpRequest, JsonResponse
from ninja import Field, Router, Schema

from . import access, inputs, timeline
from .fork_preview import IncompatibleCode, preview
from .models import Checkpoint

router = Router(tags=["checkpoints"])


class SchemaChangeOut(Schema):
    event: str
    change: str
    severity: Literal["error", "info"] = Field(description="error: the checkpoint's events may not load")
    field: str | None = None


class ChangedStepOut(Schema):
    step: str
    status: Literal["changed", "added", "removed"]
    diff: str = Field(description="unified diff of the step's source, checkpoint's run → now")


class ForkPreviewOut(Schema):
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


class ErrorWithChanges(Schema):
    """The API's error body (runs/api.py), with `changes` when a fork is refused for them."""

    code: str
    message: str
    field: str | None = None
    changes: list[SchemaChangeOut] | None = Field(default=None, description="with incompatible_code: what changed")


class ConflictOut(Schema):
    error: ErrorWithChanges


def incompatible_response(exc: IncompatibleCode) -> JsonResponse:
    body = {"code": "incompatible_code", "message": str(exc), "changes": [c.as_dict() for c in exc.changes]}
    return JsonResponse({"error": body}, status=409)


@router.get(
    "/checkpoints/{checkpoint_id}/fork-preview/",
    response={200: ForkPreviewOut, 401: ConflictOut, 403: ConflictOut, 404: ConflictOut, 422: ConflictOut},
)
def fork_preview(request: HttpRequest, checkpoint_id: uuid.UUID) -> Any:
    """What a fork of this checkpoint will run: the steps changed since its run (with a source
    diff each), event schema changes (errors refuse the fork), the steps it starts with.
    Compared with this server's code: web processes and workers are expected to run the same."""
    access.check(request.user, access.VIEW)
    try:
        qs = Checkpoint.objects.select_related("run").defer(*(f"run__{f}" for f in timeline.RUN_HEAVY))
        row = qs.get(pk=checkpoint_id)
    except Checkpoint.DoesNotExist:
        raise Http404(f"no checkpoint {checkpoint_id}") from None
    try:
        workflow = inputs.workflow_named(row.workflow)
    except inputs.InputError as exc:
        raise Http404(str(exc)) from None
    return preview(row, workflow).as_json()
