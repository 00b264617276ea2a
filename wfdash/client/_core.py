"""What `Client` and `AsyncClient` share, free of I/O: each route as a request plus the model
its answer parses into, the mapping of answers to exceptions, the live stream's exactly-once
bookkeeping, and the delays between retries. The two clients only send and sleep."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import quote

import httpx
import pydantic
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from wfdash.api_schemas import (
    TERMINAL_STATUSES,
    CheckpointDetailOut,
    CheckpointFilters,
    CheckpointOut,
    CheckpointPage,
    ForkIn,
    LiveCheckpoint,
    LiveMessage,
    LiveRun,
    LiveSkipped,
    RespondIn,
    RunFilters,
    RunIn,
    RunOut,
    RunPage,
    WorkflowOut,
)

from .errors import (
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
    WaitTimeout,
    WfdashError,
    error_for,
)
from .models import ExperimentId, ExperimentOut, ForkPreviewOut, SweepIn, SweepOut

Id = uuid.UUID | str

USER_AGENT = "wfdash-client/1"
# What one `GET /api/runs/{id}/checkpoints/` returns at most (the API allows up to 5000).
RUN_CHECKPOINTS_PAGE = 500


@dataclass(frozen=True)
class Call[T]:
    """One API request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, str] | None = None
    json: Any = None


def _seg(value: Id | ExperimentId) -> str:
    # Ids go into paths: quoting keeps a hostile "../" from reaching another route.
    return quote(str(value), safe="")


def _body[M: pydantic.BaseModel](model: type[M], **fields: Any) -> Any:
    """The request body, validated by the API's own schema before anything is sent."""
    try:
        return model(**fields).model_dump(mode="json", exclude_none=True)
    except pydantic.ValidationError as exc:
        raise _invalid(exc) from None


class RunQuery(TypedDict, total=False):
    """`runs()`'s filters, as on the runs page."""

    workflow: str
    status: str
    parent: Id
    since: str | datetime


class CheckpointQuery(TypedDict, total=False):
    """`checkpoints()`'s filters: the explorer's (`output_event_type="None"` for "no output")."""

    workflow: str
    run: Id
    step: str
    input_event_type: str
    output_event_type: str
    since: str | datetime
    q: str


def _params[M: pydantic.BaseModel](model: type[M], **fields: Any) -> dict[str, str]:
    fields = {k: v.isoformat() if isinstance(v, datetime) else str(v) for k, v in fields.items() if v is not None}
    try:
        checked = model(**{k: v for k, v in fields.items() if k in model.model_fields})
    except pydantic.ValidationError as exc:
        raise _invalid(exc) from None
    # Filters this version's schema lacks (added by newer servers, e.g. `q`) pass through as given.
    extra = {k: v for k, v in fields.items() if k not in model.model_fields}
    return {**checked.model_dump(exclude_none=True), **extra}


def _invalid(exc: pydantic.ValidationError) -> ValidationFailed:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first.get("loc", ())) or None
    return ValidationFailed(first.get("msg", "invalid"), code="invalid", field=field)


def _model[M: pydantic.BaseModel](model: type[M]) -> Callable[[Any], M]:
    return model.model_validate


def _list_of[M: pydantic.BaseModel](model: type[M]) -> Callable[[Any], list[M]]:
    adapter = pydantic.TypeAdapter(list[model])  # type: ignore[valid-type]  # a type made at run time
    return adapter.validate_python


