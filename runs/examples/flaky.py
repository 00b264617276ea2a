"""`flaky`: a step that fails on its first attempts and succeeds under its retry policy.

`flaky_forever` fails for good unless its store says the bug is fixed: fork its
latest checkpoint with the store edit {"fixed": true} to retry after the fix.
"""

from __future__ import annotations

from wfdash.workflow import ConstantDelayRetryPolicy, Context, Event, StartEvent, StopEvent, Workflow, step


class Fetched(Event):
    attempts: int


class FlakyFlow(Workflow):
    """Start with `failures` (default 2): how many attempts fail before one succeeds."""

    @step
    async def prepare(self, ev: StartEvent, ctx: Context) -> Fetched:
        await ctx.store.set("failures", int(getattr(ev, "failures", 2)))
        return Fetched(attempts=0)

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=4, delay=0.1))
    async def fetch(self, ev: Fetched, ctx: Context) -> StopEvent:
        attempts = await ctx.store.get("attempts", 0) + 1
        await ctx.store.set("attempts", attempts)
        if attempts <= await ctx.store.get("failures"):
            raise ConnectionError(f"upstream unavailable (attempt {attempts})")
        return StopEvent(result={"attempts": attempts})


class AlwaysFailingFlow(Workflow):
    """Fails in `process` until the store holds {"fixed": true}."""

    @step
    async def prepare(self, ev: StartEvent, ctx: Context) -> Fetched:
        await ctx.store.set("fixed", bool(getattr(ev, "fixed", False)))
        return Fetched(attempts=0)

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=2, delay=0.05))
    async def process(self, ev: Fetched, ctx: Context) -> StopEvent:
        if not await ctx.store.get("fixed"):
            raise ValueError('the input needs fixing: fork this run with the store edit {"fixed": true}')
        return StopEvent(result={"processed": True})
