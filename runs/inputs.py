"""Validation of what users send: start inputs, fork edits, human answers.

Each function raises InputError with one line naming what is wrong, before
anything is written.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from wfdash.workflow import Event, HumanResponseEvent, InputRequiredEvent, StopEvent, Workflow
from wfdash.workflow.checkpointer import Checkpoint
from wfdash.workflow.errors import SerializationError
from wfdash.workflow.serialization import decode_value, encode_event, encode_value, validate_event

from . import registry


class InputError(ValueError):
    """Bad user input; the message is shown as is. `field` names where it is, when known
    (`output_event.n`, `store.temperature`)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class WorkflowUnavailable(InputError):
    """The workflow cannot run on this server as configured (e.g. it needs an LLM and none is set)."""


class UnknownCheckpoint(InputError):
    """No checkpoint has the id given (the API answers 404)."""


class CorruptCheckpoint(InputError):
    """The checkpoint's stored state cannot be restored (the API answers 409 `corrupt`)."""


# Deeper JSON than this is refused: nothing legitimate nests so deep, and Python's
# recursive encoders and validators fail on 100,000 levels.
MAX_DEPTH = 64


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has only finite numbers)")


def loads(text: str | bytes) -> Any:
    """json.loads refusing NaN and ±Infinity (Python's json reads them; no database's JSON
    column stores them): ValueError, as for any other text that is not JSON."""
    return json.loads(text, parse_constant=_no_constant)


def parse_json_object(raw: str | bytes | None, what: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InputError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{what} is nested too deeply (at most {MAX_DEPTH} levels)") from None
    if not isinstance(value, dict):
        raise InputError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def reject_nul(value: Any, what: str) -> None:
    """Refuse what no database stores faithfully, on every database: NUL characters
    (PostgreSQL), lone surrogates (not UTF-8: every page showing them would fail), NaN and
    ±Infinity (not JSON: a JSON column refuses them) and nesting deeper than MAX_DEPTH."""
    # Each item's path is a linked (parent, key) pair, spelt out only for a refusal.
    stack: list[tuple[Any, int, Any]] = [(value, 0, None)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InputError(f"{what} must not contain NUL (\\u0000) characters")
            try:
                item.encode()
            except UnicodeEncodeError:
                raise InputError(f"{what} must not contain lone surrogates (such as \\ud800)") from None
        elif isinstance(item, float) and not math.isfinite(item):
            # `field` is where it is inside `value` (`a.0.b`), for callers to prefix.
            where = _spell(path)
            at = f" (at {where})" if where else ""
            name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            raise InputError(f"{what} must not contain {name} (JSON numbers are finite){at}", where or None)
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise InputError(f"{what} is nested too deeply (at most {MAX_DEPTH} levels)")
            if isinstance(item, dict):
                stack.extend((key, depth + 1, path) for key in item)
                stack.extend((child, depth + 1, (path, key)) for key, child in item.items())
            else:
                stack.extend((child, depth + 1, (path, i)) for i, child in enumerate(item))


def _spell(path: Any) -> str:
    keys: list[str] = []
    while path is not None:
        path, key = path
        keys.append(str(key)[:100])
    return ".".join(reversed(keys))


def workflow_named(name: str) -> Workflow:
    try:
        return registry.get_workflow(name)
    except registry.UnknownWorkflow as exc:
        raise InputError(str(exc)) from None


def unavailable_reason(workflow: Workflow) -> str | None:
    """Why `workflow` cannot run here, or None: a workflow holding an `LLM` needs one configured."""
    from wfdash import llm

    if llm.is_configured():
        return None
    for klass in type(workflow).__mro__:
        if any(isinstance(value, llm.LLM) for value in vars(klass).values()):
            return f"this workflow calls an LLM, and {llm.NOT_CONFIGURED}"
    return None


def start_event(workflow: Workflow, fields: dict[str, Any]) -> dict[str, Any]:
    """The encoded start event for `fields`, validated against the workflow's start event class;
    refused when the workflow cannot run here (a run that would fail at its first step)."""
    if reason := unavailable_reason(workflow):
        raise WorkflowUnavailable(reason)
    reject_nul(fields, "the input")
    try:
        ev = validate_event(workflow.start_event_class, fields)
        return encode_event(ev)
    except SerializationError as exc:
        raise InputError(str(exc)) from None


def fork_edits(workflow: Workflow, checkpoint: Checkpoint, edit: Any, store: Any) -> dict[str, Any]:
    """Validated edits for a fork of `checkpoint`: `edit` is the new output event's fields, or
    {"type", "data"}; `store` values to override, decoded through the workflow's registry as
    the fork's restore will decode them, before anything is written."""
    output_event = checkpoint.output_event
    if edit == {} and output_event is None:
        edit = None  # the edit-and-fork page's empty box: nothing to edit
    edits: dict[str, Any] = {}
    _reject_nul_at(edit, "the output event", "output_event")
    _reject_nul_at(store, "the store edits", "store")
    if edit is not None:
        if not isinstance(edit, dict):
            raise InputError("the output event must be a JSON object", "output_event")
        reg = workflow.event_registry
        where = "output_event"
        if set(edit) == {"type", "data"}:
            if not isinstance(edit["type"], str) or edit["type"] not in reg:
                raise InputError(f"unknown event type {edit['type']!r} for this workflow", "output_event.type")
            cls = reg.get(edit["type"])
            data, where = edit["data"], "output_event.data"
        elif output_event is not None:
            cls, data = type(output_event), edit
        else:
            raise InputError('this checkpoint has no output event; give {"type": ..., "data": {...}}', "output_event")
        if not isinstance(data, dict):
            raise InputError("the output event's data must be a JSON object", where)
        if not workflow.accepting_steps(cls) and not issubclass(cls, StopEvent | InputRequiredEvent):
            raise InputError(f"no step of this workflow accepts {cls.__name__}", "output_event")
        try:
            edits["output_event"] = encode_event(validate_event(cls, data))
        except SerializationError as exc:
            raise InputError(str(exc), _invalid_field(cls, data, where)) from None
    if store is not None:
        if not isinstance(store, dict):
            raise InputError("store edits must be a JSON object", "store")
        edits["store"] = {}
        for key, value in store.items():
            try:
                edits["store"][str(key)] = encode_value(str(key), value)
                # The checkpoint's own state was checked when it was loaded; the edited values are
                # decoded here as the fork's restore will decode them (events by registry name only).
                decode_value(workflow.event_registry, edits["store"][str(key)])
            except SerializationError as exc:
                raise InputError(f"store edits: {exc}", f"store.{key}") from None
    return edits


def _reject_nul_at(value: Any, what: str, field: str) -> None:
    try:
        reject_nul(value, what)
    except InputError as exc:
        raise InputError(str(exc), f"{field}.{exc.field}" if exc.field else field) from None


def _invalid_field(cls: type[Event], data: dict[str, Any], where: str) -> str:
    """Where pydantic found the first problem in `data` (only called once validation failed)."""
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"] if exc.errors() else ()
        return ".".join([where, *(str(p) for p in loc)])
    return where


def human_response(workflow: Workflow, fields: dict[str, Any]) -> dict[str, Any]:
    reject_nul(fields, "the answer")
    try:
        return encode_event(validate_event(HumanResponseEvent, fields))
    except SerializationError as exc:
        raise InputError(str(exc)) from None
