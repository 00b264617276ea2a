"""Live fan-out: one channel-layer subscription per group and process, each frame encoded once.

When every page was a group member of its own, each group message was copied to each
page's channel, woke each page's receive loop and was encoded again for each page: with
200 pages of one run, daphne needed more than the 50 ms between two steps to relay one
checkpoint, and the backlog grew to seconds. Here a process joins a group once, for its
first local page of it, and leaves it with the last; each message is received once and
handed to every local page in one synchronous pass (`Member.deliver`) with one `Frames`
cache, so N pages cost N socket writes, not N deliveries.

A page writes through its `Outbox`: a write that does not wait (daphne's never do) completes
on the spot. Behind a write that waits, frames queue (at most `limit`) and later messages go
to the page's own handlers, which wait for room; the hub never waits for a socket, so a
slow or closed one holds up no other (consumers.INBOX_LIMIT bounds what a page may owe).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Protocol

from channels.layers import BaseChannelLayer, get_channel_layer

log = logging.getLogger("runs.live")

SLICE = 25  # pages written between two turns of the event loop


class Frames:
    """The frames built for one group message, shared by the pages it is handed to."""

    __slots__ = ("_built",)

    def __init__(self) -> None:
        self._built: dict[Hashable, str] = {}

    def get(self, key: Hashable, build: Callable[[], str]) -> str:
        frame = self._built.get(key)
        if frame is None:
            frame = self._built[key] = build()
        return frame


class Member(Protocol):
    def deliver(self, event: dict[str, Any], frames: Frames) -> None:
        """Handle one group message without waiting (defer anything that must wait)."""


class _Group:
    __slots__ = ("members", "ready", "channel", "reader", "last_message", "fanning")

    def __init__(self) -> None:
        self.members: set[Member] = set()
        self.ready: asyncio.Task[None] | None = None  # the subscription, shared by early joiners
        self.channel = ""
        self.reader: asyncio.Task[None] | None = None
        self.last_message = -math.inf  # loop time of the last message from the layer
        self.fanning = asyncio.Lock()  # one message at a time, so each page gets them in order


class Hub:
    """This process's (this event loop's) subscriptions, one per group with local members."""

    def __init__(self, layer: BaseChannelLayer | None, loop: asyncio.AbstractEventLoop) -> None:
        self.layer = layer
        self.loop = loop
        self.groups: dict[str, _Group] = {}

    async def join(self, group: str, member: Member) -> None:
        """Add `member` to `group`; returns once the process is subscribed, so a page that
        catches up after this misses nothing in between."""
        entry = self.groups.get(group)
        if entry is None:
            entry = self.groups[group] = _Group()
            entry.ready = self.loop.create_task(self._subscribe(group, entry))
        entry.members.add(member)
        assert entry.ready is not None
        try:
            await asyncio.shield(entry.ready)
        except Exception:
            await self.leave(group, member)  # a later page tries again
            raise

    async def leave(self, group: str, member: Member) -> None:
        entry = self.groups.get(group)
        if entry is None or member not in entry.members:
            return
        entry.members.discard(member)
        if entry.members:
            return
        del self.groups[group]
        if not self.groups and _hubs.get((self.loop, self.layer)) is self:
            del _hubs[(self.loop, self.layer)]  # nothing outlives the last page (tests' loops end)
        await self._unsubscribe(group, entry)

    def quiet_for(self, group: str) -> float:
        """Seconds since the layer last brought a message of `group` (the safety polls')."""
        entry = self.groups.get(group)
        return self.loop.time() - entry.last_message if entry is not None else math.inf

    async def fan_out(self, group: str, event: dict[str, Any]) -> None:
        """Hand `event` to every local member of `group` (the layer's messages, and the shared
        database polls'), in order with the group's other messages."""
        entry = self.groups.get(group)
        if entry is None:
            return
        async with entry.fanning:
            frames = Frames()
            for i, member in enumerate(tuple(entry.members)):
                if i and not i % SLICE:
                    # Frames go out only when the loop polls the sockets: let the first pages'
                    # go while the rest are written, so clients start reading sooner.
                    await asyncio.sleep(0)
                    if member not in entry.members:
                        continue
                try:
                    member.deliver(event, frames)
                except Exception:  # one broken page must not starve the others
                    log.warning("could not deliver to a live page", exc_info=True)

    async def _subscribe(self, group: str, entry: _Group) -> None:
        if self.layer is None:
            return  # no layer: only the shared database polls fan out
        entry.channel = await self.layer.new_channel()
        # Reading from the start: cancelling this read is also what ends the channel.
        entry.reader = self.loop.create_task(self._read(group, entry))
        try:
            await self.layer.group_add(group, entry.channel)
        except BaseException:
            entry.reader.cancel()
            raise

    async def _read(self, group: str, entry: _Group) -> None:
        assert self.layer is not None
        while True:
            try:
                event = await self.layer.receive(entry.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer is away: pages poll and fill gaps by seq meanwhile
                log.warning("live relay of %s could not receive; retrying", group, exc_info=True)
                await asyncio.sleep(1)
                continue
            entry.last_message = self.loop.time()
            await self.fan_out(group, event)

    async def _unsubscribe(self, group: str, entry: _Group) -> None:
        assert entry.ready is not None
        try:
            await asyncio.shield(entry.ready)  # a subscription still being made is undone after it
        except Exception:
            return
        if self.layer is None or entry.reader is None:
            return
        # Cancelling a receive also ends the channel (the Redis pub/sub layer unsubscribes it).
        entry.reader.cancel()
        await asyncio.gather(entry.reader, return_exceptions=True)
        try:
            await self.layer.group_discard(group, entry.channel)
        except Exception:
            log.warning("could not leave live group %s", group, exc_info=True)


_hubs: dict[tuple[asyncio.AbstractEventLoop, BaseChannelLayer | None], Hub] = {}


def subscriptions() -> list[str]:
    """The groups this process holds a subscription for (on any loop)."""
    return [group for found in _hubs.values() for group in found.groups]


def hub() -> Hub:
    """The hub of the running loop and the configured channel layer."""
    layer = get_channel_layer()
    loop = asyncio.get_running_loop()
    found = _hubs.get((loop, layer))
    if found is None:
        found = _hubs[(loop, layer)] = Hub(layer, loop)
    return found


class Outbox:
    """One socket's frames, written in order; the hub never waits for a socket.

    `offer` starts the write at once, in an eagerly started task: a write that completes
    without waiting costs no scheduling. Frames queue only behind a write that waits, at
    most `limit` of them.
    """

    def __init__(self, write: Callable[[str], Awaitable[None]], limit: int) -> None:
        self._write = write
        self.limit = limit
        self._frames: deque[str] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._waiting = 0
        self.closed = False

    @property
    def idle(self) -> bool:
        """Nothing queued: a frame offered now is written before any other."""
        return not self._frames

    def offer(self, frame: str) -> bool:
        """Queue `frame` without waiting; False (dropped) when closed or `limit` frames behind."""
        if self.closed or len(self._frames) >= self.limit:
            return False
        self._frames.append(frame)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.Task(self._write_all(), loop=asyncio.get_running_loop(), eager_start=True)
        return True

    async def put(self, frame: str) -> None:
        """Queue `frame`, waiting while the socket is `limit` frames behind (the page's own
        catch-ups and polls, which may wait; the hub uses `offer`)."""
        while not self.offer(frame):
            if self.closed:
                return
            self._room.clear()
            self._waiting += 1
            try:
                await self._room.wait()
            finally:
                self._waiting -= 1

    def close(self) -> None:
        self.closed = True
        self._frames.clear()
        self._room.set()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _write_all(self) -> None:
        try:
            while self._frames:
                await self._write(self._frames[0])
                self._frames.popleft()
                if self._waiting:
                    self._room.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # the socket is gone: its disconnect cleans up
            log.debug("a live socket stopped taking frames", exc_info=True)
            self.close()
