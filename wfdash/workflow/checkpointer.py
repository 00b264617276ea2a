"""WorkflowCheckpointer: records a checkpoint as each step completes, and runs from any of them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, PrivateAttr

from .. import telemetry
from .context import Context
from .errors import SerializationError
from .events import Event
from .handler import WorkflowHandler
from .serialization import EventRegistry, encode_event, encode_value, validate_event
from .snapshots import is_full, materialise
from .workflow import Restored, StepDone, Workflow


class Checkpoint(BaseModel):
    """The state of a run right after one step completed, before its output was dispatched.

    `state_record` is what the checkpoint stores (the changes its step made, or now and then
    everything: see snapshots.py); `ctx_state` is the complete state, built on demand from
    the full record at `snapshot_seq` and the records after it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id_: str
    run_id: str
    seq: int
    last_completed_step: str
    input_event: Event
    output_event: Event | None
    state_record: dict[str, Any]
    snapshot_seq: int
    created_at: datetime
    duration_ms: float
    usage: list[dict[str, Any]] = []
    # Attempts of the step that raised before the one that succeeded (its retry policy).
    retries: list[dict[str, Any]] = []
    # How to reach the earlier records: the previous checkpoint (in memory), or a loader
    # a store provides that returns the complete state.
    _previous: Checkpoint | None = PrivateAttr(default=None)
    _loader: Callable[[], dict[str, Any]] | None = PrivateAttr(default=None)

    @property
    def ctx_state(self) -> dict[str, Any]:
        """The complete context state at this checkpoint (store, queued, in-flight and
        unsent events, fan-in buffers, waiters), as `Context.restore` reads it."""
        if is_full(self.state_record):
            return materialise([self.state_record])
        if self._loader is not None:
            return self._loader()
        records = [self.state_record]
        previous = self._previous
        while previous is not None:
            records.append(previous.state_record)
            if is_full(previous.state_record):
                return materialise(reversed(records))
            if previous._loader is not None:
                state = previous._loader()
                return materialise([state, *reversed(records[:-1])])
            previous = previous._previous
        raise SerializationError(f"checkpoint {self.id_}: the records it builds on are not available")

    def follows(self, previous: Checkpoint | None) -> None:
        """Link the run's previous checkpoint (whose record this one's builds on)."""
        self._previous = previous

    def load_state_with(self, loader: Callable[[], dict[str, Any]]) -> None:
        """Let a store build the complete state (it reads the earlier records itself)."""
        self._loader = loader

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form, events as `{"type", "data"}`."""
        return {
            "id": self.id_,
            "run_id": self.run_id,
            "seq": self.seq,
            "last_completed_step": self.last_completed_step,
            "input_event": encode_event(self.input_event),
            "output_event": encode_event(self.output_event) if self.output_event is not None else None,
            "ctx_state": self.ctx_state,
            "created_at": self.created_at.isoformat(),
            "duration_ms": self.duration_ms,
            "usage": self.usage,
            "retries": self.retries,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], registry: EventRegistry) -> Checkpoint:
        """Rebuild from `to_record()` output; event types resolve through `registry` only."""
        try:
            out = record["output_event"]
            seq = int(record["seq"])
            return cls.model_construct(
                id_=str(record["id"]),
                run_id=str(record["run_id"]),
                seq=seq,
                last_completed_step=str(record["last_completed_step"]),
                input_event=registry.decode(record["input_event"]),
                output_event=registry.decode(out) if out is not None else None,
                state_record=dict(record["ctx_state"]),
                snapshot_seq=seq,
                created_at=_parse_time(record["created_at"]),
                duration_ms=float(record["duration_ms"]),
                usage=list(record.get("usage") or []),
                retries=list(record.get("retries") or []),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"corrupt checkpoint record: {exc!r}") from None


def validate_snapshot(workflow: Workflow, state: dict[str, Any]) -> None:
    """Raise SerializationError unless `state` restores cleanly into `workflow`."""
    Context(workflow, "validation").restore(state)


def _parse_time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@dataclass
class RunInfo:
    """What a store learns when a run starts."""

    run_id: str
    workflow: Workflow
    start_event: Event | None
    parent_checkpoint_id: str | None = None
    edits: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False


class CheckpointStore(Protocol):
    """Where checkpoints go. Every method is async so a database can sit behind it.

    `put_checkpoint` is called in seq order for a run, and the step's output is
    dispatched only after it returns: a store that commits there is durable.
    """

    async def run_started(self, run: RunInfo) -> None:
        """A run started (or resumed); create or update its record."""

    async def put_checkpoint(self, checkpoint: Checkpoint, workflow: Workflow) -> None:
        """Persist one checkpoint."""

    async def run_finished(self, run_id: str, result: Any, error: BaseException | None) -> None:
        """The run ended: `error` is None on success."""

    async def get_checkpoint(self, checkpoint_id: str, workflow: Workflow) -> Checkpoint:
        """One checkpoint by id; KeyError if unknown."""

    async def list_checkpoints(
        self,
        workflow: Workflow,
        *,
        run_id: str | None = None,
        last_completed_step: str | None = None,
        input_event_type: str | None = None,
        output_event_type: str | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints matching every given criterion, by run then seq."""


