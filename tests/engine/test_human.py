"""Human in the loop: InputRequiredEvent out, HumanResponseEvent back in."""

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
    step,
)
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.engine_only


class Draft(Event):
    text: str


class ApprovalFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    @step
    async def write(self, ev: StartEvent, ctx: Context) -> Draft:
        self.calls.append("write")
        await ctx.store.set("topic", ev.topic)
        return Draft(text=f"draft about {ev.topic}")

    @step
    async def ask(self, ev: Draft, ctx: Context) -> InputRequiredEvent:
        self.calls.append("ask")
        await ctx.store.set("draft", ev.text)
        return InputRequiredEvent(prefix=f"Publish '{ev.text}'?")

    @step
    async def decide(self, ev: HumanResponseEvent, ctx: Context) -> StopEvent:
        self.calls.append("decide")
        draft = await ctx.store.get("draft")
        return StopEvent(result=f"{draft}: {ev.response}")


async def test_it_pauses_for_input_and_resumes_with_the_human_response() -> None:
    wf = ApprovalFlow()
    handler = wf.run(topic="owls")
    seen: list[Event] = []
    async for ev in handler.stream_events():
        seen.append(ev)
        if isinstance(ev, InputRequiredEvent):
            assert ev.prefix == "Publish 'draft about owls'?"
            assert handler.ctx.is_waiting_for_input is True
            assert not handler.done()
            handler.ctx.send_event(HumanResponseEvent(response="yes"))
            assert handler.ctx.is_waiting_for_input is False
    assert [type(e).__name__ for e in seen] == ["InputRequiredEvent", "StopEvent"]
    assert await handler == "draft about owls: yes"
    assert wf.calls == ["write", "ask", "decide"]


async def test_it_stays_idle_instead_of_stalling_while_waiting_for_input() -> None:
    wf = ApprovalFlow()
    handler = wf.run(topic="owls")
    idle = asyncio.Event()
    handler.on_idle(idle.set)
    await asyncio.wait_for(idle.wait(), 5)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not handler.done()  # not failed as stalled
    assert handler.ctx.is_waiting_for_input
    handler.ctx.send_event(HumanResponseEvent(response="no"))
    assert await handler == "draft about owls: no"


async def test_it_resumes_a_checkpointed_run_with_the_human_answer() -> None:
    wf = ApprovalFlow()
    ckptr = WorkflowCheckpointer(wf)
    handler = ckptr.run(topic="bats")
    idle = asyncio.Event()
    handler.on_idle(idle.set)
    await asyncio.wait_for(idle.wait(), 5)
    await handler.cancel_run()  # the process "went away" while waiting
    (asked,) = ckptr.filter_checkpoints(run_id=handler.run_id, last_completed_step="ask")
    assert isinstance(asked.output_event, InputRequiredEvent)

    resumed = ckptr.resume(asked, send=[HumanResponseEvent(response="ship it")])
    assert resumed.run_id == handler.run_id
    assert await resumed == "draft about bats: ship it"
    assert wf.calls == ["write", "ask", "decide"]  # nothing before the checkpoint ran again
    assert [c.seq for c in ckptr.checkpoints[handler.run_id]] == [1, 2, 3]


class Side(Event):
    pass


class AskAndWorkFlow(Workflow):
    @step
    async def start(self, ev: StartEvent, ctx: Context) -> Draft | Side | None:
        ctx.send_event(Draft(text="d"))
        ctx.send_event(Side())
        return None

    @step
    async def ask(self, ev: Draft) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="ok?")

    @step
    async def side_work(self, ev: Side) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        return None

    @step
    async def decide(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=ev.response)


async def test_it_restores_the_waiting_for_input_state_from_a_checkpoint() -> None:
    ckptr = WorkflowCheckpointer(AskAndWorkFlow())
    handler = ckptr.run()
    idle = asyncio.Event()
    handler.on_idle(idle.set)
    await asyncio.wait_for(idle.wait(), 5)
    await handler.cancel_run()
    (side,) = ckptr.filter_checkpoints(run_id=handler.run_id, last_completed_step="side_work")
    assert side.ctx_state["awaiting_input"] is True  # the question was asked before side_work ended

    fork = ckptr.run_from(side)  # nothing to dispatch or re-queue: only the open question
    fork_idle = asyncio.Event()
    fork.on_idle(fork_idle.set)
    await asyncio.wait_for(fork_idle.wait(), 5)
    assert fork.ctx.is_waiting_for_input
    fork.ctx.send_event(HumanResponseEvent(response="fine"))
    assert await fork == "fine"
