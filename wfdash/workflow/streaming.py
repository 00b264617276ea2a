"""Events a running step streams (`ctx.write_event_to_stream`), and who listens to them.

`handler.stream_events()` reads them in order; a listener (the durable worker) is called
as each is written, with the step execution that wrote it, to relay it elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .events import Event


class StreamDelta(Event):
    """A piece of text a step streams, such as an LLM's tokens as they arrive."""

    delta: str


@dataclass(frozen=True, slots=True)
class StreamWrite:
    """One event written to a run's stream, and the step execution that wrote it."""

    event: Event
    # The step's name and its in-flight id (unique within the run); None outside a step.
    step: str | None
    execution: int | None
    # Which attempt of that execution (its retry policy runs it again under the same id).
    attempt: int


StreamListener = Callable[[StreamWrite], None]