class InMemoryCheckpointStore:
    """The default store: checkpoints kept in this process only."""

    def __init__(self) -> None:
        self.runs: dict[str, RunInfo] = {}
        self.outcomes: dict[str, tuple[Any, BaseException | None]] = {}
        self.by_run: dict[str, list[Checkpoint]] = {}
        self.by_id: dict[str, Checkpoint] = {}

    async def run_started(self, run: RunInfo) -> None:
        self.runs[run.run_id] = run
        self.by_run.setdefault(run.run_id, [])

    async def put_checkpoint(self, checkpoint: Checkpoint, workflow: Workflow) -> None:
        run = self.by_run.setdefault(checkpoint.run_id, [])
        if not is_full(checkpoint.state_record):
            checkpoint.follows(run[-1] if run else None)
        run.append(checkpoint)
        self.by_id[checkpoint.id_] = checkpoint

    async def run_finished(self, run_id: str, result: Any, error: BaseException | None) -> None:
        self.outcomes[run_id] = (result, error)

    async def get_checkpoint(self, checkpoint_id: str, workflow: Workflow) -> Checkpoint:
        return self.by_id[checkpoint_id]

    async def list_checkpoints(self, workflow: Workflow, **criteria: str | None) -> list[Checkpoint]:
        return [c for run in self.by_run.values() for c in run if _matches(c, **criteria)]


def _matches(
    c: Checkpoint,
    run_id: str | None = None,
    last_completed_step: str | None = None,
    input_event_type: str | None = None,
    output_event_type: str | None = None,
) -> bool:
    return (
        (run_id is None or c.run_id == run_id)
        and (last_completed_step is None or c.last_completed_step == last_completed_step)
        and (input_event_type is None or type(c.input_event).__name__ == input_event_type)
        and (output_event_type is None or type(c.output_event).__name__ == output_event_type)
    )


def _type_name(value: type[Event] | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, type) and issubclass(value, Event):
        return value.__name__
    raise TypeError(f"an event type must be an Event subclass or its name, got {value!r}")


