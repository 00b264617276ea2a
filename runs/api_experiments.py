"""The API's sweeps: fork one checkpoint into K variants, and read the experiment's matrix.

Registered on `runs.api.api` (same auth, same error shape); imported by it, after its
schemas exist.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Field, Router, Schema, Status

from . import access, inputs
from .api import ERRORS, ErrorOut, error
from .api_fork_preview import incompatible_response
from .experiments import MAX_VARIANTS, VariantError, create_sweep, matrix
from .fork_preview import IncompatibleCode
from .models import Experiment, Run

router = Router(tags=["experiments"])


class SweepIn(Schema):
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


class SweepOut(Schema):
    experiment: uuid.UUID
    runs: list[uuid.UUID]
    url: str


class ChangeOut(Schema):
    path: str
    kind: str = Field(description="changed, added, removed or type")
    base: str
    variant: str


class VariantOut(Schema):
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


class ExperimentOut(Schema):
    id: uuid.UUID
    name: str
    checkpoint: uuid.UUID
    base_run: uuid.UUID
    created_by: str | None
    created_at: datetime
    counts: dict[str, int] = Field(description="variants per status")
    finished: bool
    runs: list[VariantOut]


def _given(experiment: Experiment, run: Run) -> Any:
    given = experiment.variants
    if isinstance(given, list) and run.variant is not None and run.variant < len(given):
        return given[run.variant]
    return run.fork_edits


@router.post(
    "/checkpoints/{checkpoint_id}/sweep/", response={201: SweepOut, 409: ErrorOut, **ERRORS}, tags=["experiments"]
)
def sweep_checkpoint(request: HttpRequest, checkpoint_id: uuid.UUID, payload: SweepIn) -> Any:
    access.check(request.user, access.ADD)
    try:
        experiment = create_sweep(
            checkpoint_id, variants=payload.variants, grid=payload.grid, user=request.user, name=payload.name
        )
    except VariantError as exc:
        return error(request, 422, "invalid_variant", str(exc), exc.field)
    except IncompatibleCode as exc:  # before InputError: it is one
        return incompatible_response(exc)
    except inputs.InputError as exc:
        message = str(exc)
        if message.startswith("unknown checkpoint"):
            raise Http404(f"no checkpoint {checkpoint_id}") from None
        if "cannot be restored" in message:
            return error(request, 409, "corrupt", message)
        return error(request, 422, "invalid", message, exc.field)
    run_ids = list(experiment.runs.order_by("variant").values_list("id", flat=True))
    return Status(201, {"experiment": experiment.id, "runs": run_ids, "url": f"/api/experiments/{experiment.id}/"})


@router.get("/experiments/{experiment_id}/", response={200: ExperimentOut, **ERRORS}, tags=["experiments"])
def get_experiment(request: HttpRequest, experiment_id: uuid.UUID) -> Any:
    access.check(request.user, access.VIEW)
    try:
        experiment = Experiment.objects.select_related("created_by").get(pk=experiment_id)
    except Experiment.DoesNotExist:
        raise Http404(f"no experiment {experiment_id}") from None
    m = matrix(experiment)
    return {
        "id": experiment.id,
        "name": experiment.name,
        "checkpoint": experiment.checkpoint_id,
        "base_run": experiment.base_run_id,
        "created_by": experiment.created_by.get_username() if experiment.created_by else None,
        "created_at": experiment.created_at,
        "counts": m.counts,
        "finished": m.finished,
        "runs": [
            {
                "id": row.run.id,
                "variant": row.run.variant,
                "status": row.run.status,
                "edits": _given(experiment, row.run),
                "fork_edits": row.run.fork_edits,
                "result": row.result,
                "result_truncated": bool(row.result_size) and not row.result_loaded,
                "error": row.run.error,
                "duration_ms": row.duration_ms,
                "tokens": row.tokens,
                "changes": None
                if row.changes is None
                else [{"path": c.path, "kind": c.kind, "base": c.left, "variant": c.right} for c in row.changes],
                "url": f"/api/runs/{row.run.id}/",
            }
            for row in m.rows
        ],
    }
