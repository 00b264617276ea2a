"""API: a fork's preview (`GET /api/checkpoints/{id}/fork-preview/`) and the refusal of a fork
whose checkpoint the current code may not load (409 `incompatible_code`).

Registered on the API in runs/api.py, so it shares its auth and error handlers.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from ninja import Router

from wfdash.api_schemas import ConflictOut, ForkPreviewOut

from . import access, inputs, timeline
from .fork_preview import IncompatibleCode, preview
from .models import Checkpoint

router = Router(tags=["checkpoints"])


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
