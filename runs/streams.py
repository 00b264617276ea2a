"""Live streams: what running steps write with `ctx.write_event_to_stream`, on their run's pages.

Nothing is stored per token. In the worker, `StreamRelay`:

- folds each step execution's stream into one `stream.delta` group message per
  FLUSH_SECONDS (the first piece goes at once), sent in order by one task;
- keeps the text so far and upserts it as a `StreamSnapshot` row at most every
  SNAPSHOT_SECONDS, through the store's group commit (streams shorter than that never
  touch the database);
- deletes that row in the batch that commits the step's checkpoint (which holds the final
  output), then sends `stream.end` with the checkpoint's seq.

The rows are the one design for both layers: a page that opens mid-step gets them in its
catch-up, and a page that missed deltas (it joined between two snapshots, or a full channel
dropped some) fills the gap from the next snapshot (`PageStreams`). With the in-memory layer
and a worker in another process no group message arrives at all: the web process's shared
database poll relays the snapshots instead (consumers.POLL_SECONDS apart).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from channels.layers import get_channel_layer
from django.utils import timezone

from wfdash.workflow import Context, Event, Workflow
from wfdash.workflow.checkpointer import Checkpoint as EngineCheckpoint
from wfdash.workflow.checkpointer import RunInfo
from wfdash.workflow.context import current_execution
from wfdash.workflow.serialization import encode_event
from wfdash.workflow.streaming import StreamWrite

from . import live
from .models import StreamSnapshot
from .store import DatabaseCheckpointStore

log = logging.getLogger("runs.live")

# One message per execution at most this often: a 1,000-token answer at 50 tokens/s is
# about 50 messages a second at worst, and the first token never waits.
FLUSH_SECONDS = 0.02
SNAPSHOT_SECONDS = 0.2
# The tail kept in memory, in snapshots and on pages (a page shows it, not a book).
TEXT_LIMIT = 50_000
# A streamed event's JSON is relayed up to this size; larger ones by their type only.
EVENT_LIMIT = 4_000
# Snapshots a catch-up or a poll reads per run: steps streaming at once.
SNAPSHOTS_PER_RUN = 20
# How long a page waits for a snapshot to fill a gap (in SNAPSHOT_SECONDS) before it gives
# up on that stream; its stream_end ends the wait anyway.
FILL_TRIES = 50

Submit = Callable[[Callable[[bool], Any]], Coroutine[Any, Any, Any]]


class _Stream:
    """One step execution's stream, as the worker relays it."""

    __slots__ = (
        "run_id",
        "step",
        "execution",
        "attempt",
        "pieces",
        "text",
        "sent",
        "event",
        "count",
        "flushed_at",
        "timer",
        "snapshot_at",
        "snapshot_timer",
        "snapshotted",
        "closed",
    )

    def __init__(self, run_id: str, write: StreamWrite, now: float) -> None:
        assert write.step is not None and write.execution is not None
        self.run_id = run_id
        self.step = write.step
        self.execution = write.execution
        self.attempt = write.attempt
        self.pieces: list[str] = []  # written since the last message
        self.text = ""  # the tail of what was sent
        self.sent = 0  # characters sent so far
        self.event: Event | None = None
        self.count = 0
        self.flushed_at = -math.inf
        self.timer: asyncio.TimerHandle | None = None
        self.snapshot_at = now  # the first snapshot only once a stream lasts
        self.snapshot_timer: asyncio.TimerHandle | None = None
        self.snapshotted = False
        self.closed = False

    def cancel_timers(self) -> None:
        for timer in (self.timer, self.snapshot_timer):
            if timer is not None:
                timer.cancel()
        self.timer = self.snapshot_timer = None


