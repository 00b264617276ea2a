"""Code versions: a fingerprint of a workflow's code, and what changed between two of them.

A *manifest* describes a Workflow class as JSON: per step its source, the names of the
event types it accepts and returns, and a hash of those plus the JSON schemas of those
event types; per event type its JSON schema. Its digest (SHA-256 of the canonical JSON)
names the version: two processes running the same code compute the same digest.

Only the step functions' own source is covered: a change in a helper a step calls, or in a
library, leaves the digest unchanged.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
import textwrap
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .events import Event
from .serialization import EVENT_TAG
from .workflow import Workflow

MANIFEST_VERSION = 1
# Keys of a JSON schema that describe a field for people and do not change what loads.
_COSMETIC = frozenset(("title", "description", "examples", "default"))

_manifests: weakref.WeakKeyDictionary[type[Workflow], dict[str, Any]] = weakref.WeakKeyDictionary()


def canonical_digest(value: Any) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode()).hexdigest()


def manifest(workflow: type[Workflow] | Workflow) -> dict[str, Any]:
    """The manifest of a workflow class, computed once per class (the class's code is fixed
    once it is defined; a reloaded module makes a new class)."""
    cls = workflow if isinstance(workflow, type) else type(workflow)
    cached = _manifests.get(cls)
    if cached is None:
        cached = _manifests[cls] = _build(cls)
    return cached


def digest(workflow: type[Workflow] | Workflow) -> str:
    return str(manifest(workflow)["digest"])


def _build(cls: type[Workflow]) -> dict[str, Any]:
    instance = cls()  # validates the wiring and builds the event registry
    registry = instance.event_registry
    events = {name: event_schema(registry.get(name)) for name in registry.names()}
    steps: dict[str, Any] = {}
    for name, cfg in sorted(instance.steps.items()):
        accepts = sorted({t.__name__ for t in cfg.accepted_events})
        returns = sorted({t.__name__ for t in cfg.return_types})
        source = step_source(getattr(cls, name))
        touched = {n: events[n] for n in (*accepts, *returns) if n in events}
        steps[name] = {
            "source": source,
            "accepts": accepts,
            "returns": returns,
            "hash": canonical_digest({"source": source, "accepts": accepts, "returns": returns, "events": touched}),
        }
    body = {"version": MANIFEST_VERSION, "workflow": cls.__qualname__, "steps": steps, "events": events}
    return {**body, "digest": canonical_digest(body)}


def step_source(fn: Any) -> str:
    """The step's source with its decorators, dedented; for a function without readable
    source (built at run time), its qualified name and a hash of its bytecode."""
    fn = inspect.unwrap(fn)
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        blob = repr((code.co_code, code.co_consts, code.co_names)).encode() if code is not None else b""
        name = getattr(fn, "__qualname__", repr(fn))
        return f"# source unavailable: {name}\n# bytecode sha256: {hashlib.sha256(blob).hexdigest()}\n"


def event_schema(cls: type[Event]) -> dict[str, Any]:
    """The event type's pydantic JSON schema; for fields pydantic cannot describe (arbitrary
    types), one entry per field naming its annotation."""
    try:
        return cls.model_json_schema()
    except Exception:
        fields = cls.model_fields
        return {
            "title": cls.__name__,
            "type": "object",
            "properties": {name: {"annotation": repr(f.annotation)} for name, f in fields.items()},
            "required": sorted(name for name, f in fields.items() if f.is_required()),
            "additionalProperties": cls.model_config.get("extra") != "forbid",
        }


# -- what changed ------------------------------------------------------------------


@dataclass(frozen=True)
class StepChange:
    step: str
    status: Literal["changed", "added", "removed"]
    diff: str


def changed_steps(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[StepChange]:
    """Steps whose fingerprint differs between two manifests, with a unified diff of their
    source ("" when only the schemas of their events changed)."""
    before, after = old.get("steps", {}), new.get("steps", {})
    out: list[StepChange] = []
    for name in sorted({*before, *after}):
        a, b = before.get(name), after.get(name)
        if a is not None and b is not None and a.get("hash") == b.get("hash"):
            continue
        status: Literal["changed", "added", "removed"] = "added" if a is None else "removed" if b is None else "changed"
        source_a = (a or {}).get("source", "")
        source_b = (b or {}).get("source", "")
        lines = difflib.unified_diff(
            source_a.splitlines(keepends=True),
            source_b.splitlines(keepends=True),
            fromfile=f"{name} (checkpoint's run)",
            tofile=f"{name} (now)",
        )
        out.append(StepChange(name, status, "".join(_terminated(lines))))
    return out


def _terminated(lines: Iterable[str]) -> Iterable[str]:
    for line in lines:
        yield line if line.endswith("\n") else line + "\n"


@dataclass(frozen=True)
class SchemaChange:
    """One difference in an event type that a checkpoint's state holds."""

    event: str
    change: str
    severity: Literal["error", "info"]
    field: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def schema_changes(old: Mapping[str, Any], new: Mapping[str, Any], events: Iterable[str]) -> list[SchemaChange]:
    """How `events` (type names a checkpoint's state holds) changed from manifest `old` to
    `new`. Errors are changes that may stop the stored events from loading: the type or a
    field removed, a field's type changed, a field newly required. A field added with a
    default loads fine and is reported as info."""
    out: list[SchemaChange] = []
    before, after = old.get("events", {}), new.get("events", {})
    for name in sorted(set(events)):
        if name not in before:
            continue  # not in the old manifest: nothing to compare (a built-in, or unknown)
        if name not in after:
            out.append(SchemaChange(name, "the event type no longer exists in the workflow", "error"))
            continue
        out.extend(_field_changes(name, before[name], after[name]))
    return out