class Routes:
    """The API's routes as calls (see runs/api.py and /api/openapi.json)."""

    @staticmethod
    def start(workflow: str, input: dict[str, Any]) -> Call[RunOut]:
        return Call("POST", "/api/runs/", _model(RunOut), json=_body(RunIn, workflow=workflow, input=input))

    @staticmethod
    def get(run_id: Id) -> Call[RunOut]:
        return Call("GET", f"/api/runs/{_seg(run_id)}/", _model(RunOut))

    @staticmethod
    def cancel(run_id: Id) -> Call[RunOut]:
        return Call("POST", f"/api/runs/{_seg(run_id)}/cancel/", _model(RunOut))

    @staticmethod
    def respond(run_id: Id, response: str) -> Call[RunOut]:
        body = _body(RespondIn, response=response)
        return Call("POST", f"/api/runs/{_seg(run_id)}/respond/", _model(RunOut), json=body)

    @staticmethod
    def runs_page(filters: dict[str, Any], before: str | None) -> Call[RunPage]:
        return Call("GET", "/api/runs/", _model(RunPage), params=_params(RunFilters, **filters, before=before))

    @staticmethod
    def checkpoints_page(filters: dict[str, Any], before: str | None) -> Call[CheckpointPage]:
        params = _params(CheckpointFilters, **filters, before=before)
        return Call("GET", "/api/checkpoints/", _model(CheckpointPage), params=params)

    @staticmethod
    def run_checkpoints(run_id: Id, after: int) -> Call[list[CheckpointOut]]:
        params = {"after": str(after), "limit": str(RUN_CHECKPOINTS_PAGE)}
        return Call("GET", f"/api/runs/{_seg(run_id)}/checkpoints/", _list_of(CheckpointOut), params=params)

    @staticmethod
    def checkpoint(checkpoint_id: Id) -> Call[CheckpointDetailOut]:
        return Call("GET", f"/api/checkpoints/{_seg(checkpoint_id)}/", _model(CheckpointDetailOut))

    @staticmethod
    def fork(checkpoint_id: Id, output_event: dict[str, Any] | None, store: dict[str, Any] | None) -> Call[RunOut]:
        body = _body(ForkIn, output_event=output_event, store=store)
        return Call("POST", f"/api/checkpoints/{_seg(checkpoint_id)}/fork/", _model(RunOut), json=body)

    @staticmethod
    def fork_preview(checkpoint_id: Id) -> Call[ForkPreviewOut]:
        return Call("GET", f"/api/checkpoints/{_seg(checkpoint_id)}/fork-preview/", _model(ForkPreviewOut))

    @staticmethod
    def sweep(
        checkpoint_id: Id, variants: list[dict[str, Any]] | None, grid: dict[str, Any] | None, name: str = ""
    ) -> Call[SweepOut]:
        if (variants is None) == (grid is None):
            raise ValidationFailed("give either variants or grid", code="invalid", field="variants")
        body = _body(SweepIn, variants=variants, grid=grid, name=name)
        return Call("POST", f"/api/checkpoints/{_seg(checkpoint_id)}/sweep/", _model(SweepOut), json=body)

    @staticmethod
    def experiment(experiment_id: ExperimentId) -> Call[ExperimentOut]:
        return Call("GET", f"/api/experiments/{_seg(experiment_id)}/", _model(ExperimentOut))

    @staticmethod
    def workflows() -> Call[list[WorkflowOut]]:
        return Call("GET", "/api/workflows/", _list_of(WorkflowOut))


def request(http: httpx.Client | httpx.AsyncClient, call: Call[Any]) -> httpx.Request:
    return http.build_request(call.method, call.path, params=call.params, json=call.json)


def unreachable(exc: httpx.TransportError) -> ConnectionFailed:
    return ConnectionFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, code="connection")


def result[T](call: Call[T], response: httpx.Response) -> T:
    """The answer as its model, or the API's error as its exception."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise error_for(response.status_code, body, response.text)
    try:
        return call.parse(body)
    except pydantic.ValidationError as exc:
        raise WfdashError(
            f"the answer to {call.method} {call.path} does not match its schema: {exc}",
            status=response.status_code,
            code="bad_response",
        ) from None


# -- waiting ----------------------------------------------------------------------------


def delays(first: float, most: float) -> Iterator[float]:
    """first, twice that, ... up to `most`, then `most` forever."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


class Deadline:
    def __init__(self, timeout: float | None):
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()


def waited(run: RunOut | None, until: Collection[str], deadline: Deadline, run_id: Id, delay: float) -> float | None:
    """None when `run` has reached `until`; else how long to sleep before asking again
    (raises WaitTimeout when the deadline passed)."""
    if run is not None and run.status in until:
        return None
    left = deadline.remaining()
    if left is not None and left <= 0:
        status = run.status if run is not None else "unknown"
        raise WaitTimeout(f"run {run_id} is still {status}, not {' or '.join(sorted(until))}", run=run)
    return delay if left is None else min(delay, left)


def retried_while_waiting(exc: WfdashError) -> bool:
    """`wait()` rides out what a restart or a deploy looks like, and raises the rest."""
    return isinstance(exc, ConnectionFailed) or (exc.status is not None and exc.status >= 500)


# -- the live stream ---------------------------------------------------------------------

CLOSE_CODES: dict[int, type[WfdashError]] = {
    4400: ValidationFailed,
    4401: Unauthenticated,
    4403: PermissionDenied,
    4404: NotFound,
}


class Gap(Exception):
    """A checkpoint arrived after a seq that was never sent: reconnect from the last one seen,
    and the server sends what lies between from the database."""


