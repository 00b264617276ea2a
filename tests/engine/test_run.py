"""Workflow.run(): handler, results, concurrency, timeout, failures, retries, cancellation, stalls."""

import asyncio

import pytest

from wfdash.workflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowCancelledError,
    WorkflowHandler,
    WorkflowRuntimeError,
    WorkflowTimeoutError,
    step,
)

pytestmark = pytest.mark.engine_only


class Middle(Event):
    text: str


class Job(Event):
    i: int


class JobDone(Event):
    i: int


class EchoFlow(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Middle:
        return Middle(text=ev.topic.upper())

    @step
    async def second(self, ev: Middle) -> StopEvent:
        return StopEvent(result=f"<{ev.text}>")


async def test_it_returns_a_handler_at_once_and_the_result_when_awaited() -> None:
    handler = EchoFlow().run(topic="owls")
    assert isinstance(handler, WorkflowHandler)
    assert not handler.done()  # nothing ran yet: run() does not block
    assert isinstance(handler.run_id, str) and handler.run_id
    assert handler.ctx.run_id == handler.run_id
    assert await handler == "<OWLS>"
    assert handler.done() and handler.result() == "<OWLS>"


async def test_it_gives_every_run_its_own_run_id() -> None:
    wf = EchoFlow()
    a, b = wf.run(topic="a"), wf.run(topic="b")
    assert a.run_id != b.run_id
    assert await asyncio.gather(a, b) == ["<A>", "<B>"]


# -- concurrency ---------------------------------------------------------------


class ParallelFlow(Workflow):
    def __init__(self, jobs: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.jobs = jobs
        self.current = 0
        self.max_seen = 0
        self.gate = asyncio.Event()
        self.gave_up_waiting = 0

    @step
    async def fan_out(self, ev: StartEvent, ctx: Context) -> Job | None:
        for i in range(self.jobs):
            ctx.send_event(Job(i=i))
        return None

    @step(num_workers=3)
    async def work(self, ev: Job) -> JobDone:
        self.current += 1
        self.max_seen = max(self.max_seen, self.current)
        if self.current == 3:
            self.gate.set()
        try:
            # Wait until three calls overlap; a bounded wait keeps a broken engine from hanging the test.
            await asyncio.wait_for(self.gate.wait(), 2)
        except TimeoutError:
            self.gave_up_waiting += 1
        self.current -= 1
        return JobDone(i=ev.i)

    @step
    async def fan_in(self, ev: JobDone, ctx: Context) -> StopEvent | None:
        done = ctx.collect_events(ev, [JobDone] * self.jobs)
        if done is None:
            return None
        return StopEvent(result=sorted(e.i for e in done))


async def test_it_overlaps_up_to_num_workers_calls_of_a_step() -> None:
    wf = ParallelFlow(jobs=7)
    assert await wf.run() == list(range(7))
    assert wf.max_seen == 3
    assert wf.gave_up_waiting == 0  # the first three calls ran together


class SerialFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.max_seen = 0
        self.calls = 0

    @step
    async def fan_out(self, ev: StartEvent, ctx: Context) -> Job | None:
        for i in range(4):
            ctx.send_event(Job(i=i))
        return None

    @step
    async def work(self, ev: Job) -> JobDone:
        self.current += 1
        self.calls += 1
        self.max_seen = max(self.max_seen, self.current)
        for _ in range(3):
            await asyncio.sleep(0)
        self.current -= 1
        return JobDone(i=ev.i)

    @step
    async def fan_in(self, ev: JobDone, ctx: Context) -> StopEvent | None:
        done = ctx.collect_events(ev, [JobDone] * 4)
        return None if done is None else StopEvent(result=len(done))


async def test_it_runs_a_default_step_one_call_at_a_time() -> None:
    wf = SerialFlow()
    assert await wf.run() == 4
    assert wf.calls == 4
    assert wf.max_seen == 1


# -- timeout, failures, retries ------------------------------------------------


class SleepyFlow(Workflow):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.started = asyncio.Event()
        self.cancelled = False

    @step
    async def sleep(self, ev: StartEvent) -> StopEvent:
        self.started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return StopEvent(result="woke")


async def test_it_raises_a_timeout_error_when_the_run_exceeds_its_timeout() -> None:
    wf = SleepyFlow(timeout=0.2)
    with pytest.raises(WorkflowTimeoutError):
        await wf.run()
    assert wf.cancelled


class Boom(ValueError):
    pass


class FailingFlow(Workflow):
    @step
    async def fine(self, ev: StartEvent) -> Middle:
        return Middle(text="x")

    @step
    async def explode(self, ev: Middle) -> StopEvent:
        raise Boom("kaboom")


async def test_it_wraps_a_step_exception_naming_the_step() -> None:
    with pytest.raises(WorkflowRuntimeError) as info:
        await FailingFlow().run()
    err = info.value
    assert "explode" in str(err) and "kaboom" in str(err)
    assert err.step == "explode"
    assert isinstance(err.__cause__, Boom)
    assert str(err.__cause__) == "kaboom"


class FlakyFlow(Workflow):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0))
    async def flaky(self, ev: StartEvent) -> StopEvent:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise Boom(f"attempt {self.attempts}")
        return StopEvent(result=f"ok after {self.attempts}")


