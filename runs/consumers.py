"""WebSocket consumers: relay announcements; catch up from the database by seq.

Every checkpoint reaches a client exactly once and in order: the consumer keeps
the last seq it sent, drops anything at or below it, and fills any gap from the
database before relaying more.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string

from . import live
from .models import Checkpoint, Run

# How often a page polls the database when the channel layer cannot carry
# messages from other processes (the in-memory layer), and, as a safety net for
# messages lost while Redis was away, when it can.
POLL_SECONDS = getattr(settings, "WFDASH_LIVE_POLL_SECONDS", 0.5)
SAFETY_POLL_SECONDS = getattr(settings, "WFDASH_LIVE_SAFETY_POLL_SECONDS", 5.0)


CATCH_UP_CHUNK = 500
LOOKBACK = timedelta(seconds=2)


@lru_cache(maxsize=4096)
def _checkpoint_frame(message_key: tuple[tuple[str, Any], ...]) -> str:
    message = dict(message_key)
    html = render_to_string("runs/_checkpoint_row.html", {"c": message})
    return json.dumps({**message, "html": html})


def checkpoint_frame(message: live.CheckpointMessage) -> str:
    # Rendered and encoded once per process, however many clients watch the run.
    return _checkpoint_frame(tuple(sorted(message.items())))


def run_html(message: live.RunMessage) -> str:
    return render_to_string("runs/_run_row.html", {"r": message})


class _LiveConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    # Channels closes stale database connections before every message, one thread
    # hop each; with hundreds of pages open that hop dominates delivery latency.
    # Relayed announcements touch the database only through database_sync_to_async,
    # which does the same cleanup in its own thread, so they skip it.
    RELAYED = frozenset({"checkpoint.created", "run.changed"})

    last_relayed = 0.0

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") in self.RELAYED:
            self.last_relayed = asyncio.get_running_loop().time()
            await getattr(self, message["type"].replace(".", "_"))(message)
        else:
            await super().dispatch(message)

    async def wait_to_poll(self) -> None:
        """Sleep until the next database poll. With Redis the poll is only a safety net
        for messages lost while Redis was away: it is skipped while messages flow (a gap
        shows in the next seq), and spread out so pages do not poll in step."""
        if not live.cross_process():
            await asyncio.sleep(POLL_SECONDS)
            return
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SAFETY_POLL_SECONDS * (0.5 + random.random()))
            if loop.time() - self.last_relayed >= SAFETY_POLL_SECONDS:
                return


class RunConsumer(_LiveConsumer):
    """`/ws/runs/<id>/?after=<seq>`: one run's checkpoints and status."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
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
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.catch_up()
        self.poller = asyncio.create_task(self.poll())

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
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
        while True:
            rows = await self._load_after(self.cursor)
            for message in rows:
                await self._send_checkpoint(message)
            if len(rows) < CATCH_UP_CHUNK:
                return

    async def _send_checkpoint(self, message: live.CheckpointMessage) -> None:
        await self.send(text_data=checkpoint_frame(message))
        self.cursor = message["seq"]

    @database_sync_to_async
    def _load_after(self, cursor: int) -> list[live.CheckpointMessage]:
        rows = Checkpoint.objects.filter(run_id=self.run_id, seq__gt=cursor).order_by("seq")[:CATCH_UP_CHUNK]
        return [live.checkpoint_message(c) for c in rows.defer("input_event", "output_event", "ctx_state")]

    @database_sync_to_async
    def _load_run(self) -> live.RunMessage | None:
        run = Run.objects.select_related("parent_checkpoint").filter(pk=self.run_id).first()
        if run is None:
            return None
        return live.run_message(run, str(run.parent_checkpoint.run_id) if run.parent_checkpoint else None)


class RunsListConsumer(_LiveConsumer):
    """`/ws/runs/`: new runs and status changes for the runs list."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(live.RUNS_GROUP, self.channel_name)
        await self.accept()
        self.poller = asyncio.create_task(self.poll())

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
        await self.channel_layer.group_discard(live.RUNS_GROUP, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        pass

    async def run_changed(self, event: dict[str, Any]) -> None:
        message: live.RunMessage = event["message"]
        await self.send_json({**message, "html": run_html(message)})

    async def poll(self) -> None:
        # Rows are stamped before their transaction commits, so a change can become
        # visible with a stamp older than one already seen: look back a little and
        # send each (run, stamp) once.
        sent: dict[str, datetime] = {}
        since = await database_sync_to_async(_latest_update)()
        while True:
            await self.wait_to_poll()
            window = since - LOOKBACK if since is not None else None
            changed = await database_sync_to_async(_changed_since)(window)
            for stamp, message in changed:
                if sent.get(message["run_id"]) == stamp:
                    continue
                sent[message["run_id"]] = stamp
                since = stamp if since is None or stamp > since else since
                await self.send_json({**message, "html": run_html(message)})
            if len(sent) > 10_000:
                sent.clear()


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
