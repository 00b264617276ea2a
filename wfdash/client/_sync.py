"""`Client`: the API from ordinary (blocking) Python code."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from typing import Any, Unpack

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from . import _core
from ._core import CheckpointQuery, Id, Routes, RunQuery
from .errors import WfdashError
from .models import (
    TERMINAL_STATUSES,
    CheckpointDetailOut,
    CheckpointOut,
    ExperimentId,
    ExperimentOut,
    ForkPreviewOut,
    LiveMessage,
    RunListItem,
    RunOut,
    SweepOut,
    WorkflowOut,
)


class Client:
    """wfdash's JSON API and live stream, with an API token (`manage.py createtoken USER`).

    Every method raises a `WfdashError` subclass carrying the API's error code; answers are
    the API's own pydantic schemas. Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        reconnect_for: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        """`timeout` bounds each request and socket handshake (seconds); a watch whose socket
        drops keeps reconnecting for `reconnect_for` seconds before it raises."""
        self._token = token
        self.reconnect_for = reconnect_for
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": _core.USER_AGENT},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do[T](self, call: _core.Call[T]) -> T:
        try:
            response = self._http.send(_core.request(self._http, call))
        except httpx.TransportError as exc:
            raise _core.unreachable(exc) from exc
        return _core.result(call, response)

    # -- runs ---------------------------------------------------------------------------

    def start(self, workflow: str, /, **input: Any) -> RunOut:
        """Queue a run of `workflow` with its start event's fields; a worker runs it."""
        return self._do(Routes.start(workflow, input))

    def get(self, run_id: Id) -> RunOut:
        return self._do(Routes.get(run_id))

    def wait(
        self,
        run_id: Id,
        timeout: float | None = None,
        *,
        until: Collection[str] = TERMINAL_STATUSES,
        poll_interval: float = 1.0,
    ) -> RunOut:
        """The run once its status is in `until` (by default: finished, whatever the outcome).

        Asks every `poll_interval` seconds at most (sooner at first), riding out connection
        failures and 5xx; raises `WaitTimeout` (a `TimeoutError`) after `timeout` seconds.
        """
        deadline = _core.Deadline(timeout)
        delays = _core.delays(min(0.05, poll_interval), poll_interval)
        while True:
            run = None
            try:
                run = self.get(run_id)
            except WfdashError as exc:
                if not _core.retried_while_waiting(exc):
                    raise
            pause = _core.waited(run, until, deadline, run_id, next(delays))
            if pause is None:
                assert run is not None
                return run
            time.sleep(pause)

    def runs(self, **filters: Unpack[RunQuery]) -> Iterator[RunListItem]:
        """Runs matching `filters`, newest first, fetched a page at a time as you iterate."""
        before: str | None = None
        while True:
            page = self._do(Routes.runs_page(dict(filters), before))
            yield from page.items
            if not page.next_cursor:
                return
            before = page.next_cursor

    def cancel(self, run_id: Id) -> RunOut:
        """Cancel a queued, running or waiting run (`Conflict` once it has finished)."""
        return self._do(Routes.cancel(run_id))

    def respond(self, run_id: Id, response: str) -> RunOut:
        """Answer the question a waiting run asks (its InputRequiredEvent)."""
        return self._do(Routes.respond(run_id, response))

    # -- checkpoints --------------------------------------------------------------------

    def checkpoints(self, **filters: Unpack[CheckpointQuery]) -> Iterator[CheckpointOut]:
        """The explorer: checkpoints matching `filters`, newest first, a page at a time."""
        before: str | None = None
        while True:
            page = self._do(Routes.checkpoints_page(dict(filters), before))
            yield from page.items
            if not page.next_cursor:
                return
            before = page.next_cursor

    def run_checkpoints(self, run_id: Id, after: int = 0) -> Iterator[CheckpointOut]:
        """One run's checkpoints after seq `after`, in seq order, a page at a time."""
        while True:
            rows = self._do(Routes.run_checkpoints(run_id, after))
            yield from rows
            if len(rows) < _core.RUN_CHECKPOINTS_PAGE:
                return
            after = rows[-1].seq

    def checkpoint(self, checkpoint_id: Id) -> CheckpointDetailOut:
        """A checkpoint with its events and its complete state."""
        return self._do(Routes.checkpoint(checkpoint_id))

    def fork(
        self, checkpoint_id: Id, *, output_event: dict[str, Any] | None = None, store: dict[str, Any] | None = None
    ) -> RunOut:
        """A new run from `checkpoint_id`, its output event's fields and store keys edited."""
        return self._do(Routes.fork(checkpoint_id, output_event, store))

    def fork_preview(self, checkpoint_id: Id) -> ForkPreviewOut:
        """What a fork of `checkpoint_id` would run under the server's current code."""
        return self._do(Routes.fork_preview(checkpoint_id))

    def sweep(
        self,
        checkpoint_id: Id,
        variants: list[dict[str, Any]] | None = None,
        *,
        grid: dict[str, Any] | None = None,
        name: str = "",
    ) -> SweepOut:
        """One fork per variant (`{"output_event"?, "store"?}`), or per point of `grid`, as one
        experiment (named `name`)."""
        return self._do(Routes.sweep(checkpoint_id, variants, grid, name))

    def experiment(self, experiment_id: ExperimentId) -> ExperimentOut:
        return self._do(Routes.experiment(experiment_id))

    def workflows(self) -> list[WorkflowOut]:
        """The registered workflows: steps, and their events' JSON schemas."""
        return self._do(Routes.workflows())

    # -- live ---------------------------------------------------------------------------

    def watch(self, run_id: Id, after: int | None = None) -> Iterator[LiveMessage]:
        """The run's checkpoints after seq `after` and its status changes, as they happen,
        until it finishes.

        Each checkpoint comes once and in order, across reconnects; a `LiveSkipped` stands
        for checkpoints the server left out of a long catch-up (the newest follow).
        """
        cursor = _core.Cursor(run_id, after)
        reconnects = _core.Reconnects(self.reconnect_for)
        base = self._http.base_url
        while True:
            why: BaseException
            try:
                with connect(
                    _core.ws_url(base, cursor.path()),
                    origin=_core.origin(base),
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    user_agent_header=_core.USER_AGENT,
                    open_timeout=self._timeout,
                ) as ws:
                    while True:
                        frame = ws.recv()
                        reconnects.received()
                        try:
                            message = cursor.accept(frame)
                        except _core.Gap as gap:
                            why = gap
                            break
                        if message is not None:
                            yield message
                        if cursor.finished:
                            return
            except ConnectionClosed as exc:
                if (error := _core.closed_for_good(exc)) is not None:
                    raise error from None
                why = exc
            except InvalidStatus as exc:
                if (error := _core.refused(exc)) is not None:
                    self.get(run_id)  # raises the API's reason (401, 403, 404), if there is one
                    raise error from None
                why = exc
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                why = exc
            time.sleep(reconnects.next_delay(why))
