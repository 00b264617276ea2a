"""WorkflowCheckpointer: checkpoints, filters, run_from, resume, stores, snapshot size and copies."""

import asyncio
import json
from collections import Counter
from datetime import datetime

import pytest

from wfdash.workflow import (
    Context,
    Event,
    SerializationError,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowRuntimeError,
    step,
)
from wfdash.workflow.checkpointer import Checkpoint, InMemoryCheckpointStore, WorkflowCheckpointer

pytestmark = pytest.mark.engine_only


class Outline(Event):
    topic: str
    points: int = 3


class Draft(Event):
    text: str


class Note(Event):
    text: str


class ThreeStepFlow(Workflow):
    def __init__(self, fail_at: str | None = None) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.fail_at = fail_at

    def _enter(self, name: str) -> None:
        self.calls[name] += 1
        if self.fail_at == name:
            raise RuntimeError(f"{name} broke")

    @step
    async def outline(self, ev: StartEvent, ctx: Context) -> Outline:
        self._enter("outline")
        await ctx.store.set("topic", ev.topic)
        return Outline(topic=ev.topic)

    @step
    async def draft(self, ev: Outline, ctx: Context) -> Draft:
        self._enter("draft")
        await ctx.store.set("points", ev.points)
        return Draft(text=f"{ev.topic} x{ev.points}")

    @step
    async def polish(self, ev: Draft, ctx: Context) -> StopEvent:
        self._enter("polish")
        suffix = await ctx.store.get("suffix", "")
        return StopEvent(result=f"{ev.text}!{suffix}")


async def _run(ckptr: WorkflowCheckpointer, **kwargs: object) -> tuple[str, object]:
    handler = ckptr.run(**kwargs)
    return handler.run_id, await handler


# -- recording -----------------------------------------------------------------


async def test_it_records_one_checkpoint_per_completed_step() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow())
    run_id, result = await _run(ckptr, topic="owls")
    assert result == "owls x3!"
    assert list(ckptr.checkpoints) == [run_id]
    cps = ckptr.checkpoints[run_id]
    assert [c.seq for c in cps] == [1, 2, 3]
    assert [c.last_completed_step for c in cps] == ["outline", "draft", "polish"]
    assert [c.run_id for c in cps] == [run_id] * 3
    assert len({c.id_ for c in cps}) == 3

    first, second, third = cps
    assert isinstance(first.input_event, StartEvent) and first.input_event.topic == "owls"
    assert first.output_event == Outline(topic="owls")
    assert second.input_event.model_dump() == {"topic": "owls", "points": 3}
    assert second.output_event == Draft(text="owls x3")
    assert isinstance(third.output_event, StopEvent) and third.output_event.result == "owls x3!"
    # The snapshot is taken after the step ran, before its output is dispatched.
    assert first.ctx_state["store"] == {"topic": "owls"}
    assert second.ctx_state["store"] == {"topic": "owls", "points": 3}
    assert first.ctx_state["queued"] == [] and first.ctx_state["in_flight"] == []
    for c in cps:
        assert isinstance(c.created_at, datetime) and c.created_at.tzinfo is not None
        assert isinstance(c.duration_ms, float) and c.duration_ms >= 0
    assert first.created_at <= second.created_at <= third.created_at


class NoneStepFlow(Workflow):
    @step
    async def start(self, ev: StartEvent, ctx: Context) -> Note | None:
        ctx.send_event(Note(text="sent"))
        return None

    @step
    async def finish(self, ev: Note) -> StopEvent:
        return StopEvent(result=ev.text)


async def test_it_checkpoints_a_step_that_returned_none() -> None:
    ckptr = WorkflowCheckpointer(NoneStepFlow())
    run_id, result = await _run(ckptr)
    assert result == "sent"
    first, second = ckptr.checkpoints[run_id]
    assert first.last_completed_step == "start"
    assert first.output_event is None
    # The event it sent is already queued or running, so it is in the snapshot.
    pending = first.ctx_state["queued"] + first.ctx_state["in_flight"]
    assert pending == [{"step": "finish", "event": {"type": "Note", "data": {"text": "sent"}}}]
    assert second.last_completed_step == "finish"


