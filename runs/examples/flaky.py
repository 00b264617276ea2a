"""`flaky`: a step that fails on its first attempts and succeeds under its retry policy.

`flaky_forever` fails for good unless its store says the bug is fixed: fork its
latest checkpoint with the store edit {"fixed": true} to retry after the fix.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from wfdash.workflow import ConstantDelayRetryPolicy, Context, Event, StartEvent, StopEvent, Workflow, step


class Fetched(Event):
    attempts: int


class FlakyStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    failures: int = Field(
        default=2,
        ge=0,
        le=100,
        description="How many attempts of `fetch` fail before one succeeds (4 attempts are allowed).",
    )


class FailingStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    fixed: bool = Field(default=False, description="Start with the bug already fixed: `process` then succeeds.")


class FlakyFlow(Workflow):
    """A step that fails on its first `failures` attempts and succeeds under its retry policy
    (4 attempts, 0.1 s apart): more than 3 failures fail the run."""

    @step
    async def prepare(self, ev: FlakyStart, ctx: Context) -> Fetched:
        await ctx.store.set("failures", ev.failures)
        return Fetched(attempts=0)

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=4, delay=0.1))
    async def fetch(self, ev: Fetched, ctx: Context) -> StopEvent:
        attempts = await ctx.store.get("attempts", 0) + 1
        await ctx.store.set("attempts", attempts)
        if attempts <= await ctx.store.get("failures"):
            raise ConnectionError(f"upstream unavailable (attempt {attempts})")
        return StopEvent(result={"attempts": attempts})


class AlwaysFailingFlow(Workflow):
    """Fails in `process` until the store holds {"fixed": true}: fork its latest checkpoint
    with that store edit to retry after the fix."""

    @step
    async def prepare(self, ev: FailingStart, ctx: Context) -> Fetched:
        await ctx.store.set("fixed", ev.fixed)
        return Fetched(attempts=0)

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0.05))
    async def process(self, ev: Fetched, ctx: Context) -> StopEvent:
        if not await ctx.store.get("fixed"):
            raise ValueError('the input needs fixing: fork this run with the store edit {"fixed": true}')
        return StopEvent(result={"processed": True})