class StreamRelay:
    """Relays the streams of the runs one worker executes (see the module docstring)."""

    def __init__(self, submit: Submit, announce: bool) -> None:
        self._submit = submit
        self.announce = announce
        self._streams: dict[tuple[str, int], _Stream] = {}
        self._last_seq: dict[str, int] = {}
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    def attach(self, run_id: str, ctx: Context, after_seq: int = 0) -> None:
        """Relay what `ctx`'s steps stream from now on (before its run starts)."""
        self._last_seq[run_id] = after_seq
        ctx.add_stream_listener(partial(self._written, run_id), queue=False)

    # -- from the steps ----------------------------------------------------------

    def _written(self, run_id: str, write: StreamWrite) -> None:
        if write.execution is None:
            return  # written outside a step: there is no step to show it on
        try:
            self._take(run_id, write)
        except Exception:  # relaying is a view of the run: it never fails the step
            log.warning("could not relay a stream event of run %s", run_id, exc_info=True)

    def _take(self, run_id: str, write: StreamWrite) -> None:
        assert write.execution is not None
        loop = asyncio.get_running_loop()
        key = (run_id, write.execution)
        stream = self._streams.get(key)
        if stream is None or stream.attempt != write.attempt:
            if stream is not None:
                stream.cancel_timers()  # a retry starts the text afresh (offset 0 resets it)
            stream = self._streams[key] = _Stream(run_id, write, loop.time())
        delta = getattr(write.event, "delta", None)
        if isinstance(delta, str) and delta:
            stream.pieces.append(delta)
        stream.event = write.event
        stream.count += 1
        if stream.timer is None:
            wait = stream.flushed_at + FLUSH_SECONDS - loop.time()
            if wait <= 0:
                self._flush(stream)
            else:
                stream.timer = loop.call_later(wait, self._flush, stream)

    def _flush(self, stream: _Stream, snapshot: bool = True) -> None:
        stream.timer = None
        if stream.closed or not stream.count:
            return
        loop = asyncio.get_running_loop()
        delta = "".join(stream.pieces)
        stream.pieces.clear()
        offset = stream.sent
        stream.sent += len(delta)
        if len(delta) > TEXT_LIMIT:  # pages keep only a tail anyway
            offset, delta = offset + len(delta) - TEXT_LIMIT, delta[-TEXT_LIMIT:]
        stream.text = (stream.text + delta)[-TEXT_LIMIT:]
        if self.announce:
            message = self._message(stream, offset, delta)
            self._post(live.run_group(stream.run_id), {"type": "stream.delta", "message": message})
        stream.count = 0
        stream.flushed_at = loop.time()
        if snapshot and stream.snapshot_timer is None:
            wait = stream.snapshot_at + SNAPSHOT_SECONDS - loop.time()
            if wait <= 0:
                self._snapshot(stream)
            else:
                stream.snapshot_timer = loop.call_later(wait, self._snapshot, stream)

    def _message(self, stream: _Stream, offset: int, delta: str) -> live.StreamMessage:
        event = stream.event
        return {
            "type": "stream",
            "run_id": stream.run_id,
            "step": stream.step,
            "execution": stream.execution,
            "attempt": stream.attempt,
            "after_seq": self._last_seq.get(stream.run_id, 0),
            "offset": offset,
            "delta": delta,
            "reset": False,
            "event_type": type(event).__name__ if event is not None else "",
            "event": _encoded(event),
            "count": stream.count,
        }

    def _snapshot(self, stream: _Stream) -> None:
        stream.snapshot_timer = None
        if stream.closed:
            return
        stream.snapshot_at = asyncio.get_running_loop().time()
        stream.snapshotted = True
        row = StreamSnapshot(
            run_id=stream.run_id,
            execution=stream.execution,
            step=stream.step,
            attempt=stream.attempt,
            # PostgreSQL refuses NUL in text and jsonb; U+FFFD keeps the offsets right.
            text=stream.text.replace("\x00", "\ufffd"),
            length=stream.sent,
            event_type=type(stream.event).__name__ if stream.event is not None else "",
            event=_without_nul(_encoded(stream.event)),
            updated_at=timezone.now(),
        )
        self._write(partial(_upsert, row))

    # -- from the store --------------------------------------------------------

    def closing(self, run_id: str, execution: int | None) -> _Stream | None:
        """The step execution completed: send what it streamed last, before its checkpoint."""
        stream = self._streams.pop((run_id, execution), None) if execution is not None else None
        if stream is None:
            return None
        stream.cancel_timers()
        self._flush(stream, snapshot=False)
        stream.closed = True
        if stream.snapshotted:
            # Queued now, it lands in the batch that commits the checkpoint.
            self._write(partial(_delete, run_id, stream.execution))
        return stream

    def checkpointed(self, run_id: str, seq: int, stream: _Stream | None) -> None:
        self._last_seq[run_id] = max(seq, self._last_seq.get(run_id, 0))
        if stream is not None:
            self._end(stream, seq)

    def run_ended(self, run_id: str) -> None:
        """Streams of steps that never completed (the run failed, or was cancelled or suspended)."""
        streams = [s for key, s in self._streams.items() if key[0] == run_id]
        for stream in streams:
            del self._streams[(run_id, stream.execution)]
            stream.cancel_timers()
            stream.closed = True
            self._end(stream, None)
        if any(s.snapshotted for s in streams):
            self._write(partial(_delete, run_id, None))
        self._last_seq.pop(run_id, None)

    def forget_stale(self, run_id: str) -> None:
        """A resumed run: snapshots its previous worker left behind belong to no live step."""
        self._write(partial(_delete, run_id, None))

    def _end(self, stream: _Stream, seq: int | None) -> None:
        message: live.StreamEndMessage = {
            "type": "stream_end",
            "run_id": stream.run_id,
            "step": stream.step,
            "execution": stream.execution,
            "seq": seq,
        }
        self._post(live.run_group(stream.run_id), {"type": "stream.end", "message": message})

    # -- out -----------------------------------------------------------------------

    def _post(self, group: str, event: dict[str, Any]) -> None:
        if not self.announce:
            return
        self._outbox.put_nowait((group, event))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        # One task sends everything, so a page gets each execution's messages in order.
        layer = get_channel_layer()
        while not self._outbox.empty():
            group, event = self._outbox.get_nowait()
            if layer is None:
                continue
            try:
                await layer.group_send(group, event)
            except Exception:  # a page that misses a delta fills it from a snapshot
                log.warning("could not relay a stream message", exc_info=True)

    def _write(self, op: Callable[[bool], Any]) -> None:
        # Submitted at once (a task's first step), so writes keep their order in the batches.
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(self._submit(op))
        self._writes.add(task)
        task.add_done_callback(self._written_back)

    def _written_back(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not write a stream snapshot: %s", task.exception())


def _encoded(event: Event | None) -> dict[str, Any] | None:
    """An event's JSON, as relayed: None for a large one (its type is sent anyway)."""
    if event is None:
        return None
    encoded = encode_event(event)
    return encoded if len(json.dumps(encoded)) <= EVENT_LIMIT else None


def _without_nul(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    encoded = json.dumps(value)
    return json.loads(encoded.replace("\\u0000", "\\ufffd")) if "\\u0000" in encoded else value


def _upsert(row: StreamSnapshot, retrying: bool) -> None:
    StreamSnapshot.objects.bulk_create(
        [row],
        update_conflicts=True,
        unique_fields=["run", "execution"],
        update_fields=["step", "attempt", "text", "length", "event_type", "event", "updated_at"],
    )


def _delete(run_id: str, execution: int | None, retrying: bool) -> None:
    rows = StreamSnapshot.objects.filter(run_id=run_id)
    if execution is not None:
        rows = rows.filter(execution=execution)
    rows.delete()


class StreamingCheckpointStore(DatabaseCheckpointStore):
    """The worker's store: the database store, plus its runs' streams relayed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = StreamRelay(self._batcher.submit, self.announce)

    async def run_started(self, run: RunInfo) -> None:
        if run.resumed:
            self.streams.forget_stale(run.run_id)
        await super().run_started(run)

    async def put_checkpoint(self, checkpoint: EngineCheckpoint, workflow: Workflow) -> None:
        # Called in the step's own task, so the execution is the one that just completed.
        stream = self.streams.closing(checkpoint.run_id, current_execution())
        await super().put_checkpoint(checkpoint, workflow)
        self.streams.checkpointed(checkpoint.run_id, checkpoint.seq, stream)

    async def run_finished(self, run_id: str, result: Any, error: BaseException | None) -> None:
        try:
            await super().run_finished(run_id, result, error)
        finally:
            self.streams.run_ended(run_id)


# -- pages ----------------------------------------------------------------------------


def snapshot_message(row: StreamSnapshot, after_seq: int = 0) -> live.StreamMessage:
    return {
        "type": "stream",
        "run_id": str(row.run_id),
        "step": row.step,
        "execution": row.execution,
        "attempt": row.attempt,
        "after_seq": after_seq,
        "offset": row.length - len(row.text),
        "delta": row.text,
        "reset": True,
        "event_type": row.event_type,
        "event": row.event,
        "count": 0,
    }


def stream_snapshots(run_id: Any) -> list[live.StreamMessage]:
    """The text so far of each step streaming in `run_id` (sync: call it off the event loop)."""
    rows = StreamSnapshot.objects.filter(run_id=run_id).order_by("execution")[:SNAPSHOTS_PER_RUN]
    return [snapshot_message(row) for row in rows]


class PageStreams:
    """What one page was sent of each streaming step execution.

    Passes on the part of a message that extends what the page has; holds what comes after
    a gap (joined between two snapshots, or a delta was dropped) until a snapshot fills it.
    """

    def __init__(self) -> None:
        # execution -> (attempt, characters the page has)
        self.ends: dict[int, tuple[int, int]] = {}
        self.waiting: dict[int, live.StreamMessage] = {}

    def admit(self, msg: live.StreamMessage) -> tuple[live.StreamMessage | None, bool]:
        """(what to send, or None; whether a gap before it needs a snapshot)."""
        execution, attempt = msg["execution"], msg["attempt"]
        start = msg["offset"]
        end = start + len(msg["delta"])
        known = self.ends.get(execution)
        if known is None or known[0] != attempt:
            if msg["reset"] or start == 0:
                self.ends[execution] = (attempt, end)
                return {**msg, "reset": True}, False
            return None, self._wait(msg)
        have = known[1]
        if end < have or (end == have and not msg["count"]):
            return None, False
        if start <= have:
            self.ends[execution] = (attempt, end)
            return {**msg, "offset": have, "delta": msg["delta"][have - start :], "reset": False}, False
        return None, self._wait(msg)

    def _wait(self, msg: live.StreamMessage) -> bool:
        held = self.waiting.get(msg["execution"])
        if held is not None and held["attempt"] == msg["attempt"]:
            if held["offset"] + len(held["delta"]) == msg["offset"]:
                msg = {**msg, "offset": held["offset"], "delta": (held["delta"] + msg["delta"])}
            elif msg["offset"] > held["offset"]:
                return True  # not contiguous with what is held: keep the older, a snapshot covers both
        if len(msg["delta"]) > TEXT_LIMIT:
            msg = {**msg, "offset": msg["offset"] + len(msg["delta"]) - TEXT_LIMIT, "delta": msg["delta"][-TEXT_LIMIT:]}
        self.waiting[msg["execution"]] = msg
        return True

    def fill(self, snapshot: live.StreamMessage) -> tuple[list[live.StreamMessage], bool]:
        """Apply a snapshot, then what was waiting: (what to send, whether a gap remains)."""
        out: list[live.StreamMessage] = []
        sent, _ = self.admit(snapshot)
        if sent is not None:
            out.append(sent)
        held = self.waiting.pop(snapshot["execution"], None)
        if held is None:
            return out, False
        sent, gap = self.admit(held)
        if sent is not None:
            out.append(sent)
        return out, gap

    def ended(self, execution: int) -> None:
        self.ends.pop(execution, None)
        self.waiting.pop(execution, None)


def one_snapshot(run_id: Any, execution: int) -> live.StreamMessage | None:
    row = StreamSnapshot.objects.filter(run_id=run_id, execution=execution).first()
    return snapshot_message(row) if row is not None else None


def poll_snapshots(
    run_id: Any, seen: dict[int, tuple[Any, str]]
) -> tuple[list[live.StreamMessage], list[live.StreamEndMessage]]:
    """For a poll that stands in for the relay (the in-memory layer, a worker elsewhere): the
    snapshots changed since `seen`, and the streams whose snapshot is gone (their checkpoint
    committed). Updates `seen`."""
    rows = list(
        StreamSnapshot.objects.filter(run_id=run_id)
        .order_by("execution")
        .values_list("execution", "updated_at", "step")[:SNAPSHOTS_PER_RUN]
    )
    current = {execution: (at, step) for execution, at, step in rows}
    changed = [execution for execution, (at, _) in current.items() if seen.get(execution, (None, ""))[0] != at]
    messages: list[live.StreamMessage] = []
    if changed:
        snapshots = StreamSnapshot.objects.filter(run_id=run_id, execution__in=changed).order_by("execution")
        messages = [snapshot_message(row) for row in snapshots]
    ended: list[live.StreamEndMessage] = [
        {"type": "stream_end", "run_id": str(run_id), "step": step, "execution": execution, "seq": None}
        for execution, (_, step) in seen.items()
        if execution not in current
    ]
    seen.clear()
    seen.update(current)
    return messages, ended
