"""`approval`: draft a message, wait for a human answer, then finish."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from wfdash.workflow import (
    Context,
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    step,
)


class ApprovalStart(StartEvent):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(
        default="the quarterly report",
        min_length=1,
        max_length=200,
        description='What the drafted message announces, e.g. "the launch plan".',
    )


class Draft(Event):
    text: str


class ApprovalFlow(Workflow):
    """Drafts a message about `subject`, then waits for a human: answer "yes" to send the
    draft, anything else to drop it."""

    @step
    async def draft(self, ev: ApprovalStart, ctx: Context) -> Draft:
        return Draft(text=f"Hello team, please find {ev.subject} attached.")

    @step
    async def ask(self, ev: Draft, ctx: Context) -> InputRequiredEvent:
        await ctx.store.set("draft", ev.text)
        return InputRequiredEvent(prefix=f"Send this message? {ev.text}")

    @step
    async def decide(self, ev: HumanResponseEvent, ctx: Context) -> StopEvent:
        draft = await ctx.store.get("draft")
        approved = ev.response.strip().lower() in ("y", "yes", "ok", "approve")
        return StopEvent(result={"approved": approved, "message": draft if approved else None})
