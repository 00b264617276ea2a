"""State records: how a checkpoint's context is stored, and how its full state is rebuilt.

A checkpoint stores what its step consumed, produced and changed (a *delta*), or now and
then the whole state (a *full* record), so bytes per checkpoint do not depend on how many
events are queued, in flight or buffered for a fan-in. The context's complete state at a
checkpoint (`ctx_state`, the seed's meaning) is the nearest full record at or before it
plus the deltas after that, applied in seq order.

Every pending event is an *entry* with a run-unique id: `[id, kind, where, event]`, kind
`q` (queued for step `where`), `f` (in flight in step `where`), `u` (output of a step still
checkpointing; `where` is None) or `c` (in the buffer of fan-in collector `where`, an id
whose expected type names are recorded once, under "collectors", run-length encoded:
`[["Mapped", 3000]]` for `[Mapped] * 3000`).

    full:  {"version": 2, "full": true, "store": {key: value}, "entries": [entry, ...],
            "collectors": {id: [[name, count], ...]}, "waiters": [...], "awaiting_input": bool}
    delta: {"version": 2, "store"?: {key: value}, "add"?: [entry, ...], "del"?: [id, ...],
            "move"?: [[id, kind, where], ...], "collectors"?: {id: [[name, count], ...]} (new
            ones), "waiters"?: [...], "awaiting_input"?: bool}

Records of version 1 (written before deltas existed) are full states in `ctx_state` form.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import SerializationError

RECORD_VERSION = 2
# A fan-in may expect this many events at most (a forged record cannot ask for more memory).
MAX_EXPECTED = 10_000_000
# The form of `ctx_state`: the complete state, as `Context.restore` reads it.
STATE_VERSION = 1

QUEUED, IN_FLIGHT, UNSENT, COLLECT = "q", "f", "u", "c"
_KINDS = frozenset((QUEUED, IN_FLIGHT, UNSENT, COLLECT))
_FULL_KEYS = frozenset(("version", "full", "store", "entries", "collectors", "waiters", "awaiting_input"))
_DELTA_KEYS = frozenset(("version", "store", "add", "del", "move", "collectors", "waiters", "awaiting_input"))


def is_full(record: Mapping[str, Any]) -> bool:
    """True for a record that needs no earlier one: a full record or a legacy snapshot."""
    return record.get("version") == STATE_VERSION or bool(record.get("full"))


class State:
    """A complete state being rebuilt: a full record with deltas applied to it."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        if not isinstance(record, Mapping):
            raise SerializationError("a state record must be an object")
        if record.get("version") == STATE_VERSION:
            self.legacy: dict[str, Any] | None = dict(record)
            return
        self.legacy = None
        if record.get("version") != RECORD_VERSION or not record.get("full"):
            raise SerializationError("a state must start from a full record (version 2)")
        _known_keys(record, _FULL_KEYS)
        store = record.get("store")
        if not isinstance(store, Mapping):
            raise SerializationError("a full record needs a 'store' object")
        self.store: dict[str, Any] = dict(store)
        self.collectors: dict[str, tuple[str, ...]] = {}
        self._add_collectors(record)
        self.entries: dict[int, list[Any]] = {}
        for entry in _list(record, "entries"):
            eid, kind, where, event = _entry(entry)
            self.entries[eid] = [kind, where, event]
        self.waiters: list[Any] = list(_list(record, "waiters"))
        self.awaiting_input = bool(record.get("awaiting_input", False))

    def apply(self, delta: Mapping[str, Any]) -> None:
        """Apply the next checkpoint's record (a full one replaces everything)."""
        if not isinstance(delta, Mapping):
            raise SerializationError("a state record must be an object")
        if is_full(delta):
            self.__init__(delta)  # type: ignore[misc]
            return
        if self.legacy is not None:
            raise SerializationError("a delta cannot follow a version 1 snapshot")
        if delta.get("version") != RECORD_VERSION:
            raise SerializationError("unsupported state record version")
        _known_keys(delta, _DELTA_KEYS)
        store = delta.get("store", {})
        if not isinstance(store, Mapping):
            raise SerializationError("a delta's 'store' must be an object")
        self.store.update(store)
        self._add_collectors(delta)
        for eid in _list(delta, "del"):
            if self.entries.pop(eid, None) is None:
                raise SerializationError(f"a delta removes unknown entry {eid!r}")
        for move in _list(delta, "move"):
            if not isinstance(move, list) or len(move) != 3 or move[0] not in self.entries or move[1] not in _KINDS:
                raise SerializationError(f"malformed move {move!r}")
            self.entries[move[0]][:2] = [move[1], move[2]]
        for entry in _list(delta, "add"):
            eid, kind, where, event = _entry(entry)
            self.entries[eid] = [kind, where, event]
        if "waiters" in delta:
            self.waiters = list(_list(delta, "waiters"))
        if "awaiting_input" in delta:
            self.awaiting_input = bool(delta["awaiting_input"])

    def ctx_state(self) -> dict[str, Any]:
        """The complete state in `ctx_state` form (version 1), entries in id order."""
        if self.legacy is not None:
            return dict(self.legacy)
        queued: dict[str, list[Any]] = {}
        # By collector id: hashing a collector's (long) tuple of names per entry is slow.
        collect: dict[Any, list[Any]] = {}
        in_flight: list[dict[str, Any]] = []
        unsent: list[Any] = []
        for _, (kind, where, event) in sorted(self.entries.items()):
            if kind == QUEUED:
                queued.setdefault(where, []).append(event)
            elif kind == IN_FLIGHT:
                in_flight.append({"step": where, "event": event})
            elif kind == UNSENT:
                unsent.append(event)
            else:
                collect.setdefault(where, []).append(event)
        collected: list[dict[str, Any]] = []
        for cid, events in collect.items():
            names = self.collectors.get(str(cid))
            if names is None:
                raise SerializationError(f"an entry names unknown collector {cid!r}")
            collected.append({"expected": list(names), "events": events})
        return {
            "version": STATE_VERSION,
            "store": dict(self.store),
            "queued": [{"step": step, "events": events} for step, events in queued.items()],
            "in_flight": in_flight,
            "unsent": unsent,
            "collect": collected,
            "waiters": list(self.waiters),
            "awaiting_input": self.awaiting_input,
        }

    def _add_collectors(self, record: Mapping[str, Any]) -> None:
        collectors = record.get("collectors", {})
        if not isinstance(collectors, Mapping):
            raise SerializationError("a state record's 'collectors' must be an object")
        for cid, runs in collectors.items():
            names: list[str] = []
            for run in runs if isinstance(runs, list) else [None]:
                if not (isinstance(run, list) and len(run) == 2 and isinstance(run[0], str)):
                    raise SerializationError(f"collector {cid!r} needs [[event type name, count], ...]")
                count = run[1]
                if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_EXPECTED:
                    raise SerializationError(f"collector {cid!r} has a bad count {count!r}")
                names.extend([run[0]] * count)
            self.collectors[str(cid)] = tuple(names)


