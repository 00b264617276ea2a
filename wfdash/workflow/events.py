"""Event types: the messages steps receive and return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr


class Event(BaseModel):
    """Base class of every event; subclasses declare typed fields."""

    # Unknown fields are an error, so an edited event in a fork cannot carry typos.
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # JSON form cached at the first snapshot that needs it; events are treated
    # as immutable once dispatched.
    _encoded: dict[str, Any] | None = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # Fields only: pydantic would also compare the private encoding cache.
        if not isinstance(other, Event):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.__dict__ == other.__dict__
            and self.__pydantic_extra__ == other.__pydantic_extra__
        )

    __hash__ = None  # type: ignore[assignment]


class StartEvent(Event):
    """Starts a run; the keyword arguments of `run()` become its attributes."""

    model_config = ConfigDict(extra="allow")


class StopEvent(Event):
    """Ends a run; `result` is what awaiting the handler returns."""

    model_config = ConfigDict(extra="allow")

    result: Any = None


class InputRequiredEvent(Event):
    """Returned by a step that needs a human answer; it goes to the event stream."""

    model_config = ConfigDict(extra="allow")

    prefix: str = ""


class HumanResponseEvent(Event):
    """The human's answer, sent to the run with `handler.ctx.send_event()`."""

    model_config = ConfigDict(extra="allow")

    response: str = ""


BUILTIN_EVENTS: tuple[type[Event], ...] = (
    StartEvent,
    StopEvent,
    InputRequiredEvent,
    HumanResponseEvent,
)
