"""Stream listeners: each event a step writes, with the step execution and attempt that wrote it."""

from __future__ import annotations

import asyncio

import pytest

from wfdash.workflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    StartEvent,
    StopEvent,
    StreamDelta,
    StreamWrite,
    Workflow,
    step,
)
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.engine_only


class Item(Event):
    word: str


class Written(Event):
    text: str


class Spelled(Workflow):
    """Fans out one event per word; a step with two workers streams each word's letters."""

    @step
    async def split(self, ev: StartEvent, ctx: Context) -> Item | None:
        for word in ev.words:
            ctx.send_event(Item(word=word))
        return None

    @step(num_workers=2)
    async def spell(self, ev: Item, ctx: Context) -> Written:
        for letter in ev.word:
            ctx.write_event_to_stream(StreamDelta(delta=letter))
            await asyncio.sleep(0)
        return Written(text=ev.word)

    @step
    async def join(self, ev: Written, ctx: Context) -> StopEvent | None:
        done = ctx.collect_events(ev, [Written, Written])
        return StopEvent(result=sorted(e.text for e in done)) if done else None


async def test_it_tells_listeners_which_step_execution_wrote_each_event() -> None:
    writes: list[StreamWrite] = []
    handler = Spelled().run(words=["abc", "xyz"])
    handler.ctx.add_stream_listener(writes.append)
    assert await handler == ["abc", "xyz"]
    assert {w.step for w in writes} == {"spell"} and all(w.attempt == 1 for w in writes)
    by_execution: dict[int | None, str] = {}
    for w in writes:
        assert isinstance(w.event, StreamDelta)
        by_execution[w.execution] = by_execution.get(w.execution, "") + w.event.delta
    # Two concurrent executions, interleaved on the loop, told apart by their in-flight ids.
    assert sorted(by_execution.values()) == ["abc", "xyz"] and None not in by_execution


async def test_it_still_queues_the_events_for_stream_events_unless_asked_not_to() -> None:
    handler = Spelled().run(words=["ab", "c"])
    handler.ctx.add_stream_listener(lambda w: None)
    streamed = [ev async for ev in handler.stream_events()]
    assert sorted(e.delta for e in streamed if isinstance(e, StreamDelta)) == ["a", "b", "c"]

    quiet = Spelled().run(words=["ab", "c"])
    quiet.ctx.add_stream_listener(lambda w: None, queue=False)
    assert [type(ev) for ev in [ev async for ev in quiet.stream_events()]] == [StopEvent]


class Flaky(Workflow):
    attempts = 0

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0))
    async def talk(self, ev: StartEvent, ctx: Context) -> StopEvent:
        Flaky.attempts += 1
        ctx.write_event_to_stream(StreamDelta(delta=f"try {Flaky.attempts}"))
        if Flaky.attempts == 1:
            raise RuntimeError("the model hung up")
        return StopEvent(result="ok")


async def test_a_retried_step_streams_under_the_same_execution_with_the_next_attempt() -> None:
    Flaky.attempts = 0
    writes: list[StreamWrite] = []
    handler = WorkflowCheckpointer(Flaky()).run()
    handler.ctx.add_stream_listener(writes.append)
    assert await handler == "ok"
    assert [(w.step, w.attempt, w.event.delta) for w in writes] == [("talk", 1, "try 1"), ("talk", 2, "try 2")]  # type: ignore[attr-defined]
    assert writes[0].execution == writes[1].execution is not None