async def test_it_does_not_checkpoint_a_failed_step() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow(fail_at="draft"))
    handler = ckptr.run(topic="owls")
    with pytest.raises(WorkflowRuntimeError, match="draft"):
        await handler
    assert [c.last_completed_step for c in ckptr.checkpoints[handler.run_id]] == ["outline"]


async def test_it_does_not_checkpoint_disabled_steps() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow(), disabled_steps=["draft"])
    run_id, _ = await _run(ckptr, topic="a")
    assert [(c.seq, c.last_completed_step) for c in ckptr.checkpoints[run_id]] == [(1, "outline"), (2, "polish")]

    ckptr.disable_checkpoint("outline")
    run_id, _ = await _run(ckptr, topic="b")
    assert [c.last_completed_step for c in ckptr.checkpoints[run_id]] == ["polish"]

    ckptr.enable_checkpoint("draft")
    ckptr.enable_checkpoint("outline")
    run_id, _ = await _run(ckptr, topic="c")
    assert [c.last_completed_step for c in ckptr.checkpoints[run_id]] == ["outline", "draft", "polish"]


def test_it_rejects_an_unknown_step_name_when_disabling() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow())
    with pytest.raises(ValueError, match="'drafts'"):
        ckptr.disable_checkpoint("drafts")
    with pytest.raises(ValueError, match="'nope'"):
        ckptr.enable_checkpoint("nope")
    with pytest.raises(ValueError, match="'typo'"):
        WorkflowCheckpointer(ThreeStepFlow(), disabled_steps=("typo",))


# -- filtering -----------------------------------------------------------------


async def test_it_filters_checkpoints_by_each_criterion_and_their_combination() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow())
    run_a, _ = await _run(ckptr, topic="a")
    run_b, _ = await _run(ckptr, topic="b")
    assert set(ckptr.checkpoints) == {run_a, run_b}

    assert [c.seq for c in ckptr.filter_checkpoints(run_id=run_b)] == [1, 2, 3]
    assert all(c.run_id == run_b for c in ckptr.filter_checkpoints(run_id=run_b))

    drafts = ckptr.filter_checkpoints(last_completed_step="draft")
    assert [(c.run_id, c.last_completed_step) for c in drafts] == [(run_a, "draft"), (run_b, "draft")]

    by_class = ckptr.filter_checkpoints(input_event_type=StartEvent)
    by_name = ckptr.filter_checkpoints(input_event_type="StartEvent")
    assert [c.id_ for c in by_class] == [c.id_ for c in by_name]
    assert [c.last_completed_step for c in by_class] == ["outline", "outline"]

    assert [c.last_completed_step for c in ckptr.filter_checkpoints(output_event_type=StopEvent)] == [
        "polish",
        "polish",
    ]
    assert [c.last_completed_step for c in ckptr.filter_checkpoints(output_event_type="Draft")] == ["draft", "draft"]

    both = ckptr.filter_checkpoints(run_id=run_a, output_event_type=Draft)
    assert [(c.run_id, c.last_completed_step) for c in both] == [(run_a, "draft")]
    assert ckptr.filter_checkpoints(last_completed_step="draft", input_event_type=StartEvent) == []


def test_it_requires_at_least_one_filter_criterion() -> None:
    with pytest.raises(ValueError):
        WorkflowCheckpointer(ThreeStepFlow()).filter_checkpoints()


# -- run_from ------------------------------------------------------------------


async def test_it_runs_from_a_checkpoint_rerunning_only_later_steps() -> None:
    wf = ThreeStepFlow()
    ckptr = WorkflowCheckpointer(wf)
    run_id, original = await _run(ckptr, topic="owls")
    after_outline = ckptr.checkpoints[run_id][0]
    assert wf.calls == {"outline": 1, "draft": 1, "polish": 1}

    handler = ckptr.run_from(after_outline)
    assert handler.run_id != run_id
    assert await handler == original
    assert wf.calls == {"outline": 1, "draft": 2, "polish": 2}
    assert ckptr.parents[handler.run_id] == after_outline.id_
    assert [c.last_completed_step for c in ckptr.checkpoints[handler.run_id]] == ["draft", "polish"]
    assert [c.seq for c in ckptr.checkpoints[handler.run_id]] == [1, 2]
    # The restored store carries on.
    assert await handler.ctx.store.get("topic") == "owls"


