"""Context: the store, fan-out and fan-in, targeted events, waiting for events, the event stream."""

import asyncio

import pytest

from wfdash.workflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowRuntimeError,
    step,
)

pytestmark = pytest.mark.engine_only


class Chunk(Event):
    i: int


class Summary(Event):
    i: int
    text: str


class Ping(Event):
    note: str = ""


class Progress(Event):
    pct: int


# -- store ---------------------------------------------------------------------


class StoreFlow(Workflow):
    @step
    async def use_store(self, ev: StartEvent, ctx: Context) -> StopEvent:
        await ctx.store.set("answer", 42)
        await ctx.set("alias", "via ctx.set")
        missing = None
        try:
            await ctx.store.get("nope")
        except KeyError as exc:
            missing = str(exc)
        return StopEvent(
            result={
                "answer": await ctx.store.get("answer"),
                "alias": await ctx.get("alias"),
                "default": await ctx.store.get("nope", default="fallback"),
                "none_default": await ctx.store.get("nope", None),
                "missing": missing,
            }
        )


async def test_it_stores_and_reads_values_with_defaults() -> None:
    handler = StoreFlow().run()
    result = await handler
    assert result["answer"] == 42
    assert result["alias"] == "via ctx.set"
    assert result["default"] == "fallback"
    assert result["none_default"] is None
    assert "nope" in result["missing"]
    assert sorted(handler.ctx.store.keys()) == ["alias", "answer"]


async def test_it_raises_key_error_for_a_missing_key_without_default() -> None:
    handler = StoreFlow().run()
    await handler
    with pytest.raises(KeyError, match="never_set"):
        await handler.ctx.store.get("never_set")


# -- fan-out / fan-in ----------------------------------------------------------


class FanFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.summarized: list[int] = []
        self.collect_results: list[object] = []

    @step
    async def split(self, ev: StartEvent, ctx: Context) -> Chunk | None:
        for i in range(ev.n):
            ctx.send_event(Chunk(i=i))
        return None

    @step(num_workers=4)
    async def summarize(self, ev: Chunk) -> Summary:
        # Later chunks finish first, so arrival order differs from send order.
        for _ in range(10 - ev.i):
            await asyncio.sleep(0)
        self.summarized.append(ev.i)
        return Summary(i=ev.i, text=f"s{ev.i}")

    @step
    async def join(self, ev: Summary, ctx: Context) -> StopEvent | None:
        got = ctx.collect_events(ev, [Summary] * 4)
        self.collect_results.append(None if got is None else [e.i for e in got])
        if got is None:
            return None
        return StopEvent(result=[e.i for e in got])


async def test_it_fans_out_with_send_event_and_fans_in_with_collect_events() -> None:
    wf = FanFlow()
    result = await wf.run(n=4)
    assert sorted(wf.summarized) == [0, 1, 2, 3]
    assert wf.summarized == [3, 2, 1, 0]
    # None until the fourth arrived, then all four in arrival order.
    assert wf.collect_results == [None, None, None, [3, 2, 1, 0]]
    assert result == [3, 2, 1, 0]


class Left(Event):
    v: str


class Right(Event):
    v: str


class OrderFlow(Workflow):
    @step
    async def split(self, ev: StartEvent, ctx: Context) -> Left | Right | None:
        ctx.send_event(Right(v="r"))
        ctx.send_event(Left(v="l"))
        return None

    @step
    async def join(self, ev: Left | Right, ctx: Context) -> StopEvent | None:
        got = ctx.collect_events(ev, [Left, Right])
        if got is None:
            return None
        return StopEvent(result=[type(e).__name__ for e in got])


async def test_it_returns_collected_events_in_the_expected_order() -> None:
    assert await OrderFlow().run() == ["Left", "Right"]


# -- targeted send_event -------------------------------------------------------


class TargetFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    @step
    async def start(self, ev: StartEvent, ctx: Context) -> Ping | None:
        ctx.send_event(Ping(note="hi"), step=ev.target)
        return None

    @step
    async def a(self, ev: Ping) -> StopEvent | None:
        self.calls.append("a")
        return None

    @step
    async def b(self, ev: Ping) -> StopEvent | None:
        self.calls.append("b")
        await asyncio.sleep(0)
        return StopEvent(result="b")


async def test_it_sends_an_event_to_every_accepting_step_by_default() -> None:
    wf = TargetFlow()
    assert await wf.run(target=None) == "b"
    assert sorted(wf.calls) == ["a", "b"]


async def test_it_sends_an_event_only_to_the_named_step() -> None:
    wf = TargetFlow()
    assert await wf.run(target="b") == "b"
    assert wf.calls == ["b"]


async def test_it_rejects_a_target_step_that_does_not_accept_the_event() -> None:
    with pytest.raises(WorkflowRuntimeError, match="start.*'nope'"):
        await TargetFlow().run(target="nope")


# -- wait_for_event ------------------------------------------------------------


class WaitFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.unmatched: list[str] = []

    @step
    async def ask(self, ev: StartEvent, ctx: Context) -> StopEvent:
        answer = await ctx.wait_for_event(
            HumanResponseEvent,
            waiter_event=InputRequiredEvent(prefix="who?"),
            requirements={"user": "bob"},
        )
        return StopEvent(result=answer.response)

    @step
    async def other(self, ev: HumanResponseEvent) -> None:
        self.unmatched.append(ev.response)


async def test_it_waits_for_an_event_matching_the_requirements() -> None:
    wf = WaitFlow()
    handler = wf.run()
    async for ev in handler.stream_events():
        if isinstance(ev, InputRequiredEvent):
            assert ev.prefix == "who?"
            handler.ctx.send_event(HumanResponseEvent(response="from alice", user="alice"))
            handler.ctx.send_event(HumanResponseEvent(response="from bob", user="bob"))
    assert await handler == "from bob"
    assert wf.unmatched == ["from alice"]


# -- the event stream ----------------------------------------------------------


class StreamFlow(Workflow):
    @step
    async def work(self, ev: StartEvent, ctx: Context) -> StopEvent:
        for pct in (10, 50, 100):
            ctx.write_event_to_stream(Progress(pct=pct))
            await asyncio.sleep(0)
        return StopEvent(result="done")


async def test_it_streams_written_events_then_the_stop_event_and_ends() -> None:
    handler = StreamFlow().run()
    seen = [ev async for ev in handler.stream_events()]
    assert [type(e).__name__ for e in seen] == ["Progress", "Progress", "Progress", "StopEvent"]
    assert [e.pct for e in seen[:3]] == [10, 50, 100]
    assert seen[-1].result == "done"
    assert await handler == "done"


async def test_it_ends_the_stream_of_a_failed_run() -> None:
    class FailingStream(Workflow):
        @step
        async def work(self, ev: StartEvent, ctx: Context) -> StopEvent:
            ctx.write_event_to_stream(Progress(pct=1))
            raise RuntimeError("nope")

    handler = FailingStream().run()
    seen = [ev async for ev in handler.stream_events()]
    assert [type(e).__name__ for e in seen] == ["Progress"]
    with pytest.raises(WorkflowRuntimeError):
        await handler
    # A second reader also terminates.
    assert [ev async for ev in handler.stream_events()] == []


async def test_it_refuses_send_event_after_the_run_ended() -> None:
    handler = StreamFlow().run()
    await handler
    with pytest.raises(WorkflowRuntimeError, match="not running"):
        handler.ctx.send_event(Ping())
