"""WebSocket consumers: relay announcements; catch up from the database by seq.

Every checkpoint reaches a client exactly once and in order: the consumer keeps
the last seq it sent, drops anything at or below it, and fills any gap from the
database before relaying more.

Catching up is bounded: a client more than CATCH_UP_LIMIT checkpoints behind (on
connect, or after a gap) gets one `skipped` message naming the seqs it will not
receive, then the newest CATCH_UP_LIMIT in order, never an unbounded backlog. The
limit is the run page's window, so a page showing the newest window just replaces
its rows; any other page counts them and offers to reload. A client within the
limit still gets every checkpoint exactly once, in order, across reconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string

from . import access, live, metrics, streams, timeline
from .models import Checkpoint, Run

# How often each process polls the database for the runs its pages watch when the channel
# layer cannot carry messages from other processes (the in-memory layer): one query per
# watched run, however many pages watch it, so it can be frequent. With Redis, pages poll
# only as a safety net for messages lost while Redis was away, and only when quiet.
POLL_SECONDS = getattr(settings, "WFDASH_LIVE_POLL_SECONDS", 0.2)
SAFETY_POLL_SECONDS = getattr(settings, "WFDASH_LIVE_SAFETY_POLL_SECONDS", 5.0)


CATCH_UP_CHUNK = 500  # what one shared database poll reads at a time
BAD_FRAME = 4400  # a frame that is not JSON (pages send nothing)
CATCH_UP_LIMIT = timeline.WINDOW  # at most what one catch-up sends (see the docstring)
log = logging.getLogger("runs.live")
LOOKBACK = timedelta(seconds=2)


@lru_cache(maxsize=4096)
def _checkpoint_frame(encoded: str) -> str:
    message = json.loads(encoded)
    html = render_to_string("runs/_checkpoint_row.html", {"c": message})
    return json.dumps({**message, "html": html})


def checkpoint_frame(message: live.CheckpointMessage) -> str:
    # Rendered and encoded once per process, however many clients watch the run; keyed by
    # its JSON because a message holds lists (its retries), which are not hashable.
    return _checkpoint_frame(json.dumps(message, sort_keys=True))


def run_html(message: live.RunMessage) -> str:
    return render_to_string("runs/_run_row.html", {"r": message})


class _LiveConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    # Channels closes stale database connections before every message, one thread
    # hop each; with hundreds of pages open that hop dominates delivery latency.
    # Relayed announcements touch the database only through database_sync_to_async,
    # which does the same cleanup in its own thread, so they skip it.
    RELAYED = frozenset({"checkpoint.created", "run.changed", "stream.delta", "stream.end"})

    last_relayed = 0.0

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        metrics.LIVE_CONNECTIONS.inc()  # paired with websocket_disconnect, however connect() ends
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        metrics.LIVE_CONNECTIONS.dec()
        await super().websocket_disconnect(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") in self.RELAYED:
            self.last_relayed = asyncio.get_running_loop().time()
            await getattr(self, message["type"].replace(".", "_"))(message)
        else:
            await super().dispatch(message)

    def start_polling(
        self, group: str, own_poll: Callable[[], Coroutine[Any, Any, None]], shared_poll: Callable[[], Awaitable[None]]
    ) -> None:
        """With Redis, each page keeps its own slow safety poll. On the in-memory layer the
        database is the only way news from other processes arrives: one poll per group and
        process hands what it finds to every page of that group, instead of one poll per
        page (200 pages polling twice a second saturated the database thread)."""
        self.polled_group: str | None = None
        self.poller: asyncio.Task[None] | None = None
        if live.cross_process():
            self.poller = asyncio.create_task(own_poll())
        else:
            self.polled_group = group
            _shared_polls.join(group, self, shared_poll)

    def stop_polling(self) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
        group = getattr(self, "polled_group", None)
        if group is not None:
            _shared_polls.leave(group, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Pages only listen: a frame that is not JSON closes the socket (4400), quietly."""
        try:
            json.loads(text_data if text_data is not None else (bytes_data or b"").decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            log.info("closing a live socket that sent a frame that is not JSON")
            await self.close(code=BAD_FRAME)

    async def wait_to_poll(self) -> None:
        """Sleep until a page's next safety poll (Redis): it only covers messages lost while
        Redis was away, so it is skipped while messages flow (a gap shows in the next seq),
        and spread out so pages do not poll in step."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SAFETY_POLL_SECONDS * (0.5 + random.random()))
            if loop.time() - self.last_relayed >= SAFETY_POLL_SECONDS:
                return


class RunConsumer(_LiveConsumer):
    """`/ws/runs/<id>/?after=<seq>`: one run's checkpoints and status."""

    async def connect(self) -> None:
        refused = await database_sync_to_async(access.socket_close_code)(self.scope.get("user"))
        if refused is not None:
            await self.close(code=refused)
            return
        try:
            self.run_id = uuid.UUID(self.scope["url_route"]["kwargs"]["run_id"])
            query = parse_qs(self.scope.get("query_string", b"").decode())
            self.cursor = int(query.get("after", ["0"])[0])
            if self.cursor < 0:
                raise ValueError
        except (ValueError, KeyError):
            await self.close(code=4400)
            return
        if not await database_sync_to_async(Run.objects.filter(pk=self.run_id).exists)():
            await self.close(code=4404)
            return
        self.group = live.run_group(self.run_id)
        self.lock = asyncio.Lock()
        self.last_status: str | None = None
        self.streams = streams.PageStreams()
        self.healing: dict[int, asyncio.Task[None]] = {}
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.catch_up()
        # A poll started now picks up right after what this page just caught up to; pages
        # that join later are in the group before their own catch-up, so none misses a seq.
        cursor, status = self.cursor, self.last_status
        self.start_polling(self.group, self.poll, lambda: _poll_run(self.run_id, self.group, cursor, status))

    async def disconnect(self, code: int) -> None:
        self.stop_polling()
        for task in getattr(self, "healing", {}).values():
            task.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # the page only listens

    async def checkpoint_created(self, event: dict[str, Any]) -> None:
        message: live.CheckpointMessage = event["message"]
        async with self.lock:
            if message["seq"] <= self.cursor:
                return
            if message["seq"] != self.cursor + 1:
                await self._send_missing()  # a gap: the database has what was skipped
                return
            await self._send_checkpoint(message)

    async def run_changed(self, event: dict[str, Any]) -> None:
        message: live.RunMessage = event["message"]
        async with self.lock:
            # Checkpoints committed before the status change are sent first.
            if message["checkpoint_count"] > self.cursor:
                await self._send_missing()
            self.last_status = message["status"]
            await self.send_json({**message, "html": run_html(message)})

    async def catch_up(self) -> None:
        async with self.lock:
            await self._send_missing()
            run = await self._load_run()
            if run is not None and run["checkpoint_count"] > self.cursor:
                await self._send_missing()
            if run is not None:
                self.last_status = run["status"]
                await self.send_json({**run, "html": run_html(run)})
            if run is not None and run["status"] == "running":
                # The text running steps have streamed so far (deltas after it are queued).
                for snapshot in await database_sync_to_async(streams.stream_snapshots)(self.run_id):
                    await self._send_stream(snapshot)

    async def stream_delta(self, event: dict[str, Any]) -> None:
        message: live.StreamMessage = event["message"]
        async with self.lock:
            await self._send_stream(message)

    async def stream_end(self, event: dict[str, Any]) -> None:
        message: live.StreamEndMessage = event["message"]
        async with self.lock:
            self.streams.ended(message["execution"])
            healing = self.healing.pop(message["execution"], None)
            if healing is not None:
                healing.cancel()
            await self.send_json(message)

    async def _send_stream(self, message: live.StreamMessage) -> None:
        out, gap = self.streams.admit(message)
        if out is not None:
            await self.send_json(out)
        execution = message["execution"]
        if gap and execution not in self.healing:
            self.healing[execution] = asyncio.create_task(self._fill_gap(execution))

    async def _fill_gap(self, execution: int) -> None:
        """Fill a gap in a stream from its snapshot, waiting for a newer one (or the first:
        a stream is snapshotted once it lasts) while it lags. stream_end cancels it."""
        try:
            for _ in range(streams.FILL_TRIES):
                snapshot = await database_sync_to_async(streams.one_snapshot)(self.run_id, execution)
                if snapshot is not None:
                    async with self.lock:
                        out, gap = self.streams.fill(snapshot)
                        for message in out:
                            await self.send_json(message)
                    if not gap:
                        return
                await asyncio.sleep(streams.SNAPSHOT_SECONDS)
        finally:
            if self.healing.get(execution) is asyncio.current_task():
                del self.healing[execution]

    async def poll(self) -> None:
        while True:
            await self.wait_to_poll()
            async with self.lock:
                await self._send_missing()
                run = await self._load_run()
                if run is not None and run["checkpoint_count"] > self.cursor:
                    # Committed between the two reads: send them before the status.
                    await self._send_missing()
                if run is not None and run["status"] != self.last_status:
                    self.last_status = run["status"]
                    await self.send_json({**run, "html": run_html(run)})

    async def _send_missing(self) -> None:
        skipped, rows = await database_sync_to_async(_newest_after)(self.run_id, self.cursor)
        if skipped is not None:
            await self.send_json(skipped)
            self.cursor = skipped["through"]
        for message in rows:
            await self._send_checkpoint(message)

    async def _send_checkpoint(self, message: live.CheckpointMessage) -> None:
        await self.send(text_data=checkpoint_frame(message))
        self.cursor = message["seq"]

    async def _load_run(self) -> live.RunMessage | None:
        return await database_sync_to_async(_run_message)(self.run_id)


def _checkpoints_after(run_id: uuid.UUID, cursor: int) -> list[live.CheckpointMessage]:
    rows = Checkpoint.objects.filter(run_id=run_id, seq__gt=cursor).order_by("seq")[:CATCH_UP_CHUNK]
    return [live.checkpoint_message(c) for c in rows.defer("input_event", "output_event", "state")]


def _newest_after(
    run_id: uuid.UUID, cursor: int, limit: int = CATCH_UP_LIMIT
) -> tuple[live.SkippedMessage | None, list[live.CheckpointMessage]]:
    """The newest `limit` checkpoints after `cursor`, in seq order, and a `skipped` message
    for those before them when there are more."""
    qs = Checkpoint.objects.filter(run_id=run_id, seq__gt=cursor).defer("input_event", "output_event", "state")
    rows = list(qs.order_by("-seq")[: limit + 1])
    skipped: live.SkippedMessage | None = None
    if len(rows) > limit:
        rows = rows[:limit]
        through = rows[-1].seq - 1
        count = Checkpoint.objects.filter(run_id=run_id, seq__gt=cursor, seq__lte=through).count()
        skipped = {"type": "skipped", "after": cursor, "through": through, "count": count}
    return skipped, [live.checkpoint_message(c) for c in reversed(rows)]


def _run_message(run_id: uuid.UUID) -> live.RunMessage | None:
    run = Run.objects.select_related("parent_checkpoint").filter(pk=run_id).first()
    if run is None:
        return None
    return live.run_message(run, str(run.parent_checkpoint.run_id) if run.parent_checkpoint else None)


class RunsListConsumer(_LiveConsumer):
    """`/ws/runs/`: new runs and status changes for the runs list."""

    async def connect(self) -> None:
        refused = await database_sync_to_async(access.socket_close_code)(self.scope.get("user"))
        if refused is not None:
            await self.close(code=refused)
            return
        await self.channel_layer.group_add(live.RUNS_GROUP, self.channel_name)
        await self.accept()
        self.start_polling(live.RUNS_GROUP, self.poll, _poll_runs_list)

    async def disconnect(self, code: int) -> None:
        self.stop_polling()
        await self.channel_layer.group_discard(live.RUNS_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass

    async def run_changed(self, event: dict[str, Any]) -> None:
        message: live.RunMessage = event["message"]
        await self.send_json({**message, "html": run_html(message)})

    async def poll(self) -> None:
        async def send(message: live.RunMessage) -> None:
            await self.send_json({**message, "html": run_html(message)})

        await _watch_runs(self.wait_to_poll, send)


async def _watch_runs(wait: Callable[[], Awaitable[None]], send: Callable[[live.RunMessage], Awaitable[None]]) -> None:
    """Send each run change seen in the database, once."""
    # Rows are stamped before their transaction commits, so a change can become
    # visible with a stamp older than one already seen: look back a little and
    # send each (run, stamp) once.
    sent: dict[str, datetime] = {}
    since = await database_sync_to_async(_latest_update)()
    while True:
        await wait()
        window = since - LOOKBACK if since is not None else None
        changed = await database_sync_to_async(_changed_since)(window)
        for stamp, message in changed:
            if sent.get(message["run_id"]) == stamp:
                continue
            sent[message["run_id"]] = stamp
            since = stamp if since is None or stamp > since else since
            await send(message)
        if len(sent) > 10_000:
            sent.clear()


async def _poll_runs_list() -> None:
    async def send(message: live.RunMessage) -> None:
        await _shared_polls.deliver(live.RUNS_GROUP, "run_changed", message)

    await _watch_runs(partial(asyncio.sleep, POLL_SECONDS), send)


async def _poll_run(run_id: uuid.UUID, group: str, cursor: int, status: str | None) -> None:
    """Hand one run's checkpoints after `cursor`, its status changes and what its steps
    stream to this process's pages of it."""
    seen: dict[int, tuple[Any, str]] = {}
    while True:
        await asyncio.sleep(POLL_SECONDS)
        rows = await database_sync_to_async(_checkpoints_after)(run_id, cursor)
        for message in rows:
            await _shared_polls.deliver(group, "checkpoint_created", message)
            cursor = message["seq"]
        if len(rows) == CATCH_UP_CHUNK:
            continue  # more to come: the status after them
        run = await database_sync_to_async(_run_message)(run_id)
        if run is not None and run["status"] != status:
            status = run["status"]
            # Pages send checkpoints committed before the change first (run_changed).
            await _shared_polls.deliver(group, "run_changed", run)
        if status == "running" or seen:
            # No relay reaches this process: the snapshots stand in for it.
            changed, ended = await database_sync_to_async(streams.poll_snapshots)(run_id, seen)
            for stream in changed:
                await _shared_polls.deliver(group, "stream_delta", stream)
            for end in ended:
                await _shared_polls.deliver(group, "stream_end", end)


class _SharedPolls:
    """One polling task per group in this process, alive while some page needs it.

    What it finds goes straight to the pages' handlers, not through the in-memory channel
    layer, whose every receive scans all channels and groups (quadratic in pages).
    """

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.pages: dict[str, set[_LiveConsumer]] = {}

    def join(self, group: str, page: _LiveConsumer, poll: Callable[[], Awaitable[None]]) -> None:
        self.pages.setdefault(group, set()).add(page)
        task = self.tasks.get(group)
        if task is None or task.done():
            self.tasks[group] = asyncio.get_running_loop().create_task(_keep_polling(poll))

    def leave(self, group: str, page: _LiveConsumer) -> None:
        pages = self.pages.get(group, set())
        pages.discard(page)
        if not pages:
            self.pages.pop(group, None)
            task = self.tasks.pop(group, None)
            if task is not None:
                task.cancel()

    async def deliver(self, group: str, handler: str, message: Any) -> None:
        for page in list(self.pages.get(group, ())):
            try:
                await getattr(page, handler)({"message": message})
            except Exception:  # one page's broken socket must not starve the others
                log.warning("could not deliver to a live page", exc_info=True)


async def _keep_polling(poll: Callable[[], Awaitable[None]]) -> None:
    # A database that is away for a while must not end the live view for good.
    while True:
        try:
            await poll()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("live poll failed; retrying", exc_info=True)
            await asyncio.sleep(POLL_SECONDS)


_shared_polls = _SharedPolls()


def _latest_update() -> datetime | None:
    return Run.objects.order_by("-updated_at").values_list("updated_at", flat=True).first()


def _changed_since(since: datetime | None) -> list[tuple[datetime, live.RunMessage]]:
    qs = Run.objects.select_related("parent_checkpoint").order_by("updated_at")
    if since is not None:
        qs = qs.filter(updated_at__gt=since)
    return [
        (r.updated_at, live.run_message(r, str(r.parent_checkpoint.run_id) if r.parent_checkpoint else None))
        for r in qs[:500]
    ]