async def test_it_runs_from_a_checkpoint_on_a_new_workflow_instance() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow())
    run_id, original = await _run(ckptr, topic="owls")
    fresh = ThreeStepFlow()
    ckptr.workflow = fresh
    handler = ckptr.run_from(ckptr.checkpoints[run_id][1])
    assert await handler == original
    assert fresh.calls == {"polish": 1}


async def test_it_runs_from_a_checkpoint_with_an_edited_output_event() -> None:
    wf = ThreeStepFlow()
    ckptr = WorkflowCheckpointer(wf)
    run_id, _ = await _run(ckptr, topic="owls")
    after_outline = ckptr.checkpoints[run_id][0]
    assert await ckptr.run_from(after_outline, output_event={"topic": "bats", "points": 5}) == "bats x5!"
    assert await ckptr.run_from(after_outline, output_event=Outline(topic="cats", points=1)) == "cats x1!"
    # The checkpoint itself is untouched.
    assert after_outline.output_event == Outline(topic="owls")


@pytest.mark.parametrize(
    "edit",
    [{"topic": "bats", "pionts": 5}, {"topic": "bats", "points": "many"}, {"points": 2}],
    ids=["unknown-field", "wrong-type", "missing-required"],
)
async def test_it_rejects_an_invalid_output_event_edit_and_runs_nothing(edit: dict[str, object]) -> None:
    wf = ThreeStepFlow()
    ckptr = WorkflowCheckpointer(wf)
    run_id, _ = await _run(ckptr, topic="owls")
    calls_before = dict(wf.calls)
    with pytest.raises(SerializationError, match="Outline"):
        ckptr.run_from(ckptr.checkpoints[run_id][0], output_event=edit)
    await asyncio.sleep(0)
    assert wf.calls == calls_before
    assert list(ckptr.checkpoints) == [run_id]
    assert ckptr.parents == {}


async def test_it_runs_from_a_checkpoint_with_store_overrides() -> None:
    ckptr = WorkflowCheckpointer(ThreeStepFlow())
    run_id, _ = await _run(ckptr, topic="owls")
    after_draft = ckptr.checkpoints[run_id][1]
    handler = ckptr.run_from(after_draft, store={"suffix": "?!", "topic": "changed"})
    assert await handler == "owls x3!?!"
    assert await handler.ctx.store.get("topic") == "changed"
    assert await handler.ctx.store.get("points") == 3  # not overridden: restored
    assert "suffix" not in after_draft.ctx_state["store"]  # the checkpoint is untouched
    assert ckptr.store.runs[handler.run_id].edits["store"] == {"suffix": "?!", "topic": "changed"}


# -- fan-out -------------------------------------------------------------------


class Item(Event):
    i: int


class Squared(Event):
    i: int
    value: int


class FanOutFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    @step
    async def split(self, ev: StartEvent, ctx: Context) -> Item | None:
        await ctx.store.set("n", ev.n)
        for i in range(ev.n):
            ctx.send_event(Item(i=i))
        return None

    @step(num_workers=3)
    async def square(self, ev: Item) -> Squared:
        self.calls["square"] += 1
        for _ in range(ev.i % 3 + 1):
            await asyncio.sleep(0)
        return Squared(i=ev.i, value=ev.i * ev.i)

    @step
    async def gather(self, ev: Squared, ctx: Context) -> StopEvent | None:
        got = ctx.collect_events(ev, [Squared] * await ctx.store.get("n"))
        if got is None:
            return None
        return StopEvent(result=sorted((e.i, e.value) for e in got))


class YieldingStore(InMemoryCheckpointStore):
    """Like a database store: writing a checkpoint gives the loop to other tasks."""

    async def put_checkpoint(self, checkpoint: Checkpoint, workflow: Workflow) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        await super().put_checkpoint(checkpoint, workflow)


