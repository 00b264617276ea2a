"""@step: configuration, accepted and returned event types, validation of steps and workflows."""

import pytest

from wfdash.workflow import (
    ConstantDelayRetryPolicy,
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowValidationError,
    step,
)

pytestmark = pytest.mark.engine_only


class AEvent(Event):
    pass


class BEvent(Event):
    pass


class OtherStart(StartEvent):
    pass


class Orphan(Event):
    pass


POLICY = ConstantDelayRetryPolicy(maximum_attempts=2, delay=0)


class ConfiguredFlow(Workflow):
    @step
    async def begin(self, ev: StartEvent) -> AEvent | BEvent:
        return AEvent() if ev.pick == "a" else BEvent()

    @step(num_workers=3, retry_policy=POLICY)
    async def either(self, ev: AEvent | BEvent, ctx: Context) -> StopEvent | None:
        await ctx.store.set("seen", type(ev).__name__)
        return StopEvent(result=(type(ev).__name__, isinstance(ctx, Context), ctx.run_id))


class NoCtxFlow(Workflow):
    @step()
    async def only(self, ev: StartEvent, extra: int = 5) -> StopEvent:
        return StopEvent(result=extra)


def test_it_reads_a_bare_step_with_default_config() -> None:
    cfg = ConfiguredFlow().steps["begin"]
    assert cfg.num_workers == 1
    assert cfg.retry_policy is None
    assert cfg.accepted_events == (StartEvent,)
    assert set(cfg.return_types) == {AEvent, BEvent}
    assert cfg.context_param is None


def test_it_reads_num_workers_retry_policy_and_unions() -> None:
    cfg = ConfiguredFlow().steps["either"]
    assert cfg.num_workers == 3
    assert cfg.retry_policy is POLICY
    assert set(cfg.accepted_events) == {AEvent, BEvent}
    assert cfg.return_types == (StopEvent,)  # None is allowed and dropped
    assert cfg.context_param == "ctx"
    assert cfg.event_param == "ev"


def test_it_rejects_a_non_positive_num_workers() -> None:
    with pytest.raises(WorkflowValidationError, match="num_workers"):
        step(num_workers=0)


async def test_it_routes_each_member_of_a_union_to_the_step() -> None:
    wf = ConfiguredFlow()
    assert (await wf.run(pick="a"))[0] == "AEvent"
    assert (await wf.run(pick="b"))[0] == "BEvent"


async def test_it_injects_the_runs_context_when_the_step_asks_for_it() -> None:
    handler = ConfiguredFlow().run(pick="a")
    name, is_ctx, run_id = await handler
    assert is_ctx is True
    assert run_id == handler.run_id
    assert await handler.ctx.store.get("seen") == "AEvent"


async def test_it_does_not_pass_a_context_or_extra_params_when_not_asked() -> None:
    wf = NoCtxFlow()
    assert wf.steps["only"].context_param is None
    assert wf.steps["only"].extra_params == ("extra",)
    assert await wf.run() == 5


# -- invalid steps -------------------------------------------------------------


class SyncStepFlow(Workflow):
    @step
    def blocking(self, ev: StartEvent) -> StopEvent:  # not async
        return StopEvent()


class UnannotatedEventFlow(Workflow):
    @step
    async def untyped(self, ev) -> StopEvent:  # type: ignore[no-untyped-def]
        return StopEvent()


class NonEventAnnotationFlow(Workflow):
    @step
    async def wrong_type(self, ev: int) -> StopEvent:
        return StopEvent()


class NoReturnAnnotationFlow(Workflow):
    @step
    async def no_return(self, ev: StartEvent):  # type: ignore[no-untyped-def]
        return StopEvent()


class NonEventReturnFlow(Workflow):
    @step
    async def returns_str(self, ev: StartEvent) -> str:
        return "x"


class NoEventParamFlow(Workflow):
    @step
    async def only_ctx(self, ctx: Context) -> StopEvent:
        return StopEvent()


@pytest.mark.parametrize(
    ("flow", "step_name", "detail"),
    [
        (SyncStepFlow, "blocking", "async"),
        (UnannotatedEventFlow, "untyped", "ev"),
        (NonEventAnnotationFlow, "wrong_type", "Event"),
        (NoReturnAnnotationFlow, "no_return", "return"),
        (NonEventReturnFlow, "returns_str", "return"),
        (NoEventParamFlow, "only_ctx", "event"),
    ],
)
def test_it_names_the_step_in_step_validation_errors(flow: type[Workflow], step_name: str, detail: str) -> None:
    with pytest.raises(WorkflowValidationError) as info:
        flow()
    message = str(info.value)
    assert f"'{step_name}'" in message
    assert detail in message


# -- invalid workflows ---------------------------------------------------------


class NoStartFlow(Workflow):
    @step
    async def a(self, ev: AEvent) -> StopEvent:
        return StopEvent()


class TwoStartsFlow(Workflow):
    @step
    async def a(self, ev: StartEvent) -> StopEvent:
        return StopEvent()

    @step
    async def b(self, ev: OtherStart) -> StopEvent:
        return StopEvent()


class NoStopFlow(Workflow):
    @step
    async def a(self, ev: StartEvent) -> AEvent:
        return AEvent()

    @step
    async def b(self, ev: AEvent) -> None:
        return None


class ProducedNotConsumedFlow(Workflow):
    @step
    async def a(self, ev: StartEvent) -> StopEvent | Orphan:
        return StopEvent()


class ConsumedNotProducedFlow(Workflow):
    @step
    async def a(self, ev: StartEvent) -> StopEvent:
        return StopEvent()

    @step
    async def b(self, ev: Orphan) -> StopEvent:
        return StopEvent()


class NoStepsFlow(Workflow):
    pass


@pytest.mark.parametrize(
    ("flow", "pattern"),
    [
        (NoStartFlow, "start event.*none"),
        (TwoStartsFlow, "start event.*OtherStart, StartEvent"),
        (NoStopFlow, "stop event.*none"),
        (ProducedNotConsumedFlow, "produced but never consumed.*Orphan"),
        (ConsumedNotProducedFlow, "consumed but never produced.*Orphan"),
        (NoStepsFlow, "no steps"),
    ],
)
def test_it_rejects_inconsistent_workflows(flow: type[Workflow], pattern: str) -> None:
    with pytest.raises(WorkflowValidationError, match=pattern):
        flow()


class HumanFlow(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="?")

    @step
    async def answer(self, ev: HumanResponseEvent) -> StopEvent:
        return StopEvent(result=ev.response)


def test_it_exempts_human_events_from_the_produced_consumed_checks() -> None:
    wf = HumanFlow()  # InputRequiredEvent is never consumed, HumanResponseEvent never produced
    assert wf.start_event_class is StartEvent
    assert wf.stop_event_class is StopEvent
