"""The JSON API (django-ninja): runs, checkpoints, fork, answers, workflows; OpenAPI at /api/openapi.json.

Auth: the browser session (with CSRF on writes) or `Authorization: Bearer <token>`.
Errors are always `{"error": {"code", "message", "field"?}}`; no error writes anything.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, SessionAuth

from wfdash import api_schemas as schemas
from wfdash import telemetry
from wfdash.api_schemas import (
    CheckpointDetailOut,
    CheckpointFilters,
    CheckpointOut,
    CheckpointPage,
    ErrorOut,
    ForkIn,
    RespondIn,
    RunFilters,
    RunIn,
    RunListItem,
    RunPage,
    WorkflowOut,
)

from . import access, filters, inputs, registry, search
from .api_fork_preview import ConflictOut, incompatible_response
from .api_fork_preview import router as fork_preview_router
from .fork_preview import IncompatibleCode
from .models import ApiToken, Checkpoint, Run, fork_run, respond, start_run

MAX_BODY = 1024 * 1024


class SessionUnlessBearer(SessionAuth):
    """The browser's session (with its CSRF check), for requests that carry no token: a
    request with a bad token is 401 on every method, not a CSRF failure."""

    def __call__(self, request: HttpRequest) -> Any:
        if request.META.get("HTTP_AUTHORIZATION"):
            return None
        return super().__call__(request)


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = ApiToken.authenticate(token)
        if user is not None:
            request.user = user
        return user


api = NinjaAPI(
    title="wfdash API",
    version="1",
    description="Runs, checkpoints and forks of wfdash workflows.",
    auth=[BearerToken(), SessionUnlessBearer()],
    urls_namespace="api",
    docs_url="/docs",
    openapi_url="/openapi.json",
)


# -- schemas (wfdash/api_schemas.py, shared with the Python client) ----------------


# The shared RunOut, filled from a Run row: its activity through a ninja resolver. (No
# docstring: it would become the OpenAPI description.)
class RunOut(Schema, schemas.RunOut):
    @staticmethod
    def resolve_activity(run: Run) -> list[Any]:
        return run.recent_activities()

    @staticmethod
    def resolve_trace_id(run: Run) -> str | None:
        link = telemetry.trace_link(run.id, settings.WFDASH_TRACE_URL)
        return link["id"] if link else None


ERRORS: dict[int, Any] = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 413: ErrorOut, 422: ErrorOut}


# -- errors --------------------------------------------------------------------


def error(request: HttpRequest, status: int, code: str, message: str, field: str | None = None) -> HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return api.create_response(request, {"error": body}, status=status)


@api.exception_handler(ValidationError)
def _validation(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path", "payload", "filters")]
    return error(request, 422, "invalid", str(first.get("msg", "invalid request")), ".".join(loc) or None)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 401, "unauthenticated", "sign in, or send Authorization: Bearer <token>")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 403, "forbidden", str(exc) or "permission denied")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 404, "not_found", str(exc) or "not found")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 413, "too_large", f"request bodies are limited to {MAX_BODY} bytes")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    codes = {400: "bad_request", 409: "conflict", 413: "too_large"}
    return error(request, exc.status_code, codes.get(exc.status_code, "error"), str(exc))


def _run(run_id: uuid.UUID) -> Run:
    try:
        return Run.objects.get(pk=run_id)
    except Run.DoesNotExist:
        raise Http404(f"no run {run_id}") from None


# -- runs ------------------------------------------------------------------------


@api.get("/runs/", response={200: RunPage, **ERRORS}, tags=["runs"])
def list_runs(request: HttpRequest, params: Query[RunFilters]) -> Any:
    access.check(request.user, access.VIEW)
    try:
        qs, _ = filters.run_filters({k: v for k, v in params.model_dump().items() if v is not None})
        page = filters.paginate(filters.with_previews(qs), params.before)
    except filters.FilterError as exc:
        return error(request, 400, "bad_filter", str(exc))
    return {"items": [_list_item(r) for r in page.rows], "next_cursor": page.next_cursor}


def _list_item(run: Run) -> dict[str, Any]:
    item = {f: getattr(run, f) for f in RunListItem.model_fields if hasattr(run, f)}
    for name in filters.PREVIEWED:
        head = getattr(run, f"{name}_head")
        item[f"{name}_preview"] = None if head is None else head[: filters.PREVIEW_CHARS]
        item[f"{name}_truncated"] = head is not None and len(head) > filters.PREVIEW_CHARS
    item["url"] = f"/api/runs/{run.id}/"
    return item


@api.post("/runs/", response={201: RunOut, 409: ErrorOut, **ERRORS}, tags=["runs"])
def create_run(request: HttpRequest, payload: RunIn) -> Any:
    access.check(request.user, access.ADD)
    try:
        run = start_run(payload.workflow, payload.input, user=request.user)
    except inputs.WorkflowUnavailable as exc:
        return error(request, 409, "unavailable", str(exc), "workflow")
    except inputs.InputError as exc:
        field = "workflow" if "unknown workflow" in str(exc) else "input"
        return error(request, 422 if field == "input" else 404, "invalid", str(exc), field)
    return Status(201, run)


@api.get("/runs/{run_id}/", response={200: RunOut, **ERRORS}, tags=["runs"])
def get_run(request: HttpRequest, run_id: uuid.UUID) -> Any:
    access.check(request.user, access.VIEW)
    return _run(run_id)


@api.post("/runs/{run_id}/cancel/", response={200: RunOut, 409: ErrorOut, **ERRORS}, tags=["runs"])
def cancel_run(request: HttpRequest, run_id: uuid.UUID) -> Any:
    access.check(request.user, access.CHANGE)
    run = _run(run_id)
    if not run.request_cancel(request.user):
        return error(request, 409, "conflict", f"the run already {run.status}")
    return run


@api.post("/runs/{run_id}/respond/", response={200: RunOut, 409: ErrorOut, **ERRORS}, tags=["runs"])
def respond_to_run(request: HttpRequest, run_id: uuid.UUID, payload: RespondIn) -> Any:
    access.check(request.user, access.CHANGE)
    run = _run(run_id)
    try:
        if not respond(run, {"response": payload.response}, user=request.user):
            return error(request, 409, "conflict", f"the run is {run.status}, not waiting for input")
    except inputs.InputError as exc:
        return error(request, 422, "invalid", str(exc), "response")
    return run


@api.get("/runs/{run_id}/checkpoints/", response={200: list[CheckpointOut], **ERRORS}, tags=["checkpoints"])
def run_checkpoints(
    request: HttpRequest, run_id: uuid.UUID, after: int = Query(0, ge=0), limit: int = Query(500, ge=1, le=5000)
) -> Any:
    access.check(request.user, access.VIEW)
    run = _run(run_id)
    qs = Checkpoint.objects.filter(run=run, seq__gt=after).order_by("seq")
    return list(qs.defer("input_event", "output_event", "state")[:limit])


# -- checkpoints -----------------------------------------------------------------


@api.get("/checkpoints/", response={200: CheckpointPage, **ERRORS}, tags=["checkpoints"])
def list_checkpoints(request: HttpRequest, params: Query[CheckpointFilters]) -> Any:
    access.check(request.user, access.VIEW)
    try:
        qs, active = filters.checkpoint_filters({k: v for k, v in params.model_dump().items() if v is not None})
        page = filters.paginate(qs, params.before)
    except filters.FilterError as exc:
        return error(request, 400, "bad_filter", str(exc), getattr(exc, "field", None))
    if found := search.parse(active.get("q")):
        where = search.matches_for(page.rows, found)
        for row in page.rows:
            row.matches = [m.as_dict() for m in where.get(row.pk, [])]
    return {"items": page.rows, "next_cursor": page.next_cursor}


def _checkpoint(checkpoint_id: uuid.UUID) -> Checkpoint:
    try:
        return Checkpoint.objects.get(pk=checkpoint_id)
    except Checkpoint.DoesNotExist:
        raise Http404(f"no checkpoint {checkpoint_id}") from None


@api.get("/checkpoints/{checkpoint_id}/", response={200: CheckpointDetailOut, **ERRORS}, tags=["checkpoints"])
def get_checkpoint(request: HttpRequest, checkpoint_id: uuid.UUID) -> Any:
    access.check(request.user, access.VIEW)
    c = _checkpoint(checkpoint_id)
    try:
        c.ctx_state = c.context_state()  # type: ignore[attr-defined]
    except Exception as exc:
        return error(request, 409, "corrupt", f"the checkpoint's snapshot cannot be read: {exc}")
    return c


@api.post(
    "/checkpoints/{checkpoint_id}/fork/", response={201: RunOut, **ERRORS, 409: ConflictOut}, tags=["checkpoints"]
)
def fork_checkpoint(request: HttpRequest, checkpoint_id: uuid.UUID, payload: ForkIn) -> Any:
    access.check(request.user, access.ADD)
    c = _checkpoint(checkpoint_id)
    try:
        run = fork_run(c.id, output_event=payload.output_event, store=payload.store, user=request.user)
    except IncompatibleCode as exc:
        return incompatible_response(exc)
    except inputs.UnknownCheckpoint:  # deleted since it was read
        raise Http404(f"no checkpoint {checkpoint_id}") from None
    except inputs.CorruptCheckpoint as exc:
        return error(request, 409, "corrupt", str(exc))
    except inputs.InputError as exc:
        message = str(exc)
        field = "store" if "store" in message and payload.store is not None else "output_event"
        return error(request, 422, "invalid", message, field)
    return Status(201, run)


# -- workflows -------------------------------------------------------------------


@api.get("/workflows/", response={200: list[WorkflowOut], **ERRORS}, tags=["workflows"])
def list_workflows(request: HttpRequest) -> Any:
    access.check(request.user, access.VIEW)
    out = []
    for name in registry.names():
        try:
            workflow = registry.get_workflow(name)
        except Exception:  # a misconfigured entry should not hide the others
            continue
        reg = workflow.event_registry
        out.append(
            {
                "name": name,
                "start_event": workflow.start_event_class.__name__,
                "steps": [
                    {
                        "name": step,
                        "accepts": [t.__name__ for t in cfg.accepted_events],
                        "returns": [t.__name__ for t in cfg.return_types],
                        "num_workers": cfg.num_workers,
                    }
                    for step, cfg in workflow.steps.items()
                ],
                "event_types": {n: reg.get(n).model_json_schema() for n in reg.names()},
            }
        )
    return out


# -- fork preview, experiments (sweeps), webhooks: their own modules ---------------------

api.add_router("/", fork_preview_router)

# -- experiments (sweeps): their own module, which imports the schemas above -----------

api.add_router("/", "runs.api_experiments.router")

# -- webhooks (their own module; it uses the error schema above) ---------------------

from .api_webhooks import router as webhooks_router  # noqa: E402

api.add_router("/webhooks/", webhooks_router)
