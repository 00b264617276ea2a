"""The live fan-out (runs/fanout.py): one layer subscription per group and process, frames built
once, pages written directly; on the in-memory layer and on Redis (pub/sub)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from runs import consumers, fanout, live
from runs.executor import Worker
from runs.models import Checkpoint, Run, start_run
from tests.runs.test_consumers import ORIGIN, _receive_checkpoints, _ws, cookie  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db(transaction=True)
REDIS_URL = "redis://127.0.0.1:6379/0"


class Page:
    """A hub member that records what it is handed."""

    def __init__(self, fail: bool = False) -> None:
        self.got: list[Any] = []
        self.fail = fail

    def deliver(self, event: dict[str, Any], frames: fanout.Frames) -> None:
        if self.fail:
            raise RuntimeError("a broken page")
        self.got.append(frames.get("frame", lambda: f"frame of {event['n']}"))


async def _connect_pages(run_id: Any, session: bytes, n: int, after: int = 0) -> list[WebsocketCommunicator]:
    pages = [_ws(f"/ws/runs/{run_id}/?after={after}", ORIGIN, (b"cookie", session)) for _ in range(n)]
    for ws in pages:
        assert (await ws.connect())[0]
        assert (await ws.receive_json_from(timeout=5))["type"] == "run"  # its catch-up's status
    return pages


async def _rest(ws: WebsocketCommunicator) -> list[str]:
    """The types of what a page still gets."""
    types = []
    while not await ws.receive_nothing(timeout=0.3):
        types.append((await ws.receive_json_from())["type"])
    return types


def _group_channels(layer: Any, group: str) -> int:
    """Channels subscribed to `group` in this process (InMemoryChannelLayer: `groups`)."""
    return len(layer.groups.get(group, {}))


# -- the hub on its own -------------------------------------------------------------------


async def test_one_subscription_per_group_while_a_member_needs_it() -> None:
    layer = get_channel_layer()
    hub = fanout.hub()
    a, b = Page(), Page()
    await hub.join("g1", a)
    await hub.join("g1", b)
    assert _group_channels(layer, "g1") == 1 and fanout.hub() is hub
    await layer.group_send("g1", {"type": "x", "n": 1})
    for _ in range(100):
        if len(b.got) == 1:
            break
        await asyncio.sleep(0.01)
    assert a.got == b.got == ["frame of 1"] and a.got[0] is b.got[0]  # built once, for both
    await hub.leave("g1", a)
    assert _group_channels(layer, "g1") == 1  # b still watches
    reader = hub.groups["g1"].reader
    await hub.leave("g1", b)
    assert _group_channels(layer, "g1") == 0 and "g1" not in hub.groups
    assert reader is not None and reader.done()
    assert fanout.hub() is not hub  # the idle hub was let go


async def test_a_leave_while_subscribing_leaves_nothing_behind() -> None:
    layer = get_channel_layer()
    hub = fanout.hub()
    page = Page()
    joining = asyncio.create_task(hub.join("g2", page))
    await asyncio.sleep(0)
    await hub.leave("g2", page)
    await joining
    assert _group_channels(layer, "g2") == 0 and not hub.groups


async def test_a_broken_or_leaving_page_does_not_starve_the_others() -> None:
    hub = fanout.hub()
    pages = [Page() for _ in range(3 * fanout.SLICE)]
    broken, leaving = Page(fail=True), pages[2 * fanout.SLICE]
    for page in [broken, *pages]:
        await hub.join("g3", page)

    class Leaver(Page):
        def deliver(self, event: dict[str, Any], frames: fanout.Frames) -> None:
            super().deliver(event, frames)
            asyncio.ensure_future(hub.leave("g3", leaving))  # closes while the fan-out runs

    leaver = Leaver()
    await hub.join("g3", leaver)
    await hub.fan_out("g3", {"type": "x", "n": 7})
    got = [p for p in pages if p.got == ["frame of 7"]]
    # Members are a set: the leaver may come after `leaving`; nobody else misses it.
    assert len(got) in (len(pages) - 1, len(pages)) and broken.got == []
    for page in [broken, leaver, *pages]:
        await hub.leave("g3", page)
    assert not fanout.subscriptions()


async def test_an_outbox_writes_at_once_and_queues_only_behind_a_waiting_write() -> None:
    written: list[str] = []
    gate = asyncio.Event()
    gate.set()

    async def write(frame: str) -> None:
        await gate.wait()
        written.append(frame)

    box = fanout.Outbox(write, limit=2)
    assert box.offer("a") and written == ["a"] and box.idle  # no wait, no task switch
    gate.clear()
    assert box.offer("b") and not box.idle
    assert box.offer("c") and not box.offer("d")  # full: the hub never waits
    putting = asyncio.create_task(box.put("d"))  # the page's own sends wait for room
    await asyncio.sleep(0.01)
    assert not putting.done()
    gate.set()
    await asyncio.wait_for(putting, 1)
    for _ in range(100):
        if box.idle:
            break
        await asyncio.sleep(0.01)
    assert written == ["a", "b", "c", "d"]


async def test_an_outbox_whose_socket_fails_closes_and_drops_quietly() -> None:
    async def write(frame: str) -> None:
        raise OSError("gone")

    box = fanout.Outbox(write, limit=2)
    assert box.offer("a")  # taken, then the write failed
    await asyncio.sleep(0)
    assert box.closed and not box.offer("b")
    await asyncio.wait_for(box.put("c"), 1)  # returns: nothing waits on a closed socket


# -- pages over the in-memory layer ------------------------------------------------------------


async def test_n_pages_of_a_run_share_one_subscription_and_one_encoded_frame(
    cookie: bytes,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    group = live.run_group(run.id)
    pages = await _connect_pages(run.id, cookie, 5)
    layer = get_channel_layer()
    assert _group_channels(layer, group) == 1
    built: list[int] = []
    real = consumers.checkpoint_frame

    def counted(message: live.CheckpointMessage) -> str:
        built.append(message["seq"])
        return real(message)

    monkeypatch.setattr(consumers, "checkpoint_frame", counted)
    row = await Checkpoint.objects.acreate(
        run=run,
        workflow="chain",
        seq=1,
        snapshot_seq=1,
        last_completed_step="tick",
        input_event_type="Tick",
        output_event_type="Tick",
        input_event={"type": "Tick", "data": {"n": 1}},
        output_event={"type": "Tick", "data": {"n": 2}},
        state={"version": 1, "store": {}},
    )
    await layer.group_send(group, {"type": "checkpoint.created", "message": live.checkpoint_message(row)})
    frames = [await ws.receive_from(timeout=5) for ws in pages]
    assert len(set(frames)) == 1 and '"seq": 1' in frames[0] and built == [1]
    for ws in pages:
        await ws.disconnect()
    assert _group_channels(layer, group) == 0 and not fanout.subscriptions()


async def test_pages_joining_mid_run_get_every_checkpoint_once_in_order(cookie: bytes) -> None:  # noqa: F811
    # The worker announces through the in-memory layer (as the embedded webworker does) and
    # the shared database poll runs too: pages must drop what both deliver.
    run = await sync_to_async(start_run)("chain", {"steps": 40, "sleep": 0.01})
    early = await _connect_pages(run.id, cookie, 3)
    worker = asyncio.create_task(
        Worker(poll_interval=0.02, announce=True).run(exit_when_idle=True, install_signals=False)
    )
    first = await _receive_checkpoints(early[0], 10)
    late = [_ws(f"/ws/runs/{run.id}/?after=5", ORIGIN, (b"cookie", cookie)) for _ in range(2)]
    for ws in late:
        assert (await ws.connect())[0]
    got = [first + await _receive_checkpoints(early[0], 41)]
    got += [await _receive_checkpoints(ws, 41) for ws in early[1:]]
    got += [await _receive_checkpoints(ws, 41) for ws in late]
    await asyncio.wait_for(worker, 30)
    assert got[:3] == [list(range(1, 42))] * 3 and got[3:] == [list(range(6, 42))] * 2
    for ws in early + late:
        assert "checkpoint" not in await _rest(ws)
        await ws.disconnect()
    assert not fanout.subscriptions()


async def test_a_page_too_far_behind_is_closed_to_reconnect_and_catch_up(
    cookie: bytes,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stuck = asyncio.Event()
    real = consumers._LiveConsumer._write

    async def write(self: consumers._LiveConsumer, frame: str) -> None:
        if stuck.is_set():
            await asyncio.Event().wait()  # a socket that takes nothing more
        await real(self, frame)

    monkeypatch.setattr(consumers._LiveConsumer, "_write", write)
    monkeypatch.setattr(consumers, "OUTBOX_LIMIT", 1)
    monkeypatch.setattr(consumers, "INBOX_LIMIT", 3)
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    (ws,) = await _connect_pages(run.id, cookie, 1)
    stuck.set()
    message = {"type": "run.changed", "message": live.run_message(await Run.objects.aget(pk=run.id))}
    for _ in range(10):
        await fanout.hub().fan_out(live.run_group(run.id), message)
        await asyncio.sleep(0.01)  # the page's handler runs, and waits for its socket
    assert (await ws.receive_output(timeout=5)) == {"type": "websocket.close", "code": consumers.TRY_AGAIN}
    await ws.disconnect()
    assert not fanout.subscriptions()


# -- pages over Redis -----------------------------------------------------------------------------


@pytest.fixture
def redis_layer(settings: Any) -> Iterator[str]:
    """RedisPubSubChannelLayer on the Redis .ci/services starts, with a prefix of this test's
    own; yields the prefix."""
    prefix = f"wfdash-test-{uuid.uuid4().hex[:8]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL}], "prefix": prefix},
        }
    }
    yield prefix


async def _subscribers(prefix: str, group: str) -> int:
    """Subscriptions Redis holds for `group` (of all processes)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        counts = await client.pubsub_numsub(f"{prefix}__group__{group}")
    finally:
        await client.aclose()
    return int(counts[0][1])


@pytest.mark.postgres
async def test_on_redis_n_pages_hold_one_subscription_and_each_get_every_checkpoint(
    cookie: bytes,  # noqa: F811
    redis_layer: str,
) -> None:
    assert live.cross_process()
    run = await sync_to_async(start_run)("chain", {"steps": 30, "sleep": 0.01})
    group = live.run_group(run.id)
    pages = await _connect_pages(run.id, cookie, 4)
    assert await _subscribers(redis_layer, group) == 1
    worker = asyncio.create_task(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False))
    first = await _receive_checkpoints(pages[0], 10)
    late = _ws(f"/ws/runs/{run.id}/?after=3", ORIGIN, (b"cookie", cookie))
    assert (await late.connect())[0]
    got = [first + await _receive_checkpoints(pages[0], 31)]
    got += [await _receive_checkpoints(ws, 31) for ws in pages[1:]]
    got.append(await _receive_checkpoints(late, 31))
    await asyncio.wait_for(worker, 30)
    assert got == [list(range(1, 32))] * 4 + [list(range(4, 32))]
    for ws in [*pages, late]:
        await ws.disconnect()
    assert await _subscribers(redis_layer, group) == 0 and not fanout.subscriptions()
