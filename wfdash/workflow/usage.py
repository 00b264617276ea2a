"""Per-step usage records (LLM calls): collected while a step runs, saved with its checkpoint."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# Each step runs in its own task, hence its own copy of this variable.
_current: ContextVar[list[dict[str, Any]] | None] = ContextVar("wfdash_step_usage", default=None)


def record_usage(entry: dict[str, Any]) -> None:
    """Attach `entry` (JSON-ready) to the step that is running; ignored outside a step."""
    records = _current.get()
    if records is not None:
        records.append(entry)


def begin_step() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    _current.set(records)
    return records