class Cursor:
    """One watch's position: what was yielded, so nothing is yielded twice or skipped across
    reconnects (the server sends every checkpoint after `after`; see runs/consumers.py)."""

    def __init__(self, run_id: Id, after: int | None):
        if after is not None and after < 0:
            raise ValidationFailed("after must be 0 or more", code="invalid", field="after")
        self.run_id = run_id
        self.after = after or 0
        self.finished = False
        self._run: tuple[str, int] | None = None
        self._gap_at: int | None = None

    def path(self) -> str:
        return f"ws/runs/{_seg(self.run_id)}/?after={self.after}"

    def accept(self, frame: str | bytes) -> LiveMessage | None:
        """The message to yield for this frame, or None (a replay, or not part of this stream)."""
        try:
            data = json.loads(frame)
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "checkpoint":
                return self._checkpoint(LiveCheckpoint.model_validate(data))
            if kind == "skipped":
                skipped = LiveSkipped.model_validate(data)
                if skipped.through <= self.after:
                    return None
                self.after = skipped.through
                return skipped
            if kind == "run":
                return self._run_changed(LiveRun.model_validate(data))
        except (ValueError, pydantic.ValidationError) as exc:
            raise WfdashError(
                f"the live stream sent a message this client cannot read: {exc}", code="bad_message"
            ) from None
        return None  # message types of newer servers

    def _checkpoint(self, checkpoint: LiveCheckpoint) -> LiveCheckpoint | None:
        if checkpoint.seq <= self.after:
            return None
        if checkpoint.seq != self.after + 1 and self._gap_at != self.after:
            self._gap_at = self.after
            raise Gap
        # Next in seq, or the same gap again straight from the database after a reconnect: then
        # no checkpoint lies between (seqs can have holes, e.g. in an imported run).
        self.after = checkpoint.seq
        return checkpoint

    def _run_changed(self, run: LiveRun) -> LiveRun | None:
        # The server checks every checkpoint committed before a status change was sent first.
        self.finished = run.status in TERMINAL_STATUSES
        state = (run.status, run.checkpoint_count)
        if state == self._run:
            return None  # the same status again, as each (re)connect begins with it
        self._run = state
        return run


class Reconnects:
    """How long a watch keeps reconnecting after losing its socket before it gives up."""

    def __init__(self, give_up_after: float):
        self.give_up_after = give_up_after
        self._lost_at: float | None = None
        self._attempts = 0

    def received(self) -> None:
        """A frame arrived: the connection works. (Only then: a server that accepts and closes
        at once must not be reconnected to at full speed forever.)"""
        self._lost_at = None
        self._attempts = 0

    def next_delay(self, why: BaseException) -> float:
        now = time.monotonic()
        if self._lost_at is None:
            self._lost_at = now
        if now - self._lost_at > self.give_up_after:
            raise ConnectionFailed(
                f"the live stream stayed unreachable for {self.give_up_after:.0f} s: {why}", code="connection"
            ) from why
        self._attempts += 1
        return min(0.05 * 2 ** (self._attempts - 1), 2.0)


def closed_for_good(exc: ConnectionClosed) -> WfdashError | None:
    """The error for a close the server means (its 44xx codes), or None to reconnect."""
    code = exc.rcvd.code if exc.rcvd is not None else None
    cls = CLOSE_CODES.get(code) if code is not None else None
    if cls is None:
        return None
    reason = exc.rcvd.reason if exc.rcvd is not None else ""
    return cls(reason or f"the server closed the live stream with {code}", status=None, code=f"socket_{code}")


def refused(exc: InvalidStatus) -> WfdashError | None:
    """A refused handshake: None when it looks transient (5xx: a restart, a proxy), else an
    error (the caller asks the API why first: daphne refuses with a bare 403)."""
    status = exc.response.status_code
    if status >= 500:
        return None
    return WfdashError(
        f"the server refused the live stream ({status}); is the server's host in ALLOWED_HOSTS?",
        status=status,
        code="socket_refused",
    )


def ws_url(base: httpx.URL, path: str) -> str:
    scheme = {"http": "ws", "https": "wss"}.get(base.scheme, base.scheme)
    return str(base.join(path).copy_with(scheme=scheme))


def origin(base: httpx.URL) -> Origin:
    # Channels' AllowedHostsOriginValidator refuses sockets without an Origin, browsers' or not.
    return Origin(f"{base.scheme}://{base.netloc.decode('ascii')}")
