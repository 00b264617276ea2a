"""`wordcount`: split a text into chunks, count words in parallel, fan in with collect_events."""

from __future__ import annotations

import asyncio

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step

SAMPLE = (
    "Workflows are made of steps. Each step takes an event and returns the next one. "
    "A checkpoint is recorded when a step completes, so any run can be replayed or forked."
)


class Chunk(Event):
    index: int
    text: str


class Counted(Event):
    index: int
    words: int


class WordCountFlow(Workflow):
    """Start with `text` and optional `chunks` (default 4)."""

    @step
    async def split(self, ev: StartEvent, ctx: Context) -> Chunk | None:
        text = str(getattr(ev, "text", SAMPLE))
        words = text.split()
        parts = max(1, min(int(getattr(ev, "chunks", 4)), len(words) or 1))
        size = -(-len(words) // parts) if words else 1
        chunks = [" ".join(words[i : i + size]) for i in range(0, len(words), size)] or [""]
        await ctx.store.set("chunks", len(chunks))
        for i, chunk in enumerate(chunks):
            ctx.send_event(Chunk(index=i, text=chunk))
        return None

    @step(num_workers=4)
    async def count(self, ev: Chunk) -> Counted:
        await asyncio.sleep(0.05)  # stands in for real work, so the parallelism shows
        return Counted(index=ev.index, words=len(ev.text.split()))

    @step
    async def total(self, ev: Counted, ctx: Context) -> StopEvent | None:
        expected = await ctx.store.get("chunks")
        counts = ctx.collect_events(ev, [Counted] * expected)
        if counts is None:
            return None
        return StopEvent(result={"words": sum(c.words for c in counts), "chunks": expected})  # type: ignore[attr-defined]
