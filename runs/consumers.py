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

Group messages reach pages through this process's hub (runs/fanout.py): one subscription
per group, each message handed to every local page in one pass. A page writes what needs
no database at once (`deliver_now`); the rest (a gap, a catch-up in progress) waits in the
page's inbox for its handler, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import lru_cache, partial
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string

from . import access, fanout, live, metrics, streams, timeline
from .models import Checkpoint, Run

# How often each process polls the database for the runs its pages watch when the channel
# layer cannot carry messages from other processes (the in-memory layer): one query per
# watched run, however many pages watch it, so it can be frequent. With Redis, the poll is
# only a safety net for messages lost while Redis was away, and runs only when quiet.
POLL_SECONDS = getattr(settings, "WFDASH_LIVE_POLL_SECONDS", 0.2)
SAFETY_POLL_SECONDS = getattr(settings, "WFDASH_LIVE_SAFETY_POLL_SECONDS", 5.0)


CATCH_UP_CHUNK = 500  # what one shared database poll reads at a time
BAD_FRAME = 4400  # a frame that is not JSON (pages send nothing)
CATCH_UP_LIMIT = timeline.WINDOW  # at most what one catch-up sends (see the docstring)
# Frames queued for one socket that is not taking them (the page's own sends wait beyond it),
# and messages waiting for one page before it is closed to reconnect and catch up by seq.
OUTBOX_LIMIT = 2 * CATCH_UP_LIMIT
INBOX_LIMIT = 10 * CATCH_UP_LIMIT
TRY_AGAIN = 1013  # not a 44xx refusal: the page reconnects with ?after=<seq>
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


def run_frame(message: live.RunMessage) -> str:
    return json.dumps({**message, "html": run_html(message)})


