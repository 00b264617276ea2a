"""`joke`: the seed notebook's JokeFlow, with wfdash's LLM helper. Start with `topic`."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from wfdash.llm import LLM
from wfdash.workflow import Event, StartEvent, StopEvent, Workflow, step


class JokeStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=200, description="What the joke is about.", examples=["chemistry"])


class JokeEvent(Event):
    joke: str


class JokeFlow(Workflow):
    """Asks an LLM for a joke about `topic`, then for a critique of that joke (two calls)."""

    llm = LLM()

    @step
    async def generate_joke(self, ev: JokeStart) -> JokeEvent:
        topic = ev.topic

        prompt = f"Write your best joke about {topic}."
        response = await self.llm.acomplete(prompt)
        return JokeEvent(joke=str(response))

    @step
    async def critique_joke(self, ev: JokeEvent) -> StopEvent:
        joke = ev.joke

        prompt = f"Give a thorough analysis and critique of the following joke: {joke}"
        response = await self.llm.acomplete(prompt)
        return StopEvent(result=str(response))
