"""`approval`: draft a message, wait for a human answer, then finish."""

from __future__ import annotations

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


class Draft(Event):
    text: str


class ApprovalFlow(Workflow):
    """Start with `subject`; answer "yes" to send the draft, anything else to drop it."""

    @step
    async def draft(self, ev: StartEvent, ctx: Context) -> Draft:
        subject = str(getattr(ev, "subject", "the quarterly report"))
        return Draft(text=f"Hello team, please find {subject} attached.")

    @step
    async def ask(self, ev: Draft, ctx: Context) -> InputRequiredEvent:
        await ctx.store.set("draft", ev.text)
        return InputRequiredEvent(prefix=f"Send this message? {ev.text}")

    @step
    async def decide(self, ev: HumanResponseEvent, ctx: Context) -> StopEvent:
        draft = await ctx.store.get("draft")
        approved = ev.response.strip().lower() in ("y", "yes", "ok", "approve")
        return StopEvent(result={"approved": approved, "message": draft if approved else None})
