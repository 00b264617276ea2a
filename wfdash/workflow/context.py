"""Context: the shared state of one run (store, queues, fan-in buffers, waiters, stream)."""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from .errors import SerializationError, WorkflowRuntimeError
from .events import Event
from .serialization import decode_value, encode_event, encode_value

if TYPE_CHECKING:
    from .workflow import Workflow, _Runner

SNAPSHOT_VERSION = 1
_MISSING: Any = object()
STREAM_END: Any = object()


class ContextStore:
    """Key-value state shared by the steps of one run (`ctx.store`)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise KeyError(f"no value stored under key {key!r}")
        return default

    async def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("store keys must be strings")
        self._data[key] = value

    def keys(self) -> list[str]:
        return list(self._data)

    def snapshot(self) -> dict[str, Any]:
        return {key: encode_value(key, value) for key, value in self._data.items()}


class _Waiter:
    __slots__ = ("event_type", "requirements", "future")

    def __init__(self, event_type: type[Event], requirements: dict[str, Any], future: asyncio.Future[Event]) -> None:
        self.event_type = event_type
        self.requirements = requirements
        self.future = future

    def matches(self, ev: Event) -> bool:
        if not isinstance(ev, self.event_type) or self.future.done():
            return False
        return all(getattr(ev, k, _MISSING) == v for k, v in self.requirements.items())


class Context:
    """Per-run state handed to steps that declare a `ctx: Context` parameter."""

    def __init__(self, workflow: Workflow, run_id: str) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.store = ContextStore()
        # Only steps with waiting events have an entry: snapshots and idle checks stay
        # proportional to what is queued, not to the number of steps.
        self._queued: dict[str, deque[Event]] = {}
        self._in_flight: dict[int, tuple[str, Event]] = {}
        # Outputs of completed steps whose checkpoint is still being written.
        self._unsent: dict[int, Event] = {}
        self._tokens = itertools.count()
        self._collect: dict[tuple[str, ...], list[Event]] = {}
        self._collect_counts: dict[tuple[str, ...], Counter[type[Event]]] = {}
        self._collect_need: dict[tuple[type[Event], ...], Counter[type[Event]]] = {}
        self._collect_keys: dict[tuple[type[Event], ...], tuple[str, ...]] = {}
        self._waiters: list[_Waiter] = []
        self._stream: asyncio.Queue[Any] = asyncio.Queue()
        self._awaiting_input = False
        self._runner: _Runner | None = None

    # -- the API steps use -------------------------------------------------

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        """Alias of `ctx.store.get`, as older llama-index code calls it."""
        return await self.store.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        """Alias of `ctx.store.set`."""
        await self.store.set(key, value)

    def send_event(self, ev: Event, step: str | None = None) -> None:
        """Dispatch an event to every step that accepts it, or only to `step`."""
        if self._runner is None:
            raise WorkflowRuntimeError("this context's run is not running")
        self._runner.dispatch(ev, step)

    def collect_events(self, ev: Event, expected: list[type[Event]]) -> list[Event] | None:
        """Buffer `ev`; once one event per entry of `expected` is here, return them in that order."""
        classes = tuple(expected)  # C-speed copy; also the key of this collector
        need = self._collect_need.get(classes)
        if need is None:
            need = self._collect_need[classes] = Counter(classes)
        key = self._collect_keys.get(classes)
        if key is None:
            key = self._collect_keys[classes] = tuple(cls.__name__ for cls in classes)
        buffer = self._collect.setdefault(key, [])
        buffer.append(ev)
        have = self._collect_counts.setdefault(key, Counter())
        have[type(ev)] += 1
        # Counting keeps each call cheap until the set is complete.
        if have[type(ev)] < need.get(type(ev), 0) or any(have[cls] < n for cls, n in need.items()):
            return None
        by_type: dict[type[Event], deque[int]] = {}
        for i, candidate in enumerate(buffer):
            by_type.setdefault(type(candidate), deque()).append(i)
        chosen = [by_type[cls].popleft() for cls in expected]
        events = [buffer[i] for i in chosen]
        taken = set(chosen)
        rest = [e for i, e in enumerate(buffer) if i not in taken]
        if rest:
            self._collect[key] = rest
            have.subtract(type(e) for e in events)
        else:
            del self._collect[key]
            del self._collect_counts[key]
        return events

    async def wait_for_event(
        self,
        event_type: type[Event],
        waiter_event: Event | None = None,
        requirements: dict[str, Any] | None = None,
        timeout: float | None = 2000,
    ) -> Event:
        """Wait inside a step for an event sent to this context (for example a human answer)."""
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(event_type, dict(requirements or {}), future)
        self._waiters.append(waiter)
        if waiter_event is not None:
            self.write_event_to_stream(waiter_event)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(waiter)

    def write_event_to_stream(self, ev: Event) -> None:
        """Publish an event to `handler.stream_events()`."""
        self._stream.put_nowait(ev)

    @property
    def is_waiting_for_input(self) -> bool:
        """True once an InputRequiredEvent was emitted and no answer has arrived."""
        return self._awaiting_input

    # -- snapshots -----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the run's state; its size does not depend on history."""
        return {
            "version": SNAPSHOT_VERSION,
            "store": self.store.snapshot(),
            "queued": [{"step": name, "events": [encode_event(ev) for ev in q]} for name, q in self._queued.items()],
            "in_flight": [{"step": name, "event": encode_event(ev)} for name, ev in self._in_flight.values()],
            "unsent": [encode_event(ev) for ev in self._unsent.values()],
            "collect": [
                {"expected": list(key), "events": [encode_event(ev) for ev in events]}
                for key, events in self._collect.items()
            ],
            "waiters": [
                {"event_type": w.event_type.__name__, "requirements": encode_value("requirements", w.requirements)}
                for w in self._waiters
            ],
            "awaiting_input": self._awaiting_input,
        }

    def _known_step(self, name: Any) -> str:
        if name not in self.workflow._steps:
            raise SerializationError(f"snapshot names unknown step {name!r}")
        return str(name)

    def restore(self, state: dict[str, Any]) -> list[tuple[str, Event]]:
        """Load store and buffers from a snapshot; return the (step, event) pairs to re-queue.

        In-flight events come first: they were started before anything still queued.
        A pair with step "" is an output to dispatch afresh.
        """
        registry = self.workflow._registry
        if not isinstance(state, dict) or state.get("version") != SNAPSHOT_VERSION:
            raise SerializationError("unsupported or corrupt context snapshot (missing version 1)")
        # The restored run must not share mutable values with the checkpoint it came from.
        state = copy.deepcopy(state)
        try:
            store = state["store"]
            if not isinstance(store, dict):
                raise SerializationError("snapshot 'store' must be an object")
            for key, value in store.items():
                self.store._data[key] = decode_value(registry, value)
            for entry in state["collect"]:
                events = [registry.decode(e) for e in entry["events"]]
                key = tuple(str(n) for n in entry["expected"])
                self._collect[key] = events
                self._collect_counts[key] = Counter(type(e) for e in events)
            pending: list[tuple[str, Event]] = []
            for entry in state["in_flight"]:
                pending.append((self._known_step(entry["step"]), registry.decode(entry["event"])))
            for entry in state["queued"]:
                name = self._known_step(entry["step"])
                pending.extend((name, registry.decode(e)) for e in entry["events"])
            # "" means: route it as a new event (the output of a step still checkpointing).
            pending.extend(("", registry.decode(e)) for e in state.get("unsent", []))
            self._awaiting_input = bool(state.get("awaiting_input", False))
        except (KeyError, TypeError) as exc:
            raise SerializationError(f"corrupt context snapshot: {exc!r}") from None
        return pending
