"""`chain`: a loop of N steps, each optionally sleeping; used by tests and benchmarks."""

from __future__ import annotations

import asyncio

from pydantic import ConfigDict, Field

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step


class Tick(Event):
    n: int


class ChainStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    steps: int = Field(default=3, ge=1, le=100_000, description="How many ticks run, one after another.")
    sleep: float = Field(default=0.0, ge=0, le=60, description="Seconds each tick sleeps.")
    payload: str = Field(default="", description="Kept in the store unchanged (to test large state).")


class ChainFlow(Workflow):
    """A loop of `steps` ticks, each sleeping `sleep` seconds; `payload` is kept in the store
    unchanged. Used by tests and benchmarks."""

    @step
    async def begin(self, ev: ChainStart, ctx: Context) -> Tick:
        await ctx.store.set("steps", ev.steps)
        await ctx.store.set("sleep", ev.sleep)
        if ev.payload:
            await ctx.store.set("payload", ev.payload)
        return Tick(n=1)

    @step
    async def tick(self, ev: Tick, ctx: Context) -> Tick | StopEvent:
        delay = await ctx.store.get("sleep")
        if delay:
            await asyncio.sleep(delay)
        if ev.n >= await ctx.store.get("steps"):
            return StopEvent(result={"ticks": ev.n})
        return Tick(n=ev.n + 1)