def run_length(names: Iterable[str]) -> list[list[Any]]:
    """`["A", "A", "B"]` as `[["A", 2], ["B", 1]]`."""
    runs: list[list[Any]] = []
    for name in names:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return runs


@contextmanager
def collector_paused() -> Iterator[None]:
    """Building or restoring a large state allocates many objects that all stay alive: the
    cyclic collector would scan them again and again (a 10,000-event restore took 100 ms
    longer whenever a full collection fell inside it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def materialise(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The complete state after the last of `records` (a full record, then deltas in seq order)."""
    state: State | None = None
    with collector_paused():
        for record in records:
            if state is None:
                state = State(record)
            else:
                state.apply(record)
        if state is None:
            raise SerializationError("no state records")
        return state.ctx_state()


def store_maps(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The store values a record carries (all of them, or the changed ones)."""
    store = record.get("store") if isinstance(record, Mapping) else None
    return store if isinstance(store, Mapping) else {}


def _known_keys(record: Mapping[str, Any], known: frozenset[str]) -> None:
    unknown = set(record) - known
    if unknown:
        raise SerializationError(f"a state record has unknown fields: {', '.join(sorted(map(str, unknown)))}")


def _list(record: Mapping[str, Any], key: str) -> list[Any]:
    value = record.get(key, [])
    if not isinstance(value, list):
        raise SerializationError(f"a state record's {key!r} must be a list")
    return value


def _entry(entry: Any) -> tuple[int, str, Any, Any]:
    if not isinstance(entry, list) or len(entry) != 4:
        raise SerializationError(f"malformed entry {entry!r:.80}")
    eid, kind, where, event = entry
    if not isinstance(eid, int) or isinstance(eid, bool) or kind not in _KINDS:
        raise SerializationError(f"malformed entry {entry!r:.80}")
    if kind in (QUEUED, IN_FLIGHT) and not isinstance(where, str):
        raise SerializationError(f"entry {eid} needs a step name")
    if kind == COLLECT and (not isinstance(where, int) or isinstance(where, bool)):
        raise SerializationError(f"entry {eid} needs a collector id")
    return eid, kind, where, event
