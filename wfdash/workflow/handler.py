"""WorkflowHandler: what `Workflow.run()` returns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

from .context import STREAM_END, Context
from .events import Event

if TYPE_CHECKING:
    from .workflow import _Runner


class WorkflowHandler:
    """Awaitable handle on a running workflow: result, events, cancellation."""

    def __init__(self, runner: _Runner, task: asyncio.Task[Any]) -> None:
        self._runner = runner
        self._task = task

    @property
    def run_id(self) -> str:
        return self._runner.ctx.run_id

    @property
    def ctx(self) -> Context:
        return self._runner.ctx

    def __await__(self) -> Generator[Any, None, Any]:
        return self._task.__await__()

    def done(self) -> bool:
        return self._task.done()

    def result(self) -> Any:
        return self._task.result()

    def exception(self) -> BaseException | None:
        return self._task.exception()

    async def stream_events(self) -> AsyncIterator[Event]:
        """Events written with `ctx.write_event_to_stream`, then the StopEvent; ends with the run."""
        stream = self._runner.ctx._stream
        while True:
            item = await stream.get()
            if item is STREAM_END:
                # Re-arm the sentinel so a second reader also terminates.
                stream.put_nowait(STREAM_END)
                return
            yield item

    def suspend(self) -> None:
        """Let running steps finish to their checkpoint, start nothing new, then end the run
        with WorkflowSuspendedError; resume it later from its latest checkpoint."""
        self._runner.drain()

    def on_idle(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever the run is idle waiting for a human answer."""
        self._runner.on_idle = callback

    async def cancel_run(self) -> None:
        """Stop the run; awaiting the handler then raises WorkflowCancelledError."""
        self._runner.cancel()
        try:
            await asyncio.shield(self._task)
        except BaseException:  # the run's own outcome; the caller asked to cancel
            pass
