"""Workflows the persistence bench registers with the app (WFDASH_WORKFLOWS), so that a step's
completion can be stamped on the monotonic clock inside the step itself."""

from __future__ import annotations

import time

from runs.examples.chain import ChainFlow, ChainStart, Tick
from wfdash.workflow import Context, StopEvent, step

# perf_counter() at the end of every step body, in order; the bench reads and clears it.
STEP_ENDS: list[float] = []


class StampedChain(ChainFlow):
    """`chain` whose steps stamp their own completion (nothing else differs)."""

    @step
    async def begin(self, ev: ChainStart, ctx: Context) -> Tick:
        await ctx.store.set("steps", ev.steps)
        await ctx.store.set("sleep", ev.sleep)
        if ev.payload:
            await ctx.store.set("payload", ev.payload)
        STEP_ENDS.append(time.perf_counter())
        return Tick(n=1)

    @step
    async def tick(self, ev: Tick, ctx: Context) -> Tick | StopEvent:
        out: Tick | StopEvent
        if ev.n >= await ctx.store.get("steps"):
            out = StopEvent(result={"ticks": ev.n})
        else:
            out = Tick(n=ev.n + 1)
        STEP_ENDS.append(time.perf_counter())
        return out
