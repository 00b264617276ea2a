"""Workflows only the tests register (through WFDASH_WORKFLOWS)."""

from __future__ import annotations

import asyncio

from wfdash.workflow import HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent, Workflow, step


class SlowAnswerFlow(Workflow):
    """Asks a question, then takes 2 seconds over the answer: a window to kill the worker in."""

    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="proceed?")

    @step
    async def decide(self, ev: HumanResponseEvent) -> StopEvent:
        await asyncio.sleep(2)
        return StopEvent(result={"answer": ev.response})