async def _check_forks_reproduce_the_run(ckptr: WorkflowCheckpointer) -> None:
    wf: FanOutFlow = ckptr.workflow  # type: ignore[assignment]
    handler = ckptr.run(n=7)
    expected = await handler
    assert expected == [(i, i * i) for i in range(7)]
    cps = list(ckptr.checkpoints[handler.run_id])
    assert len(cps) > 7
    assert any(c.ctx_state["queued"] for c in cps) and any(c.ctx_state["in_flight"] for c in cps)
    failures = []
    for c in cps:
        done_before = sum(1 for d in cps if d.last_completed_step == "square" and d.seq <= c.seq)
        wf.calls.clear()
        try:
            result = await asyncio.wait_for(ckptr.run_from(c), 5)
        except Exception as exc:  # collect all, report together
            failures.append((c.seq, c.last_completed_step, repr(exc)))
            continue
        if result != expected:
            failures.append((c.seq, c.last_completed_step, result))
        elif wf.calls["square"] != 7 - done_before:
            failures.append((c.seq, c.last_completed_step, f"square ran {wf.calls['square']} times"))
    assert failures == []


async def test_it_restores_queued_and_in_flight_events_when_running_from_mid_fan_out() -> None:
    await _check_forks_reproduce_the_run(WorkflowCheckpointer(FanOutFlow()))


async def test_it_keeps_outputs_of_steps_still_checkpointing_in_a_concurrent_snapshot() -> None:
    # A store that yields while writing (as a database does) lets several steps
    # checkpoint at once: a snapshot must still hold the outputs of the others.
    await _check_forks_reproduce_the_run(WorkflowCheckpointer(FanOutFlow(), store=YieldingStore()))


# -- resume and stores ---------------------------------------------------------


async def test_it_resumes_a_run_with_the_same_run_id_and_continuing_seq() -> None:
    wf = ThreeStepFlow(fail_at="polish")
    store = InMemoryCheckpointStore()
    ckptr = WorkflowCheckpointer(wf, store=store)
    handler = ckptr.run(topic="owls")
    with pytest.raises(WorkflowRuntimeError):
        await handler
    assert isinstance(store.outcomes[handler.run_id][1], WorkflowRuntimeError)
    last = ckptr.checkpoints[handler.run_id][-1]
    assert (last.seq, last.last_completed_step) == (2, "draft")

    wf.fail_at = None
    resumed = ckptr.resume(last)
    assert resumed.run_id == handler.run_id
    assert await resumed == "owls x3!"
    assert wf.calls == {"outline": 1, "draft": 1, "polish": 2}
    assert [c.seq for c in ckptr.checkpoints[handler.run_id]] == [1, 2, 3]
    assert [c.seq for c in store.by_run[handler.run_id]] == [1, 2, 3]
    assert store.outcomes[handler.run_id] == ("owls x3!", None)
    assert store.runs[handler.run_id].resumed is True
    assert handler.run_id not in ckptr.parents


async def test_it_sends_checkpoints_and_outcomes_to_the_store() -> None:
    store = InMemoryCheckpointStore()
    ckptr = WorkflowCheckpointer(ThreeStepFlow(), store=store)
    run_id, result = await _run(ckptr, topic="owls")
    assert [c.id_ for c in store.by_run[run_id]] == [c.id_ for c in ckptr.checkpoints[run_id]]
    assert set(store.by_id) == {c.id_ for c in ckptr.checkpoints[run_id]}
    assert store.outcomes[run_id] == (result, None)
    assert store.runs[run_id].start_event.topic == "owls"
    assert await store.get_checkpoint(store.by_run[run_id][1].id_, ckptr.workflow) is store.by_run[run_id][1]
    listed = await store.list_checkpoints(ckptr.workflow, last_completed_step="polish")
    assert [c.run_id for c in listed] == [run_id]

    fork = ckptr.run_from(store.by_run[run_id][0])
    await fork
    assert store.runs[fork.run_id].parent_checkpoint_id == store.by_run[run_id][0].id_
    assert [c.last_completed_step for c in store.by_run[fork.run_id]] == ["draft", "polish"]


# -- snapshot size and copies --------------------------------------------------


class Tick(Event):
    pass


