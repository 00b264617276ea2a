"""JSON codec for events and store values, resolved through a workflow's event registry.

Stored data only ever names an event type; the class comes from the registry a
workflow builds from its own steps, so nothing is imported by a name read back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from .errors import SerializationError, WorkflowValidationError
from .events import Event

EVENT_TAG = "__event__"
IMMUTABLE = (str, int, float, bool, type(None))


class EventRegistry:
    """Event classes a workflow knows, by class name."""

    def __init__(self, types: Iterable[type[Event]]) -> None:
        self._by_name: dict[str, type[Event]] = {}
        for cls in types:
            known = self._by_name.get(cls.__name__)
            if known is not None and known is not cls:
                raise WorkflowValidationError(
                    f"two event classes share the name '{cls.__name__}': {known.__module__} and {cls.__module__}"
                )
            self._by_name[cls.__name__] = cls

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> type[Event]:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise SerializationError(f"unknown event type {name!r}") from None

    def name_of(self, cls: type[Event]) -> str:
        if self._by_name.get(cls.__name__) is not cls:
            raise SerializationError(f"event type {cls.__name__!r} is not part of this workflow")
        return cls.__name__

    def decode(self, payload: Any) -> Event:
        """Rebuild an event from `{"type": name, "data": {...}}`."""
        if not isinstance(payload, Mapping) or not isinstance(payload.get("data"), Mapping):
            raise SerializationError("an encoded event must be {'type': ..., 'data': {...}}")
        cls = self.get(payload.get("type"))  # type: ignore[arg-type]
        return validate_event(cls, payload["data"])


def validate_event(cls: type[Event], data: Mapping[str, Any]) -> Event:
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise SerializationError(f"invalid {cls.__name__}: {problems}") from None


def encode_event(ev: Event) -> dict[str, Any]:
    """`{"type": class name, "data": JSON fields}`; cached on the event."""
    # Straight from pydantic's private dict: attribute access there costs a microsecond.
    private = ev.__pydantic_private__
    cached = private.get("_encoded") if private else None
    if cached is not None:
        return cached
    try:
        data = ev.model_dump(mode="json")
    except Exception as exc:
        raise SerializationError(f"{type(ev).__name__} is not JSON-serializable: {exc}") from exc
    encoded = {"type": type(ev).__name__, "data": data}
    ev._encoded = encoded
    return encoded


def encode_value(key: str, value: Any) -> Any:
    """A JSON-ready deep copy of a store value; events are tagged with their type."""
    if isinstance(value, IMMUTABLE):
        return value
    if isinstance(value, Event):
        # Not the cached form: a step may have changed an event it keeps in the store.
        try:
            return {EVENT_TAG: {"type": type(value).__name__, "data": value.model_dump(mode="json")}}
        except Exception as exc:
            raise SerializationError(f"store value for key {key!r} is not JSON-serializable: {exc}") from None
    try:
        return json.loads(json.dumps(value, default=_reject))
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"store value for key {key!r} is not JSON-serializable: {exc}") from None


def decode_value(registry: EventRegistry, value: Any) -> Any:
    if isinstance(value, dict) and EVENT_TAG in value and len(value) == 1:
        return registry.decode(value[EVENT_TAG])
    return value


def _reject(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")