class WorkflowCheckpointer:
    """Runs a workflow and checkpoints each completed step into `store`.

    With tracing on (wfdash.telemetry), runs are traced under `name` (default: the class
    name); `root_spans=False` leaves exporting each run's root span to the caller (a
    worker does, from the run's stored start time).
    """

    def __init__(
        self,
        workflow: Workflow,
        store: CheckpointStore | None = None,
        disabled_steps: tuple[str, ...] | list[str] = (),
        *,
        name: str | None = None,
        root_spans: bool = True,
    ) -> None:
        self.workflow = workflow
        self.name = name
        self.root_spans = root_spans
        self.store: CheckpointStore = store if store is not None else InMemoryCheckpointStore()
        # Ids of the runs this checkpointer started, in order: nothing per checkpoint is
        # kept here (the store has them), so memory stays flat over a long run.
        self._run_ids: dict[str, None] = {}
        self.parents: dict[str, str] = {}
        self._disabled: set[str] = set()
        for name in disabled_steps:
            self.disable_checkpoint(name)

    # -- configuration -------------------------------------------------------

    def _known_step(self, name: str) -> str:
        if name not in self.workflow.steps:
            known = ", ".join(sorted(self.workflow.steps))
            raise ValueError(f"unknown step {name!r}; {type(self.workflow).__name__} has: {known}")
        return name

    def enable_checkpoint(self, step: str) -> None:
        self._disabled.discard(self._known_step(step))

    def disable_checkpoint(self, step: str) -> None:
        self._disabled.add(self._known_step(step))

    # -- running -------------------------------------------------------------

    def run(self, start_event: Event | None = None, **kwargs: Any) -> WorkflowHandler:
        """Like `Workflow.run`, recording a checkpoint after each step."""
        if start_event is None:
            start_event = self.workflow.start_event_class(**kwargs)
        elif kwargs:
            raise ValueError("pass either start_event or keyword arguments, not both")
        return self.run_as(str(uuid.uuid4()), start_event)

    def run_as(self, run_id: str, start_event: Event) -> WorkflowHandler:
        """Start a run under a given id: a worker executes a run row that already has one."""
        return self._launch(RunInfo(run_id, self.workflow, start_event), dispatch=[(None, start_event)])

    def run_from(
        self,
        checkpoint: Checkpoint,
        *,
        output_event: Event | Mapping[str, Any] | None = None,
        store: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> WorkflowHandler:
        """A new run that restores `checkpoint`'s context and dispatches its output event.

        `output_event` replaces that event (an Event, or a dict of its fields
        validated against the checkpoint's output event type); `store` overrides
        store values. Both edits are recorded on the new run.
        """
        run_id = run_id or str(uuid.uuid4())
        restored, dispatch, edits = self._prepare_fork(checkpoint, run_id, output_event, store)
        info = RunInfo(run_id, self.workflow, None, parent_checkpoint_id=checkpoint.id_, edits=edits)
        self.parents[info.run_id] = checkpoint.id_
        return self._launch(info, dispatch=dispatch, restored=restored, parent_run_id=checkpoint.run_id)

    def resume(
        self, checkpoint: Checkpoint, send: list[Event] | None = None, *, started_at: datetime | None = None
    ) -> WorkflowHandler:
        """Continue `checkpoint`'s own run (after a crash): same run id, seq continues.

        `send` events (a human answer) are dispatched after the checkpoint's output;
        `started_at` is when the run first started (its trace's root span begins there).
        """
        restored, dispatch, _ = self._prepare_fork(checkpoint, checkpoint.run_id, None, None)
        dispatch.extend((None, ev) for ev in send or ())
        info = RunInfo(checkpoint.run_id, self.workflow, None, resumed=True)
        return self._launch(
            info, dispatch=dispatch, restored=restored, first_seq=checkpoint.seq + 1, started_at=started_at
        )

    def _prepare_fork(
        self,
        checkpoint: Checkpoint,
        run_id: str,
        output_event: Event | Mapping[str, Any] | None,
        store: Mapping[str, Any] | None,
    ) -> tuple[Restored, list[tuple[str | None, Event]], dict[str, Any]]:
        """The new run's context, restored (which validates the state and the edits before
        anything is written), what to dispatch, and the edits to record."""
        registry = self.workflow.event_registry
        if checkpoint.last_completed_step not in self.workflow.steps:
            raise SerializationError(
                f"checkpoint's step {checkpoint.last_completed_step!r} is not a step of {type(self.workflow).__name__}"
            )
        edits: dict[str, Any] = {}
        event = checkpoint.output_event
        if output_event is not None:
            if isinstance(output_event, Event):
                event = output_event
            else:
                if event is None:
                    raise SerializationError("this checkpoint has no output event to edit")
                event = validate_event(type(event), output_event)
            registry.name_of(type(event))
            if not self.workflow.accepting_steps(type(event)) and not _is_terminal(event):
                raise SerializationError(f"no step of {type(self.workflow).__name__} accepts {type(event).__name__}")
            edits["output_event"] = encode_event(event)
        state = dict(checkpoint.ctx_state)  # built once: it may take a range of records
        if store:
            state["store"] = {**state.get("store", {}), **{k: encode_value(k, v) for k, v in store.items()}}
            edits["store"] = {k: encode_value(k, v) for k, v in store.items()}
        ctx = Context(self.workflow, run_id)
        restored = Restored(ctx, ctx.restore(state))
        dispatch: list[tuple[str | None, Event]] = [(None, event)] if event is not None else []
        return restored, dispatch, edits

    def _launch(
        self,
        info: RunInfo,
        *,
        dispatch: list[tuple[str | None, Event]],
        restored: Restored | None = None,
        first_seq: int = 1,
        parent_run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> WorkflowHandler:
        store = self.store
        workflow = self.workflow
        disabled = self._disabled
        self._run_ids[info.run_id] = None
        next_seq = first_seq
        snapshot_seq = first_seq

        async def on_start(ctx: Context) -> None:
            await store.run_started(info)

        async def on_step(ctx: Context, done: StepDone) -> int:
            nonlocal next_seq, snapshot_seq
            # seq is taken before the first await, like the state record, so both
            # describe the moment this step completed (and records stay in seq order).
            if is_full(done.state):
                snapshot_seq = next_seq
            checkpoint = Checkpoint.model_construct(
                id_=str(uuid.uuid4()),
                run_id=ctx.run_id,
                seq=next_seq,
                last_completed_step=done.step,
                input_event=done.input_event,
                output_event=done.output_event,
                state_record=done.state,
                snapshot_seq=snapshot_seq,
                created_at=datetime.now(UTC),
                duration_ms=done.seconds * 1000.0,
                usage=done.usage,
                retries=done.retries,
            )
            next_seq += 1
            await store.put_checkpoint(checkpoint, workflow)
            return checkpoint.seq

        async def on_finish(ctx: Context, result: Any, error: BaseException | None) -> None:
            await store.run_finished(ctx.run_id, result, error)

        trace = telemetry.run_trace(
            info.run_id,
            self.name or type(workflow).__name__,
            parent_run_id=parent_run_id,
            started_at=started_at,
            root=self.root_spans,
        )
        return workflow._launch(
            run_id=info.run_id,
            dispatch=dispatch,
            restored=restored,
            on_step=on_step,
            on_finish=on_finish,
            on_start=on_start,
            checkpointed=lambda name: name not in disabled,
            trace=trace,
        )

    # -- reading -------------------------------------------------------------

    @property
    def checkpoints(self) -> dict[str, list[Checkpoint]]:
        """This checkpointer's runs and their checkpoints in seq order."""
        return {run_id: self._stored(run_id) for run_id in self._run_ids}

    def _stored(self, run_id: str, **criteria: str | None) -> list[Checkpoint]:
        store = self.store
        if isinstance(store, InMemoryCheckpointStore):
            return [c for c in store.by_run.get(run_id, []) if _matches(c, **criteria)]
        # Other stores are async and this API is sync (the seed's), often called inside a
        # running loop (a notebook): ask the store from a thread with its own loop.
        query = store.list_checkpoints(self.workflow, run_id=run_id, **criteria)
        with ThreadPoolExecutor(1) as pool:
            found = pool.submit(asyncio.run, query).result()  # type: ignore[arg-type]
        return sorted(found, key=lambda c: c.seq)

    def filter_checkpoints(
        self,
        run_id: str | None = None,
        last_completed_step: str | None = None,
        input_event_type: type[Event] | str | None = None,
        output_event_type: type[Event] | str | None = None,
    ) -> list[Checkpoint]:
        """Checkpoints of this checkpointer's runs matching every given criterion."""
        if run_id is None and last_completed_step is None and input_event_type is None and output_event_type is None:
            raise ValueError(
                "filter_checkpoints needs at least one of run_id, last_completed_step, "
                "input_event_type, output_event_type"
            )
        criteria = {
            "last_completed_step": last_completed_step,
            "input_event_type": _type_name(input_event_type),
            "output_event_type": _type_name(output_event_type),
        }
        runs = [run_id] if run_id is not None else list(self._run_ids)
        return [c for rid in runs if rid in self._run_ids for c in self._stored(rid, **criteria)]


def _is_terminal(event: Event) -> bool:
    from .events import InputRequiredEvent, StopEvent

    return isinstance(event, StopEvent | InputRequiredEvent)