def _field_changes(event: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[SchemaChange]:
    out: list[SchemaChange] = []
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    # pydantic writes `false` for extra="forbid" (Event's default) and omits it for "ignore".
    extra_allowed = new.get("additionalProperties", True) is not False
    for field in sorted({*old_props, *new_props}):
        if field not in new_props:
            if extra_allowed:
                out.append(SchemaChange(event, f"field {field!r} removed (kept as an extra value)", "info", field))
            else:
                out.append(SchemaChange(event, f"field {field!r} removed", "error", field))
            continue
        if field not in old_props:
            if field in new_required:
                out.append(SchemaChange(event, f"field {field!r} added and required", "error", field))
            else:
                out.append(SchemaChange(event, f"field {field!r} added with a default", "info", field))
            continue
        was = _shape(old_props[field], old.get("$defs", {}))
        now = _shape(new_props[field], new.get("$defs", {}))
        if was != now:
            out.append(
                SchemaChange(event, f"field {field!r} changed type: {_brief(was)} → {_brief(now)}", "error", field)
            )
        elif field in new_required and field not in old_required:
            out.append(SchemaChange(event, f"field {field!r} is now required", "error", field))
    return out


def _shape(schema: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """A field's schema with references resolved and descriptive keys dropped: what decides
    whether a stored value still validates."""
    if depth > 20:
        return "…"
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _shape(defs.get(ref.removeprefix("#/$defs/"), {}), defs, depth + 1)
        return {k: _shape(v, defs, depth + 1) for k, v in schema.items() if k not in _COSMETIC and k != "$defs"}
    if isinstance(schema, list):
        return [_shape(v, defs, depth + 1) for v in schema]
    return schema


def _brief(shape: Any) -> str:
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 120 else text[:117] + "..."


# -- what a checkpoint holds -------------------------------------------------------


@dataclass
class Pending:
    """The event types a checkpoint's complete state holds, and the steps they wait for."""

    event_types: set[str]
    # Steps with queued or in-flight events: they run again when the state is restored.
    steps: list[str]
    # Outputs still being checkpointed when it was taken: routed afresh on restore.
    unsent_types: list[str]


def pending(ctx_state: Mapping[str, Any]) -> Pending:
    """Read event type names out of a complete state (`ctx_state` form) without decoding
    any event: names only, so a state the current code cannot load is still described."""
    types: set[str] = set()
    steps: dict[str, None] = {}
    unsent: dict[str, None] = {}

    def note(encoded: Any) -> str | None:
        if isinstance(encoded, Mapping) and isinstance(encoded.get("type"), str):
            types.add(encoded["type"])
            return str(encoded["type"])
        return None

    for entry in ctx_state.get("in_flight", []) or []:
        if isinstance(entry, Mapping):
            note(entry.get("event"))
            if isinstance(entry.get("step"), str):
                steps[entry["step"]] = None
    for entry in ctx_state.get("queued", []) or []:
        if isinstance(entry, Mapping):
            for event in entry.get("events", []) or []:
                note(event)
            if isinstance(entry.get("step"), str):
                steps[entry["step"]] = None
    for event in ctx_state.get("unsent", []) or []:
        if (name := note(event)) is not None:
            unsent[name] = None
    for entry in ctx_state.get("collect", []) or []:
        if isinstance(entry, Mapping):
            for event in entry.get("events", []) or []:
                note(event)
    for value in (ctx_state.get("store", {}) or {}).values():
        if isinstance(value, Mapping) and EVENT_TAG in value and len(value) == 1:
            note(value[EVENT_TAG])
    return Pending(types, list(steps), list(unsent))
