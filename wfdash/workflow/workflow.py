"""Workflow: steps wired by event type, validated, and run concurrently on one loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from .. import telemetry
from .context import STREAM_END, Context
from .decorators import StepConfig
from .errors import (
    WorkflowCancelledError,
    WorkflowRuntimeError,
    WorkflowSuspendedError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from .events import BUILTIN_EVENTS, Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from .handler import WorkflowHandler
from .serialization import EventRegistry
from .snapshots import collector_paused
from .usage import begin_step


@dataclass(slots=True)
class StepDone:
    """A completed step, as the checkpoint hook sees it before its output is dispatched."""

    step: str
    input_event: Event
    output_event: Event | None
    seconds: float
    # LLM calls the step made (see usage.py).
    usage: list[dict[str, Any]]
    # The context's state record taken as the step completed (see snapshots.py).
    state: dict[str, Any]
    # Attempts that raised before the one that succeeded: {"attempt", "error", "duration_ms"}.
    retries: list[dict[str, Any]] = field(default_factory=list)


# Returns the seq of the checkpoint it wrote, if it numbers them (for the step's span).
StepHook = Callable[[Context, StepDone], Awaitable[int | None]]
# Called when a run ends, before awaiting the handler returns: (ctx, result, error).
FinishHook = Callable[[Context, Any, BaseException | None], Awaitable[None]]


class Restored(NamedTuple):
    """A context restored from a complete state, and the (step, event) pairs to re-queue."""

    ctx: Context
    requeue: list[tuple[str, Event]]


class Workflow:
    """Subclass and decorate async methods with `@step`."""

    _step_configs: ClassVar[dict[str, StepConfig]]

    def __init__(self, timeout: float | None = None, verbose: bool = False) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None")
        self.timeout = timeout
        self.verbose = verbose
        self._steps = self._collect_steps()
        cls = type(self)
        # Steps are defined on the class, so what follows from them is computed
        # once per class: a worker creates an instance for every run.
        validated = cls.__dict__.get("_wf_validated_cache")
        if validated is None:
            validated = (*self._validate(), {})
            cls._wf_validated_cache = validated  # type: ignore[attr-defined]
        self.start_event_class: type[StartEvent] = validated[0]
        self.stop_event_class: type[StopEvent] = validated[1]
        self._registry: EventRegistry = validated[2]
        self._routes: dict[type[Event], tuple[str, ...]] = validated[3]

    # -- definition ----------------------------------------------------------

    @classmethod
    def _collect_steps(cls) -> dict[str, StepConfig]:
        cached = cls.__dict__.get("_wf_steps_cache")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        steps: dict[str, StepConfig] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                spec = getattr(value, "__wf_step__", None)
                if spec is not None:
                    steps[attr] = spec.config()
                elif attr in steps:
                    del steps[attr]  # overridden by a plain method
        cls._wf_steps_cache = steps  # type: ignore[attr-defined]
        return steps

    def _validate(self) -> tuple[type[StartEvent], type[StopEvent], EventRegistry]:
        if not self._steps:
            raise WorkflowValidationError(f"{type(self).__name__} has no steps")
        consumed: set[type[Event]] = set()
        produced: set[type[Event]] = set()
        for cfg in self._steps.values():
            consumed.update(cfg.accepted_events)
            produced.update(cfg.return_types)
        starts = {t for t in consumed if issubclass(t, StartEvent)}
        stops = {t for t in produced if issubclass(t, StopEvent)}
        if len(starts) != 1:
            found = ", ".join(sorted(t.__name__ for t in starts)) or "none"
            raise WorkflowValidationError(f"{type(self).__name__} needs exactly one start event type, found {found}")
        if len(stops) != 1:
            found = ", ".join(sorted(t.__name__ for t in stops)) or "none"
            raise WorkflowValidationError(f"{type(self).__name__} needs exactly one stop event type, found {found}")
        unconsumed = {t for t in produced - consumed if not issubclass(t, StopEvent | InputRequiredEvent)}
        unproduced = {t for t in consumed - produced if not issubclass(t, StartEvent | HumanResponseEvent)}
        if unconsumed:
            names = ", ".join(sorted(t.__name__ for t in unconsumed))
            raise WorkflowValidationError(f"events produced but never consumed by a step: {names}")
        if unproduced:
            names = ", ".join(sorted(t.__name__ for t in unproduced))
            raise WorkflowValidationError(f"events consumed but never produced by a step: {names}")
        registry = EventRegistry([*BUILTIN_EVENTS, *consumed, *produced])
        return starts.pop(), stops.pop(), registry  # type: ignore[return-value]

    @property
    def steps(self) -> dict[str, StepConfig]:
        return dict(self._steps)

    @property
    def event_registry(self) -> EventRegistry:
        return self._registry

    def accepting_steps(self, event_type: type[Event]) -> tuple[str, ...]:
        routes = self._routes.get(event_type)
        if routes is None:
            routes = tuple(
                name for name, cfg in self._steps.items() if any(issubclass(event_type, t) for t in cfg.accepted_events)
            )
            self._routes[event_type] = routes
        return routes

    # -- running -------------------------------------------------------------

    def run(self, start_event: StartEvent | None = None, **kwargs: Any) -> WorkflowHandler:
        """Start a run and return its handler at once; must be called inside an event loop."""
        if start_event is None:
            start_event = self.start_event_class(**kwargs)
        elif kwargs:
            raise ValueError("pass either start_event or keyword arguments, not both")
        run_id = str(uuid.uuid4())
        trace = telemetry.run_trace(run_id, type(self).__name__)
        return self._launch(run_id=run_id, dispatch=[(None, start_event)], trace=trace)

    def _launch(
        self,
        *,
        run_id: str,
        dispatch: list[tuple[str | None, Event]],
        restored: Restored | None = None,
        on_step: StepHook | None = None,
        on_finish: FinishHook | None = None,
        on_start: Callable[[Context], Awaitable[None]] | None = None,
        checkpointed: Callable[[str], bool] | None = None,
        trace: telemetry.RunTrace | None = None,
    ) -> WorkflowHandler:
        """Start a run, optionally in a restored context; `dispatch` pairs are (target step, event).

        `on_step` is called for the steps `checkpointed` accepts (all by default); each step
        execution is a span of `trace` (None: tracing is off).
        """
        if restored is not None:
            ctx, requeue = restored
        else:
            ctx, requeue = Context(self, run_id), []
        runner = _Runner(self, ctx, on_step, on_finish)
        runner.trace = trace
        if on_step is not None:
            ctx.start_journal()
        if checkpointed is not None:
            runner.checkpointed = checkpointed
        task = asyncio.get_running_loop().create_task(runner.main(requeue, dispatch, on_start))
        return WorkflowHandler(runner, task)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._wf_steps_cache = None  # type: ignore[attr-defined]


class _Runner:
    """Drives one run: routes events, runs step tasks, checkpoints, finishes once."""

    def __init__(
        self, workflow: Workflow, ctx: Context, on_step: StepHook | None, on_finish: FinishHook | None
    ) -> None:
        self.workflow = workflow
        self.ctx = ctx
        self.on_step = on_step
        self.on_finish = on_finish
        self.active = dict.fromkeys(workflow._steps, 0)
        self.tasks: set[asyncio.Task[None]] = set()
        self.outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.draining = False
        # Steps that completed and are writing their checkpoint: not idle yet.
        self.checkpointing = 0
        # Called when the run is idle waiting for a human answer.
        self.on_idle: Callable[[], None] | None = None
        self.checkpointed: Callable[[str], bool] = lambda name: True
        self.trace: telemetry.RunTrace | None = None
        ctx._runner = self

    async def main(
        self,
        requeue: list[tuple[str, Event]],
        dispatch: list[tuple[str | None, Event]],
        on_start: Callable[[Context], Awaitable[None]] | None,
    ) -> Any:
        timer = None
        result: Any = None
        error: BaseException | None = None
        try:
            if on_start is not None:
                await on_start(self.ctx)
            if self.workflow.timeout is not None:
                timer = asyncio.get_running_loop().call_later(self.workflow.timeout, self._timed_out)
            with collector_paused():  # a restored fan-out re-queues thousands of events
                for name, ev in requeue:
                    if name:
                        self._enqueue(name, ev)
                    else:
                        self.dispatch(ev)
                for target, ev in dispatch:
                    self.dispatch(ev, target)
            if not self.outcome.done():
                self._check_stalled()
            result = await self.outcome
        except BaseException as exc:
            error = exc
        finally:
            if timer is not None:
                timer.cancel()
            for task in list(self.tasks):
                task.cancel()
            self.ctx._runner = None
            self.ctx._stream.put_nowait(STREAM_END)
        if self.trace is not None and not isinstance(error, WorkflowSuspendedError):
            self.trace.finish(error)
        if self.on_finish is not None:
            await self.on_finish(self.ctx, result, error)
        if error is not None:
            raise error
        return result

    # -- routing -------------------------------------------------------------

    def dispatch(self, ev: Event, target: str | None = None) -> None:
        if self.outcome.done():
            return
        if not isinstance(ev, Event):
            raise WorkflowRuntimeError(f"send_event needs an Event, got {type(ev).__name__}")
        waiter = self.ctx.waiter_for(ev)
        if waiter is not None:
            waiter.future.set_result(ev)
            return
        if isinstance(ev, StopEvent):
            self.ctx._stream.put_nowait(ev)
            self.outcome.set_result(ev.result)
            return
        steps = self.workflow.accepting_steps(type(ev))
        if isinstance(ev, HumanResponseEvent):
            self.ctx.set_awaiting_input(False)
        if target is not None:
            if target not in steps:
                raise WorkflowRuntimeError(f"step {target!r} does not exist or does not accept {type(ev).__name__}")
            steps = (target,)
        if not steps:
            if isinstance(ev, InputRequiredEvent):
                self.ctx.set_awaiting_input(True)
                self.ctx._stream.put_nowait(ev)
                return
            raise WorkflowRuntimeError(f"no step accepts {type(ev).__name__}")
        for name in steps:
            self._enqueue(name, ev)

    def _enqueue(self, name: str, ev: Event) -> None:
        if not self.draining and self.active[name] < self.workflow._steps[name].num_workers:
            self._start(name, ev)
        else:
            self.ctx.queue(name, ev)

    def _start(self, name: str, ev: Event | None = None) -> None:
        """Run `ev` in step `name`, or the oldest event queued for it."""
        self.active[name] += 1
        token, ev = self.ctx.begin(name, ev)
        run = self._run_step(name, ev, token, None) if self.trace is None else self._traced(name, ev, token)
        task = asyncio.get_running_loop().create_task(run)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- execution -----------------------------------------------------------

    async def _traced(self, name: str, ev: Event, token: int) -> None:
        assert self.trace is not None
        span = self.trace.start_step(name, ev)
        try:
            await self._run_step(name, ev, token, span)
        finally:
            span.end()

    async def _run_step(self, name: str, ev: Event, token: int, span: telemetry.StepSpan | None) -> None:
        self.ctx.run_step_as(token)
        cfg = self.workflow._steps[name]
        method = getattr(self.workflow, name)
        kwargs: dict[str, Any] = {cfg.event_param: ev}
        if cfg.context_param is not None:
            kwargs[cfg.context_param] = self.ctx
        started = time.perf_counter()
        usage = begin_step()
        attempts = 0
        retries: list[dict[str, Any]] = []
        while True:
            attempt_started = time.perf_counter()
            self.ctx.run_attempt(attempts + 1)
            try:
                output = await method(**kwargs)
                break
            except Exception as exc:
                attempts += 1
                retries.append(
                    {
                        "attempt": attempts,
                        "error": f"{type(exc).__name__}: {exc}"[:500],
                        "duration_ms": (time.perf_counter() - attempt_started) * 1000.0,
                    }
                )
                if span is not None:
                    span.attempt_failed(exc, attempts)
                delay = None
                if cfg.retry_policy is not None:
                    delay = cfg.retry_policy.next(time.perf_counter() - started, attempts, exc)
                if delay is None:
                    error = WorkflowRuntimeError(f"step '{name}' failed: {type(exc).__name__}: {exc}", step=name)
                    self._fail_step(span, attempts, error, exc, recorded=True)
                    return
                await asyncio.sleep(delay)
        if output is not None and not isinstance(output, Event):
            self._fail_step(
                span,
                attempts + 1,
                WorkflowRuntimeError(
                    f"step '{name}' returned {type(output).__name__}, not an Event or None", step=name
                ),
            )
            return
        self.ctx.end(token)
        self.active[name] -= 1
        if self.on_step is not None and self.checkpointed(name):
            try:
                state = self.ctx.checkpoint_record()
            except Exception as exc:
                self._fail_step(span, attempts + 1, WorkflowRuntimeError(f"step '{name}': {exc}", step=name), exc)
                return
            # Until its checkpoint is written, the output belongs in every other
            # state recorded meanwhile, or a restore from one of those would lose it.
            if output is not None:
                self.ctx.hold_output(token, output)
            self.checkpointing += 1
            try:
                done = StepDone(name, ev, output, time.perf_counter() - started, usage, state, retries)
                seq = await self.on_step(self.ctx, done)
            except Exception as exc:
                error = WorkflowRuntimeError(f"step '{name}': checkpoint failed: {exc}", step=name)
                self._fail_step(span, attempts + 1, error, exc)
                return
            finally:
                self.checkpointing -= 1
                self.ctx.release_output(token)
        else:
            seq = None
        if span is not None:
            # Ended before the output moves on: the span is the execution and its checkpoint.
            span.succeeded(output, attempts + 1, seq)
            span.end()
        if output is not None:
            try:
                self.dispatch(output)
            except WorkflowRuntimeError as exc:
                self._fail(WorkflowRuntimeError(f"step '{name}': {exc}", step=name))
                return
        while self.ctx.has_queued(name) and not self.draining and self.active[name] < cfg.num_workers:
            self._start(name)
        self._check_stalled()

    def _check_stalled(self) -> None:
        if self.outcome.done() or self.ctx.has_in_flight or self.checkpointing:
            return
        if self.draining:
            # Every step that was running has checkpointed; what is queued is in the snapshot.
            self._fail(WorkflowSuspendedError("run suspended at a checkpoint"))
            return
        if self.ctx.has_queued():
            return
        if self.ctx.is_waiting_for_input:
            if self.on_idle is not None:
                self.on_idle()
            return
        self._fail(WorkflowRuntimeError("run stalled: no step is running or queued and no StopEvent was returned"))

    def _fail_step(
        self,
        span: telemetry.StepSpan | None,
        attempt: int,
        error: BaseException,
        cause: BaseException | None = None,
        recorded: bool = False,
    ) -> None:
        """Fail the run because step execution failed; `recorded`: its exception is on the span already."""
        self._fail(error, cause)
        if span is not None:
            span.failed(error, attempt, recorded)

    def _fail(self, error: BaseException, cause: BaseException | None = None) -> None:
        if cause is not None:
            error.__cause__ = cause
        if not self.outcome.done():
            self.outcome.set_exception(error)

    def _timed_out(self) -> None:
        self._fail(WorkflowTimeoutError(f"run timed out after {self.workflow.timeout} seconds"))

    def drain(self) -> None:
        """Start no new step; once running steps have completed, end with WorkflowSuspendedError."""
        self.draining = True
        self._check_stalled()

    def cancel(self) -> None:
        self._fail(WorkflowCancelledError("run cancelled"))
