"""`map`: the "summarise N documents" shape: fan out N items over 10 workers, fan in."""

from __future__ import annotations

import asyncio

from pydantic import ConfigDict, Field

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step


class MapStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    items: int = Field(default=100, ge=1, le=100_000, description="How many documents to map.")
    sleep: float = Field(default=0.0, ge=0, le=60, description="Seconds each map step sleeps.")
    text: str = Field(
        default="a document of about a hundred bytes, standing in for real work",
        max_length=10_000,
        description="Each document's text.",
    )
    label: str = Field(default="", max_length=200, description="Copied into the result (fork with a store edit).")


class Item(Event):
    index: int
    text: str


class Mapped(Event):
    index: int
    summary: str


class MapFlow(Workflow):
    """Map `items` documents (each sleeping `sleep` seconds) over 10 workers, then reduce;
    the result carries the store's `label` (fork with a store edit to change it)."""

    @step
    async def spread(self, ev: MapStart, ctx: Context) -> Item | None:
        await ctx.store.set("items", ev.items)
        await ctx.store.set("sleep", ev.sleep)
        await ctx.store.set("label", ev.label)
        for i in range(ev.items):
            ctx.send_event(Item(index=i, text=f"{i}: {ev.text}"))
        return None

    @step(num_workers=10)
    async def work(self, ev: Item, ctx: Context) -> Mapped:
        delay = await ctx.store.get("sleep")
        if delay:
            await asyncio.sleep(delay)
        return Mapped(index=ev.index, summary=ev.text[:40].upper())

    @step
    async def reduce(self, ev: Mapped, ctx: Context) -> StopEvent | None:
        expected = await ctx.store.get("items")
        done = ctx.collect_events(ev, [Mapped] * expected)
        if done is None:
            return None
        indexes = [m.index for m in done]  # type: ignore[attr-defined]
        return StopEvent(
            result={
                "items": len(done),
                "index_sum": sum(indexes),
                "distinct": len(set(indexes)),
                "label": await ctx.store.get("label"),
            }
        )
