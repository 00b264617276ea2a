"""The worker's stream relay: one message per flush interval, not one per token, and no
database write for a stream shorter than a snapshot interval."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from channels.layers import get_channel_layer

from runs import live
from runs.streams import FLUSH_SECONDS, SNAPSHOT_SECONDS, StreamRelay
from wfdash.workflow import Context, StartEvent, StopEvent, StreamDelta, Workflow, step

TOKENS = 1000


class Burst(Workflow):
    """Streams TOKENS pieces back to back, as a fast model does."""

    @step
    async def talk(self, ev: StartEvent, ctx: Context) -> StopEvent:
        for i in range(TOKENS):
            ctx.write_event_to_stream(StreamDelta(delta=f"{i} "))
            if i % 100 == 0:
                await asyncio.sleep(0)
        return StopEvent(result="done")


async def test_a_burst_of_tokens_goes_out_in_a_few_messages_with_every_character() -> None:
    writes: list[Any] = []

    async def submit(op: Any) -> None:
        writes.append(op)

    layer = get_channel_layer()
    channel = await layer.new_channel()
    relay = StreamRelay(submit, announce=True)
    handler = Burst().run()
    run_id = str(uuid.uuid4())
    await layer.group_add(live.run_group(run_id), channel)
    relay.attach(run_id, handler.ctx)
    started = time.monotonic()
    await handler
    elapsed = time.monotonic() - started
    await asyncio.sleep(FLUSH_SECONDS * 3)  # the trailing flush
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), 1))
        except TimeoutError:
            break
    deltas = [m["message"] for m in messages if m["type"] == "stream.delta"]
    assert "".join(d["delta"] for d in deltas) == "".join(f"{i} " for i in range(TOKENS))
    assert [d["offset"] for d in deltas] == [sum(len(x["delta"]) for x in deltas[:k]) for k in range(len(deltas))]
    # At most one message per flush interval (plus the first, sent at once): bounded by the
    # time the burst took, not by its 1,000 tokens.
    assert len(deltas) <= 2 + (elapsed + 3 * FLUSH_SECONDS) / FLUSH_SECONDS < TOKENS
    assert sum(d["count"] for d in deltas) == TOKENS
    # Snapshot writes: none unless the stream lasted a snapshot interval, then one per interval.
    assert len(writes) <= (elapsed + 3 * FLUSH_SECONDS) / SNAPSHOT_SECONDS + 1
