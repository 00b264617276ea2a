"""`joke`: the seed notebook's JokeFlow, with wfdash's LLM helper. Start with `topic`.

Both steps stream: each piece of the answer goes to the run's stream as it arrives (the
run page shows the text growing), and the step's output is the whole answer, as before.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from wfdash.llm import LLM
from wfdash.workflow import Context, Event, StartEvent, StopEvent, StreamDelta, Workflow, step


class JokeStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=200, description="What the joke is about.", examples=["chemistry"])


class JokeEvent(Event):
    joke: str


async def _streamed(llm: LLM, prompt: str, ctx: Context) -> str:
    """The completion of `prompt`, each piece written to the run's stream as it arrives."""
    text = ""
    async for response in llm.astream_complete(prompt):
        ctx.write_event_to_stream(StreamDelta(delta=response.delta or ""))
        text = response.text
    return text


class JokeFlow(Workflow):
    """Asks an LLM for a joke about `topic`, then for a critique of that joke (two calls)."""

    llm = LLM()

    @step
    async def generate_joke(self, ev: JokeStart, ctx: Context) -> JokeEvent:
        topic = ev.topic

        prompt = f"Write your best joke about {topic}."
        response = await _streamed(self.llm, prompt, ctx)
        return JokeEvent(joke=response)

    @step
    async def critique_joke(self, ev: JokeEvent, ctx: Context) -> StopEvent:
        joke = ev.joke

        prompt = f"Give a thorough analysis and critique of the following joke: {joke}"
        response = await _streamed(self.llm, prompt, ctx)
        return StopEvent(result=response)
