"""The API's sweeps: fork one checkpoint into K variants, and read the experiment's matrix.

Registered on `runs.api.api` (same auth, same error shape); imported by it, after its
schemas exist.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpRequest
from ninja import Router, Status

from wfdash.api_schemas import ExperimentOut, SweepIn, SweepOut

from . import access, inputs
from .api import ERRORS, ErrorOut, error
from .api_fork_preview import incompatible_response
from .experiments import VariantError, create_sweep, matrix
from .fork_preview import IncompatibleCode
from .models import Experiment, Run

router = Router(tags=["experiments"])


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
    except inputs.UnknownCheckpoint:
        raise Http404(f"no checkpoint {checkpoint_id}") from None
    except inputs.CorruptCheckpoint as exc:
        return error(request, 409, "corrupt", str(exc))
    except inputs.InputError as exc:
        return error(request, 422, "invalid", str(exc), exc.field)
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