class _LiveConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A live page: group messages come from this process's hub (runs/fanout.py), which
    hands each to `deliver`; frames go out through the page's outbox, in order."""

    # No channel of its own: the hub holds the process's one subscription per group.
    channel_layer_alias = None

    joined: str | None = None
    hub: fanout.Hub | None = None
    outbox: fanout.Outbox | None = None
    drainer: asyncio.Task[None] | None = None
    polled_group: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # also when the server cancels the page without a disconnect message
            await self.leave()

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        metrics.LIVE_CONNECTIONS.inc()  # paired with websocket_disconnect, however connect() ends
        await super().websocket_connect(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        metrics.LIVE_CONNECTIONS.dec()
        await super().websocket_disconnect(message)

    async def join(self, group: str) -> None:
        """Receive `group`'s messages (`deliver`) from now on."""
        self.inbox: deque[dict[str, Any]] = deque()
        self.outbox = fanout.Outbox(self._write, OUTBOX_LIMIT)
        self.hub, self.joined = fanout.hub(), group
        await self.hub.join(group, self)

    async def leave(self) -> None:
        self.stop_polling()
        if self.drainer is not None:
            self.drainer.cancel()
        if self.outbox is not None:
            self.outbox.close()
        group, self.joined = self.joined, None
        if group is not None and self.hub is not None:
            await self.hub.leave(group, self)

    async def _write(self, frame: str) -> None:
        await self.base_send({"type": "websocket.send", "text": frame})

    async def send(self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False) -> None:
        # Text frames queue behind what the hub handed over, so they keep their order.
        if self.outbox is not None and text_data is not None and bytes_data is None and not close:
            await self.outbox.put(text_data)
        else:
            await super().send(text_data, bytes_data, close)

    def deliver(self, event: dict[str, Any], frames: fanout.Frames) -> None:
        """From the hub: what needs no wait is written now; the rest waits its turn."""
        if self.outbox is None or self.outbox.closed:
            return  # the socket is gone or being closed; its disconnect leaves the group
        if not (self.ready() and self.deliver_now(event, frames)):
            self.defer(event)

    def ready(self) -> bool:
        """Nothing is ahead of a new message: no deferred one, no catch-up, no queued frame."""
        idle = self.outbox is not None and self.outbox.idle
        return idle and not self.inbox and (self.drainer is None or self.drainer.done())

    def deliver_now(self, event: dict[str, Any], frames: fanout.Frames) -> bool:
        """Handle `event` without waiting, or return False to have it handled in turn."""
        return False

    def defer(self, event: dict[str, Any]) -> None:
        if len(self.inbox) >= INBOX_LIMIT:
            # Hopelessly behind (its socket takes nothing): the page reconnects with ?after=<seq>
            # and catches up from the database, instead of this process holding its backlog.
            self.inbox.clear()
            if self.outbox is not None:
                self.outbox.close()
            if self.drainer is not None:
                self.drainer.cancel()
            self.drainer = asyncio.get_running_loop().create_task(self.close(code=TRY_AGAIN))
            return
        self.inbox.append(event)
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self.inbox:
            event = self.inbox.popleft()
            try:
                await getattr(self, event["type"].replace(".", "_"))(event)
            except Exception:  # the database is away: the next message or poll fills the gap
                log.warning("could not relay %s to a live page", event["type"], exc_info=True)

    def start_polling(self, group: str, poll: Callable[[], Awaitable[None]]) -> None:
        """One poll per group and process, handing what it finds to the group's pages through
        the hub, however many pages watch (200 pages polling on their own saturated the one
        database thread, and each held its page's lock meanwhile)."""
        self.polled_group = group
        _shared_polls.join(group, self, poll)

    def stop_polling(self) -> None:
        group, self.polled_group = self.polled_group, None
        if group is not None:
            _shared_polls.leave(group, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Pages only listen: a frame that is not JSON closes the socket (4400), quietly."""
        try:
            json.loads(text_data if text_data is not None else (bytes_data or b"").decode())
        except (ValueError, UnicodeDecodeError, RecursionError):
            log.info("closing a live socket that sent a frame that is not JSON")
            await self.close(code=BAD_FRAME)


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
        async with self.lock:  # what arrives meanwhile waits for the catch-up, then drops what it sent
            await self.join(self.group)
            await self.accept()
            await self._catch_up()
        # A poll started now picks up right after what this page just caught up to; pages
        # that join later are in the group before their own catch-up, so none misses a seq.
        cursor, status = self.cursor, self.last_status
        poll = _check_run if live.cross_process() else _poll_run
        self.start_polling(self.group, partial(poll, self.run_id, self.group, cursor, status))

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "healing", {}).values():
            task.cancel()
        await self.leave()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass  # the page only listens

    def deliver_now(self, event: dict[str, Any], frames: fanout.Frames) -> bool:
        # The common case, written by the hub for every page in one pass. It is the handlers
        # below without their waits: anything that needs the database takes their path.
        if self.lock.locked():
            return False
        kind, message = event["type"], event["message"]
        if kind == "checkpoint.created":
            if message["seq"] <= self.cursor:
                return True
            if message["seq"] != self.cursor + 1:
                return False  # a gap: filled from the database
            self._offer(frames.get("checkpoint", partial(checkpoint_frame, message)))
            self.cursor = message["seq"]
        elif kind == "run.changed":
            if message["checkpoint_count"] > self.cursor:
                return False  # its checkpoints first, from the database
            self.last_status = message["status"]
            self._offer(frames.get("run", partial(run_frame, message)))
        elif kind == "stream.delta":
            out, gap = self.streams.admit(message)
            if out is not None:
                # Pages that had the same text get the same frame.
                self._offer(frames.get(("stream", out["offset"], out["reset"]), partial(json.dumps, out)))
            if gap:
                self._heal(message["execution"])
        elif kind == "stream.end":
            self._stream_ended(message)
            self._offer(frames.get("stream.end", partial(json.dumps, message)))
        else:
            return False
        return True

    def _offer(self, frame: str) -> None:
        assert self.outbox is not None
        self.outbox.offer(frame)  # idle (deliver checked): written now, or the socket is closed

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
            await self.send(text_data=run_frame(message))

    async def _catch_up(self) -> None:
        """Send what the page lacks (its lock held)."""
        await self._send_missing()
        run = await self._load_run()
        if run is not None and run["checkpoint_count"] > self.cursor:
            await self._send_missing()
        if run is not None:
            self.last_status = run["status"]
            await self.send(text_data=run_frame(run))
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
            self._stream_ended(message)
            await self.send_json(message)

    def _stream_ended(self, message: live.StreamEndMessage) -> None:
        self.streams.ended(message["execution"])
        healing = self.healing.pop(message["execution"], None)
        if healing is not None:
            healing.cancel()

    async def _send_stream(self, message: live.StreamMessage) -> None:
        out, gap = self.streams.admit(message)
        if out is not None:
            await self.send_json(out)
        if gap:
            self._heal(message["execution"])

    def _heal(self, execution: int) -> None:
        if execution not in self.healing:
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
        await self.accept()  # the list has no catch-up: it was rendered just before
        await self.join(live.RUNS_GROUP)
        self.start_polling(live.RUNS_GROUP, _poll_runs_list)

    async def disconnect(self, code: int) -> None:
        await self.leave()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass

    def deliver_now(self, event: dict[str, Any], frames: fanout.Frames) -> bool:
        if event["type"] != "run.changed":
            return False
        assert self.outbox is not None
        self.outbox.offer(frames.get("run", partial(run_frame, event["message"])))
        return True

    async def run_changed(self, event: dict[str, Any]) -> None:
        await self.send(text_data=run_frame(event["message"]))


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
        await _shared_polls.deliver(live.RUNS_GROUP, "run.changed", message)

    await _watch_runs(_poll_wait(live.RUNS_GROUP), send)


def _poll_wait(group: str) -> Callable[[], Awaitable[None]]:
    if live.cross_process():
        return partial(_wait_quiet, group)
    return partial(asyncio.sleep, POLL_SECONDS)


async def _wait_quiet(group: str) -> None:
    """Sleep until the next safety poll (Redis): it only covers messages lost while Redis was
    away, so it is skipped while messages flow (a gap shows in the next seq), and spread out
    so the polls of many runs do not go in step."""
    while True:
        await asyncio.sleep(SAFETY_POLL_SECONDS * (0.5 + random.random()))
        if fanout.hub().quiet_for(group) >= SAFETY_POLL_SECONDS:
            return


async def _check_run(run_id: uuid.UUID, group: str, count: int, status: str | None) -> None:
    """With Redis, while the run's group is quiet: what a message lost while Redis was away
    would have said. A page behind the run's checkpoint_count fills from the database
    (run_changed), so only the run is read here."""
    while True:
        await _wait_quiet(group)
        run = await database_sync_to_async(_run_message)(run_id)
        if run is not None and (run["checkpoint_count"], run["status"]) != (count, status):
            count, status = run["checkpoint_count"], run["status"]
            await _shared_polls.deliver(group, "run.changed", run)


async def _poll_run(run_id: uuid.UUID, group: str, cursor: int, status: str | None) -> None:
    """Hand one run's checkpoints after `cursor`, its status changes and what its steps
    stream to this process's pages of it."""
    seen: dict[int, tuple[Any, str]] = {}
    while True:
        await asyncio.sleep(POLL_SECONDS)
        rows = await database_sync_to_async(_checkpoints_after)(run_id, cursor)
        for message in rows:
            await _shared_polls.deliver(group, "checkpoint.created", message)
            cursor = message["seq"]
        if len(rows) == CATCH_UP_CHUNK:
            continue  # more to come: the status after them
        run = await database_sync_to_async(_run_message)(run_id)
        if run is not None and run["status"] != status:
            status = run["status"]
            # Pages send checkpoints committed before the change first (run_changed).
            await _shared_polls.deliver(group, "run.changed", run)
        if status == "running" or seen:
            # No relay reaches this process: the snapshots stand in for it.
            changed, ended = await database_sync_to_async(streams.poll_snapshots)(run_id, seen)
            for stream in changed:
                await _shared_polls.deliver(group, "stream.delta", stream)
            for end in ended:
                await _shared_polls.deliver(group, "stream.end", end)


class _SharedPolls:
    """One polling task per group in this process, alive while some page needs it.

    What it finds goes straight to the pages through the hub (as if relayed), not through
    the in-memory channel layer, whose every send scans all channels and groups.
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

    async def deliver(self, group: str, kind: str, message: Any) -> None:
        # As if relayed: the hub hands it to this process's pages of the group.
        await fanout.hub().fan_out(group, {"type": kind, "message": message})


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