async def test_it_retries_a_failing_step_until_it_succeeds() -> None:
    wf = FlakyFlow(failures=2)
    assert await wf.run() == "ok after 3"
    assert wf.attempts == 3


async def test_it_gives_up_after_the_maximum_attempts() -> None:
    wf = FlakyFlow(failures=10)
    with pytest.raises(WorkflowRuntimeError) as info:
        await wf.run()
    assert wf.attempts == 3
    assert info.value.step == "flaky"
    assert isinstance(info.value.__cause__, Boom)
    assert str(info.value.__cause__) == "attempt 3"


async def test_it_does_not_retry_without_a_policy() -> None:
    class NoRetry(FlakyFlow):
        @step
        async def flaky(self, ev: StartEvent) -> StopEvent:
            self.attempts += 1
            raise Boom("once")

    wf = NoRetry(failures=10)
    with pytest.raises(WorkflowRuntimeError):
        await wf.run()
    assert wf.attempts == 1


def test_it_validates_the_retry_policy_arguments() -> None:
    with pytest.raises(ValueError):
        ConstantDelayRetryPolicy(maximum_attempts=0)
    with pytest.raises(ValueError):
        ConstantDelayRetryPolicy(delay=-1)
    policy = ConstantDelayRetryPolicy(maximum_attempts=2, delay=0.5)
    assert policy.next(0.0, 1, Boom()) == 0.5
    assert policy.next(0.0, 2, Boom()) is None


# -- cancellation --------------------------------------------------------------


async def test_it_cancels_a_run_and_its_running_step() -> None:
    wf = SleepyFlow()
    handler = wf.run()
    await asyncio.wait_for(wf.started.wait(), 5)
    await handler.cancel_run()
    with pytest.raises(WorkflowCancelledError):
        await handler
    assert wf.cancelled


# -- bad returns and stalls ----------------------------------------------------


class BadReturnFlow(Workflow):
    @step
    async def liar(self, ev: StartEvent) -> StopEvent:
        return {"result": 1}  # type: ignore[return-value]


async def test_it_fails_clearly_when_a_step_returns_a_non_event() -> None:
    with pytest.raises(WorkflowRuntimeError, match="liar.*dict.*not an Event") as info:
        await BadReturnFlow().run()
    assert info.value.step == "liar"


class UnroutedFlow(Workflow):
    @step
    async def first(self, ev: StartEvent) -> Middle:
        return Job(i=1)  # type: ignore[return-value]  # declared Middle, returns an event nobody accepts

    @step
    async def second(self, ev: Middle) -> StopEvent:
        return StopEvent()


async def test_it_fails_when_a_step_returns_an_event_no_step_accepts() -> None:
    with pytest.raises(WorkflowRuntimeError, match="first.*no step accepts Job"):
        await UnroutedFlow().run()


class StallFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    @step
    async def first(self, ev: StartEvent) -> Middle | None:
        self.calls.append("first")
        return None

    @step
    async def second(self, ev: Middle) -> StopEvent | None:
        self.calls.append("second")
        return None


async def test_it_reports_a_stalled_run() -> None:
    wf = StallFlow()
    with pytest.raises(WorkflowRuntimeError, match="stalled"):
        await asyncio.wait_for(wf.run(), 5)
    assert wf.calls == ["first"]


# -- many runs on one instance -------------------------------------------------


class StoreFlow(Workflow):
    @step
    async def remember(self, ev: StartEvent, ctx: Context) -> Middle:
        await ctx.store.set("topic", ev.topic)
        await ctx.store.set("hits", 1)
        await asyncio.sleep(0)
        return Middle(text=ev.topic)

    @step
    async def recall(self, ev: Middle, ctx: Context) -> StopEvent:
        await asyncio.sleep(0)
        hits = await ctx.store.get("hits")
        await ctx.store.set("hits", hits + 1)
        return StopEvent(result=(await ctx.store.get("topic"), ev.text, hits + 1))


async def test_it_serves_many_concurrent_runs_with_separate_state() -> None:
    wf = StoreFlow()
    handlers = [wf.run(topic=f"t{i}") for i in range(20)]
    results = await asyncio.gather(*handlers)
    assert results == [(f"t{i}", f"t{i}", 2) for i in range(20)]
    assert len({h.run_id for h in handlers}) == 20
    assert [await h.ctx.store.get("topic") for h in handlers] == [f"t{i}" for i in range(20)]
