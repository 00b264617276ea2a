"""`AsyncClient`: the API from asyncio code (the same calls as `Client`, awaited)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from typing import Any, Unpack

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

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


class AsyncClient:
    """`Client`'s asyncio twin: the same methods, awaited; `checkpoints()`, `runs()` and
    `watch()` are async iterators. Use `async with`, or call `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        reconnect_for: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._token = token
        self.reconnect_for = reconnect_for
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": _core.USER_AGENT},
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do[T](self, call: _core.Call[T]) -> T:
        try:
            response = await self._http.send(_core.request(self._http, call))
        except httpx.TransportError as exc:
            raise _core.unreachable(exc) from exc
        return _core.result(call, response)

    # -- runs ---------------------------------------------------------------------------

    async def start(self, workflow: str, /, **input: Any) -> RunOut:
        return await self._do(Routes.start(workflow, input))

    async def get(self, run_id: Id) -> RunOut:
        return await self._do(Routes.get(run_id))

    async def wait(
        self,
        run_id: Id,
        timeout: float | None = None,
        *,
        until: Collection[str] = TERMINAL_STATUSES,
        poll_interval: float = 1.0,
    ) -> RunOut:
        """See `Client.wait`."""
        deadline = _core.Deadline(timeout)
        delays = _core.delays(min(0.05, poll_interval), poll_interval)
        while True:
            run = None
            try:
                run = await self.get(run_id)
            except WfdashError as exc:
                if not _core.retried_while_waiting(exc):
                    raise
            pause = _core.waited(run, until, deadline, run_id, next(delays))
            if pause is None:
                assert run is not None
                return run
            await asyncio.sleep(pause)

    async def runs(self, **filters: Unpack[RunQuery]) -> AsyncIterator[RunListItem]:
        before: str | None = None
        while True:
            page = await self._do(Routes.runs_page(dict(filters), before))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            before = page.next_cursor

    async def cancel(self, run_id: Id) -> RunOut:
        return await self._do(Routes.cancel(run_id))

    async def respond(self, run_id: Id, response: str) -> RunOut:
        return await self._do(Routes.respond(run_id, response))

    # -- checkpoints --------------------------------------------------------------------

    async def checkpoints(self, **filters: Unpack[CheckpointQuery]) -> AsyncIterator[CheckpointOut]:
        before: str | None = None
        while True:
            page = await self._do(Routes.checkpoints_page(dict(filters), before))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            before = page.next_cursor

    async def run_checkpoints(self, run_id: Id, after: int = 0) -> AsyncIterator[CheckpointOut]:
        while True:
            rows = await self._do(Routes.run_checkpoints(run_id, after))
            for row in rows:
                yield row
            if len(rows) < _core.RUN_CHECKPOINTS_PAGE:
                return
            after = rows[-1].seq

    async def checkpoint(self, checkpoint_id: Id) -> CheckpointDetailOut:
        return await self._do(Routes.checkpoint(checkpoint_id))

    async def fork(
        self, checkpoint_id: Id, *, output_event: dict[str, Any] | None = None, store: dict[str, Any] | None = None
    ) -> RunOut:
        return await self._do(Routes.fork(checkpoint_id, output_event, store))

    async def fork_preview(self, checkpoint_id: Id) -> ForkPreviewOut:
        return await self._do(Routes.fork_preview(checkpoint_id))

    async def sweep(
        self,
        checkpoint_id: Id,
        variants: list[dict[str, Any]] | None = None,
        *,
        grid: dict[str, Any] | None = None,
        name: str = "",
    ) -> SweepOut:
        return await self._do(Routes.sweep(checkpoint_id, variants, grid, name))

    async def experiment(self, experiment_id: ExperimentId) -> ExperimentOut:
        return await self._do(Routes.experiment(experiment_id))

    async def workflows(self) -> list[WorkflowOut]:
        return await self._do(Routes.workflows())

    # -- live ---------------------------------------------------------------------------

    async def watch(self, run_id: Id, after: int | None = None) -> AsyncIterator[LiveMessage]:
        """See `Client.watch`."""
        cursor = _core.Cursor(run_id, after)
        reconnects = _core.Reconnects(self.reconnect_for)
        base = self._http.base_url
        while True:
            why: BaseException
            try:
                async with connect(
                    _core.ws_url(base, cursor.path()),
                    origin=_core.origin(base),
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    user_agent_header=_core.USER_AGENT,
                    open_timeout=self._timeout,
                ) as ws:
                    while True:
                        frame = await ws.recv()
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
                    await self.get(run_id)  # raises the API's reason (401, 403, 404), if there is one
                    raise error from None
                why = exc
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                why = exc
            await asyncio.sleep(reconnects.next_delay(why))
