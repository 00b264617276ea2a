"""Context: the shared state of one run (store, queues, fan-in buffers, waiters, stream)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter, deque
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from .errors import SerializationError, WorkflowRuntimeError
from .events import Event
from .serialization import IMMUTABLE, decode_value, encode_event, encode_value
from .snapshots import (
    COLLECT,
    IN_FLIGHT,
    QUEUED,
    RECORD_VERSION,
    STATE_VERSION,
    UNSENT,
    collector_paused,
    run_length,
)
from .streaming import StreamListener, StreamWrite

if TYPE_CHECKING:
    from .workflow import Workflow, _Runner

_MISSING: Any = object()
STREAM_END: Any = object()
# A full record is written once the changes since the last one outnumber twice the
# entries a full record would hold (plus a slack): storage stays amortised O(1) per step,
# and restoring any checkpoint replays at most about twice as many changes as the state
# holds. (Ratio 1 wrote 35% more bytes per event at N=10,000 than at N=100.)
FULL_RECORD_RATIO = 2
FULL_RECORD_SLACK = 32
# The step execution (its in-flight entry id) running in this task, so the store knows
# which step read a mutable value.
_current_step: ContextVar[int | None] = ContextVar("wfdash_current_step", default=None)
_current_attempt: ContextVar[int] = ContextVar("wfdash_current_attempt", default=1)


def current_execution() -> int | None:
    """The in-flight id of the step execution running in this task (also while its
    checkpoint is written), or None outside a step."""
    return _current_step.get()


class ContextStore:
    """Key-value state shared by the steps of one run (`ctx.store`).

    Knows which keys may have changed since the last checkpoint: keys set, and keys
    whose mutable value a step read (it may change it in place) while that step runs.
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._tracking = False
        self._dirty: set[str] = set()
        self._read_by: dict[int, set[str]] = {}
        # The encoded value each key had in the last record, to leave unchanged ones out.
        self._recorded: dict[str, Any] = {}

    async def get(self, key: str, default: Any = _MISSING) -> Any:
        if key in self._data:
            value = self._data[key]
            if self._tracking and not isinstance(value, IMMUTABLE):
                step = _current_step.get()
                if step is None:
                    self._dirty.add(key)
                else:
                    self._read_by.setdefault(step, set()).add(key)
            return value
        if default is _MISSING:
            raise KeyError(f"no value stored under key {key!r}")
        return default

    async def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("store keys must be strings")
        self._data[key] = value
        if self._tracking:
            self._dirty.add(key)

    def keys(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def load(self, values: dict[str, Any]) -> None:
        """Set decoded values restored from a snapshot (not changes: nothing is tracked)."""
        self._data.update(values)

    def start_tracking(self) -> None:
        self._tracking = True

    def snapshot(self) -> dict[str, Any]:
        """Every value, encoded."""
        encoded = {key: encode_value(key, value) for key, value in self._data.items()}
        if self._tracking:
            self._recorded = dict(encoded)
            self._dirty.clear()
        return encoded

    def changes(self) -> dict[str, Any]:
        """Encoded values of the keys that changed since the last record."""
        keys = self._dirty
        for read in self._read_by.values():
            keys |= read
        changed: dict[str, Any] = {}
        for key in keys:
            encoded = encode_value(key, self._data[key])
            if self._recorded.get(key, _MISSING) != encoded:
                changed[key] = self._recorded[key] = encoded
        self._dirty = set()
        return changed

    def step_ended(self, step: int) -> None:
        """A step's reads matter until its checkpoint: then they become plain changes."""
        read = self._read_by.pop(step, None)
        if read:
            self._dirty |= read


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


class _Collector:
    """One `collect_events` fan-in: the types it expects and the events buffered so far."""

    __slots__ = ("cid", "names", "classes", "need", "buffer", "have")

    def __init__(self, cid: int, names: tuple[str, ...]) -> None:
        self.cid = cid
        self.names = names
        # Unknown until a step calls collect_events again after a restore.
        self.classes: list[type[Event]] | None = None
        self.need: Counter[type[Event]] = Counter()
        self.buffer: list[tuple[int, Event]] = []
        self.have: Counter[type[Event]] = Counter()

    def attach(self, classes: list[type[Event]]) -> None:
        self.classes = classes
        self.need = Counter(classes)


class Context:
    """Per-run state handed to steps that declare a `ctx: Context` parameter.

    Every pending event (queued, in flight, an output still checkpointing, buffered for a
    fan-in) is an entry with a run-unique id. While checkpointing, the context journals
    which entries were added, moved and removed and which store keys changed, so a
    checkpoint records only that (see `snapshots.py`).
    """

    def __init__(self, workflow: Workflow, run_id: str) -> None:
        self.workflow = workflow
        self.run_id = run_id
        self.store = ContextStore()
        # Only steps with waiting events have an entry: idle checks stay proportional
        # to what is queued, not to the number of steps.
        self._queued: dict[str, deque[tuple[int, Event]]] = {}
        self._in_flight: dict[int, tuple[str, Event]] = {}
        # Outputs of completed steps whose checkpoint is still being written, by the
        # in-flight id of the step that produced them.
        self._unsent: dict[int, tuple[int, Event]] = {}
        self._ids = itertools.count(1)
        # Fan-in collectors, one per distinct `expected` list; records name them by id.
        self._collectors: list[_Collector] = []
        self._new_collectors: list[_Collector] = []
        self._waiters: list[_Waiter] = []
        self._stream: asyncio.Queue[Any] = asyncio.Queue()
        self._stream_listeners: list[StreamListener] = []
        self._queue_stream = True
        self._awaiting_input = False
        self._runner: _Runner | None = None
        # The journal (only while checkpointing): changes since the last record.
        self._journal = False
        self._entries = 0
        self._added: dict[int, tuple[str, Any, Event]] = {}
        self._moved: dict[int, tuple[str, Any]] = {}
        self._removed: list[int] = []
        self._waiters_changed = False
        self._recorded_awaiting = False
        self._changes_since_full = 0
        self._full_due = True

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
        collector = self._collector_for(expected)
        buffer, have, need = collector.buffer, collector.have, collector.need
        buffer.append((self._add(COLLECT, collector.cid, ev), ev))
        have[type(ev)] += 1
        # Counting keeps each call cheap until the set is complete.
        if have[type(ev)] < need.get(type(ev), 0) or any(have[cls] < n for cls, n in need.items()):
            return None
        by_type: dict[type[Event], deque[int]] = {}
        for i, (_, candidate) in enumerate(buffer):
            by_type.setdefault(type(candidate), deque()).append(i)
        chosen = [by_type[cls].popleft() for cls in expected]
        events = [buffer[i][1] for i in chosen]
        for i in chosen:
            self._remove(buffer[i][0])
        taken = set(chosen)
        collector.buffer = [item for i, item in enumerate(buffer) if i not in taken]
        have.subtract(type(e) for e in events)
        return events

    def _collector_for(self, expected: list[type[Event]]) -> _Collector:
        # A run has few collectors, and comparing lists is a C loop with an identity
        # shortcut, while hashing a 10,000-long tuple on every call cost 70 us.
        for collector in self._collectors:
            if collector.classes == expected:
                return collector
        classes = list(expected)
        names = tuple(cls.__name__ for cls in classes)
        for collector in self._collectors:
            if collector.classes is None and collector.names == names:  # restored from a record
                collector.attach(classes)
                return collector
        collector = _Collector(len(self._collectors) + 1, names)
        collector.attach(classes)
        self._collectors.append(collector)
        self._new_collectors.append(collector)
        return collector

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
        self._waiters_changed = True
        if waiter_event is not None:
            self.write_event_to_stream(waiter_event)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.remove(waiter)
            self._waiters_changed = True

    def write_event_to_stream(self, ev: Event) -> None:
        """Publish an event to `handler.stream_events()` and the stream's listeners."""
        if self._stream_listeners:
            eid = _current_step.get()
            running = self._in_flight.get(eid) if eid is not None else None
            write = StreamWrite(ev, running[0] if running else None, eid if running else None, _current_attempt.get())
            for listener in self._stream_listeners:
                listener(write)
        if self._queue_stream:
            self._stream.put_nowait(ev)

    def add_stream_listener(self, listener: StreamListener, *, queue: bool = True) -> None:
        """Call `listener` with each event a step writes to the stream, as it is written.

        With `queue=False` those events are not also kept for `handler.stream_events()`: a
        worker that only relays them would otherwise hold every token until the run ends.
        """
        self._stream_listeners.append(listener)
        if not queue:
            self._queue_stream = False

    @property
    def is_waiting_for_input(self) -> bool:
        """True once an InputRequiredEvent was emitted and no answer has arrived."""
        return self._awaiting_input

    # -- the runner's API: pending events ------------------------------------

    def queue(self, step: str, ev: Event) -> None:
        """Queue `ev` for `step` (its workers are busy)."""
        queue = self._queued.get(step)
        if queue is None:
            queue = self._queued[step] = deque()
        queue.append((self._add(QUEUED, step, ev), ev))

    def has_queued(self, step: str | None = None) -> bool:
        """Whether `step` (or any step) has queued events."""
        return bool(self._queued) if step is None else step in self._queued

    def begin(self, step: str, ev: Event | None = None) -> tuple[int, Event]:
        """Mark an event in flight in `step`: `ev`, or the oldest queued for `step`.

        Returns the in-flight id and the event; the step's task runs under that id.
        """
        if ev is None:
            queue = self._queued[step]
            eid, ev = queue.popleft()
            if not queue:
                del self._queued[step]
            self._move(eid, IN_FLIGHT, step)
        else:
            eid = self._add(IN_FLIGHT, step, ev)
        self._in_flight[eid] = (step, ev)
        return eid, ev

    def end(self, eid: int) -> None:
        """The step running under `eid` completed: its input is consumed."""
        del self._in_flight[eid]
        self._remove(eid)
        self.store.step_ended(eid)

    @property
    def has_in_flight(self) -> bool:
        return bool(self._in_flight)

    def hold_output(self, eid: int, output: Event) -> None:
        """Keep a step's output in the state until its checkpoint is written."""
        self._unsent[eid] = (self._add(UNSENT, None, output), output)

    def release_output(self, eid: int) -> None:
        held = self._unsent.pop(eid, None)
        if held is not None:
            self._remove(held[0])

    def waiter_for(self, ev: Event) -> _Waiter | None:
        """The first waiter `ev` satisfies, if any."""
        for waiter in self._waiters:
            if waiter.matches(ev):
                return waiter
        return None

    def set_awaiting_input(self, awaiting: bool) -> None:
        self._awaiting_input = awaiting

    @staticmethod
    def run_step_as(eid: int) -> None:
        """Called at the start of a step's task: the store attributes reads to it."""
        _current_step.set(eid)

    @staticmethod
    def run_attempt(attempt: int) -> None:
        """Called before each attempt of a step (1, then 2 after a retry...): stream writes carry it."""
        _current_attempt.set(attempt)

    # -- the journal -----------------------------------------------------------

    def start_journal(self) -> None:
        """Record changes from now on; the next record is a full one."""
        self._journal = True
        self.store.start_tracking()
        self._full_due = True

    def _add(self, kind: str, where: Any, ev: Event) -> int:
        eid = next(self._ids)
        if self._journal:
            self._entries += 1
            self._added[eid] = (kind, where, ev)
        return eid

    def _move(self, eid: int, kind: str, where: Any) -> None:
        if not self._journal:
            return
        added = self._added.get(eid)
        if added is not None:
            self._added[eid] = (kind, where, added[2])
        else:
            self._moved[eid] = (kind, where)

    def _remove(self, eid: int) -> None:
        if not self._journal:
            return
        self._entries -= 1
        if self._added.pop(eid, None) is None:
            self._moved.pop(eid, None)
            self._removed.append(eid)

    def checkpoint_record(self) -> dict[str, Any]:
        """What a checkpoint taken now stores: the changes since the last record, or
        everything when those changes outnumber the state's entries."""
        store = self.store.changes()
        changes = len(self._added) + len(self._moved) + len(self._removed) + len(store)
        self._changes_since_full += changes
        limit = FULL_RECORD_RATIO * (self._entries + len(self.store)) + FULL_RECORD_SLACK
        if self._full_due or self._changes_since_full > limit:
            return self._full_record()
        record: dict[str, Any] = {"version": RECORD_VERSION}
        if store:
            record["store"] = store
        if self._added:
            record["add"] = [[eid, kind, where, encode_event(ev)] for eid, (kind, where, ev) in self._added.items()]
            self._added = {}
        if self._new_collectors:
            record["collectors"] = {str(c.cid): run_length(c.names) for c in self._new_collectors}
            self._new_collectors = []
        if self._removed:
            record["del"] = self._removed
            self._removed = []
        if self._moved:
            record["move"] = [[eid, kind, where] for eid, (kind, where) in self._moved.items()]
            self._moved = {}
        if self._waiters_changed:
            record["waiters"] = self._encode_waiters()
            self._waiters_changed = False
        if self._awaiting_input != self._recorded_awaiting:
            record["awaiting_input"] = self._recorded_awaiting = self._awaiting_input
        return record

    def _full_record(self) -> dict[str, Any]:
        entries: list[list[Any]] = [
            [eid, IN_FLIGHT, step, encode_event(ev)] for eid, (step, ev) in self._in_flight.items()
        ]
        for step, queue in self._queued.items():
            entries.extend([eid, QUEUED, step, encode_event(ev)] for eid, ev in queue)
        entries.extend([eid, UNSENT, None, encode_event(ev)] for eid, ev in self._unsent.values())
        collectors: dict[str, list[list[Any]]] = {}
        for collector in self._collectors:
            if collector.buffer:
                collectors[str(collector.cid)] = run_length(collector.names)
                entries.extend([eid, COLLECT, collector.cid, encode_event(ev)] for eid, ev in collector.buffer)
        self._added, self._moved, self._removed, self._new_collectors = {}, {}, [], []
        self._entries = len(entries)
        self._changes_since_full = 0
        self._full_due = False
        self._waiters_changed = False
        self._recorded_awaiting = self._awaiting_input
        return {
            "version": RECORD_VERSION,
            "full": True,
            "store": self.store.snapshot(),
            "entries": entries,
            "collectors": collectors,
            "waiters": self._encode_waiters(),
            "awaiting_input": self._awaiting_input,
        }

    def _encode_waiters(self) -> list[dict[str, Any]]:
        return [
            {"event_type": w.event_type.__name__, "requirements": encode_value("requirements", w.requirements)}
            for w in self._waiters
        ]

    # -- restoring -------------------------------------------------------------

    def _known_step(self, name: Any) -> str:
        if name not in self.workflow.steps:
            raise SerializationError(f"snapshot names unknown step {name!r}")
        return str(name)

    def restore(self, state: dict[str, Any]) -> list[tuple[str, Event]]:
        """Load store and buffers from a complete state (`ctx_state`); return the (step,
        event) pairs to re-queue.

        In-flight events come first: they were started before anything still queued.
        A pair with step "" is an output to dispatch afresh.
        """
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise SerializationError("unsupported or corrupt context snapshot (missing version 1)")
        with collector_paused():
            return self._restore(state)

    def _restore(self, state: dict[str, Any]) -> list[tuple[str, Event]]:
        registry = self.workflow.event_registry
        # The restored run must not share mutable values with the checkpoint it came
        # from. The state is JSON by contract, and a JSON round trip copies it ten
        # times faster than deepcopy (a 10,000-event fan-out restores in milliseconds).
        try:
            state = json.loads(json.dumps(state))
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"corrupt context snapshot: {exc}") from None
        try:
            store = state["store"]
            if not isinstance(store, dict):
                raise SerializationError("snapshot 'store' must be an object")
            self.store.load({key: decode_value(registry, value) for key, value in store.items()})
            for entry in state["collect"]:
                events = [registry.decode(e) for e in entry["events"]]
                collector = _Collector(len(self._collectors) + 1, tuple(str(n) for n in entry["expected"]))
                collector.buffer = [(self._add(COLLECT, collector.cid, e), e) for e in events]
                collector.have.update(type(e) for e in events)
                self._collectors.append(collector)
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
