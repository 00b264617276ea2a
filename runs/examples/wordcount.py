"""`wordcount`: split a text into chunks, count words in parallel, fan in with collect_events."""

from __future__ import annotations

import asyncio

from pydantic import ConfigDict, Field

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step

SAMPLE = (
    "Workflows are made of steps. Each step takes an event and returns the next one. "
    "A checkpoint is recorded when a step completes, so any run can be replayed or forked."
)


class WordCountStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(default=SAMPLE, max_length=1_000_000, description="The text whose words are counted.")
    chunks: int = Field(default=4, ge=1, le=10_000, description="How many pieces the text is split into.")


class Chunk(Event):
    index: int
    text: str


class Counted(Event):
    index: int
    words: int


class WordCountFlow(Workflow):
    """Splits `text` into `chunks` pieces, counts their words in parallel (4 workers) and
    adds the counts up once every piece is counted (a fan-out and a fan-in)."""

    @step
    async def split(self, ev: WordCountStart, ctx: Context) -> Chunk | None:
        words = ev.text.split()
        parts = max(1, min(ev.chunks, len(words) or 1))
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