class LoopFlow(Workflow):
    @step
    async def begin(self, ev: StartEvent, ctx: Context) -> Tick:
        await ctx.store.set("limit", ev.limit)
        await ctx.store.set("count", 0)
        return Tick()

    @step
    async def loop(self, ev: Tick, ctx: Context) -> Tick | StopEvent:
        count = await ctx.store.get("count") + 1
        await ctx.store.set("count", count)
        if count >= await ctx.store.get("limit"):
            return StopEvent(result=count)
        return Tick()


async def test_it_keeps_the_snapshot_size_flat_over_a_long_run() -> None:
    ckptr = WorkflowCheckpointer(LoopFlow())
    run_id, result = await _run(ckptr, limit=1000)
    assert result == 1000
    loops = [c for c in ckptr.checkpoints[run_id] if c.last_completed_step == "loop"]
    assert len(loops) == 1000
    at_10, at_1000 = loops[9], loops[999]
    assert at_10.ctx_state["store"]["count"] == 10 and at_1000.ctx_state["store"]["count"] == 1000
    size_10 = len(json.dumps(at_10.ctx_state))
    size_1000 = len(json.dumps(at_1000.ctx_state))
    assert abs(size_1000 - size_10) <= 2  # only the counter's digits differ


class ListFlow(Workflow):
    @step
    async def first(self, ev: StartEvent, ctx: Context) -> Note:
        await ctx.store.set("items", [1])
        return Note(text="one")

    @step
    async def second(self, ev: Note, ctx: Context) -> StopEvent:
        items = await ctx.store.get("items")
        items.append(2)  # mutated in place, not set again
        return StopEvent(result=list(items))


async def test_it_deep_copies_the_store_into_the_checkpoint() -> None:
    ckptr = WorkflowCheckpointer(ListFlow())
    run_id, result = await _run(ckptr)
    assert result == [1, 2]
    first, second = ckptr.checkpoints[run_id]
    assert first.ctx_state["store"]["items"] == [1]
    assert second.ctx_state["store"]["items"] == [1, 2]


async def test_it_does_not_share_restored_store_values_with_the_checkpoint() -> None:
    ckptr = WorkflowCheckpointer(ListFlow())
    run_id, _ = await _run(ckptr)
    first = ckptr.checkpoints[run_id][0]
    # Each fork starts from the checkpoint's state, whatever earlier forks did.
    assert await ckptr.run_from(first) == [1, 2]
    assert await ckptr.run_from(first) == [1, 2]
    assert first.ctx_state["store"]["items"] == [1]


class Bag(Event):
    items: list[int]


class EventInStoreFlow(Workflow):
    @step
    async def first(self, ev: StartEvent, ctx: Context) -> Note:
        await ctx.store.set("bag", Bag(items=[1]))
        return Note(text="one")

    @step
    async def second(self, ev: Note, ctx: Context) -> StopEvent:
        bag = await ctx.store.get("bag")
        bag.items.append(2)
        return StopEvent(result=bag.items)


async def test_it_snapshots_the_current_state_of_an_event_kept_in_the_store() -> None:
    ckptr = WorkflowCheckpointer(EventInStoreFlow())
    run_id, result = await _run(ckptr)
    assert result == [1, 2]
    first, second = ckptr.checkpoints[run_id]
    assert first.ctx_state["store"]["bag"] == {"__event__": {"type": "Bag", "data": {"items": [1]}}}
    assert second.ctx_state["store"]["bag"] == {"__event__": {"type": "Bag", "data": {"items": [1, 2]}}}


class BadValueFlow(Workflow):
    @step
    async def first(self, ev: StartEvent, ctx: Context) -> Note:
        await ctx.store.set("handle", object())
        return Note(text="x")

    @step
    async def second(self, ev: Note) -> StopEvent:
        return StopEvent(result="should not get here")


async def test_it_fails_the_step_when_a_store_value_cannot_be_serialized() -> None:
    ckptr = WorkflowCheckpointer(BadValueFlow())
    handler = ckptr.run()
    with pytest.raises(WorkflowRuntimeError, match="'handle'") as info:
        await handler
    assert info.value.step == "first"
    assert ckptr.checkpoints[handler.run_id] == []


async def test_it_runs_unserializable_store_values_fine_without_a_checkpointer() -> None:
    assert await BadValueFlow().run() == "should not get here"
