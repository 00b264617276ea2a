"""The live view's protocol: group names, message types, and announcements after commit.

Announcements go through the channel layer. With Redis they reach every daphne
process; with the in-memory layer they reach only this process, so each web process
polls the database for the runs its pages watch (see consumers.POLL_SECONDS) and
workers skip sending.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .models import Checkpoint, Run

log = logging.getLogger("runs.live")

RUNS_GROUP = "runs"


def run_group(run_id: uuid.UUID | str) -> str:
    """The group of one run's page; built from the id only (Channels allows [a-zA-Z0-9_.-])."""
    return f"run.{uuid.UUID(str(run_id)).hex}"


class CheckpointMessage(TypedDict):
    type: Literal["checkpoint"]
    id: str
    run_id: str
    seq: int
    last_completed_step: str
    input_event_type: str
    output_event_type: str
    created_at: str
    duration_ms: float
    llm_calls: int
    tokens: int
    retries: list[dict[str, Any]]


class SkippedMessage(TypedDict):
    """Sent instead of the checkpoints after `after` up to `through` (`count` of them) when a
    client is further behind than one catch-up sends; the newest ones follow."""

    type: Literal["skipped"]
    after: int
    through: int
    count: int


class RunMessage(TypedDict):
    type: Literal["run"]
    run_id: str
    workflow: str
    status: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    checkpoint_count: int
    tokens: int
    parent_run_id: str | None
    parent_checkpoint_id: str | None
    error: str


class StreamMessage(TypedDict):
    """What a running step streamed since the last message (see runs/streams.py).

    `delta` is the text from character `offset` of the execution's stream; `reset` means
    it is the text so far (a snapshot: replace, don't append). `event` is the newest
    event's JSON (None when large), `count` how many events this message folds together.
    """

    type: Literal["stream"]
    run_id: str
    step: str
    execution: int
    attempt: int
    # The run's newest checkpoint this worker had written: the step's will come after it.
    after_seq: int
    offset: int
    delta: str
    reset: bool
    event_type: str
    event: dict[str, Any] | None
    count: int


class StreamEndMessage(TypedDict):
    """A step execution's stream ended: its checkpoint is `seq` (None: the run stopped first)."""

    type: Literal["stream_end"]
    run_id: str
    step: str
    execution: int
    seq: int | None


def checkpoint_message(c: Checkpoint) -> CheckpointMessage:
    usage = c.usage or []
    return {
        "type": "checkpoint",
        "id": str(c.id),
        "run_id": str(c.run_id),
        "seq": c.seq,
        "last_completed_step": c.last_completed_step,
        "input_event_type": c.input_event_type,
        "output_event_type": c.output_event_type,
        "created_at": c.created_at.isoformat(),
        "duration_ms": round(c.duration_ms, 3),
        "llm_calls": len(usage),
        "tokens": sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0)) for u in usage),
        # Failed attempts before the one that succeeded: [{"attempt", "error", "duration_ms"}].
        "retries": c.retries or [],
    }


def run_message(run: Run, parent_run_id: str | None = None) -> RunMessage:
    duration = run.duration
    return {
        "type": "run",
        "run_id": str(run.id),
        "workflow": run.workflow,
        "status": run.status,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_ms": round(duration.total_seconds() * 1000, 1) if duration is not None else None,
        "checkpoint_count": run.checkpoint_count,
        "tokens": run.total_tokens,
        "parent_run_id": parent_run_id,
        "parent_checkpoint_id": str(run.parent_checkpoint_id) if run.parent_checkpoint_id else None,
        "error": run.error[:300],
    }


def cross_process() -> bool:
    """True when group messages reach other processes (Redis), False for the in-memory layer."""
    layer = get_channel_layer()
    return layer is not None and type(layer).__name__ != "InMemoryChannelLayer"


def announce_run(run_id: uuid.UUID | str) -> None:
    """After the current transaction commits, tell list and run pages that a run changed."""
    announce_runs([run_id])


def announce_runs(run_ids: list[uuid.UUID | str]) -> None:
    """announce_run for many runs (a sweep's): one query and one hop into the event loop,
    instead of one each (100 announcements cost ~300 ms one by one)."""
    ids = list(run_ids)

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        runs = Run.objects.select_related("parent_checkpoint").filter(pk__in=ids)
        runs = runs.defer("start_event", "result", "fork_edits", "pending_input", "error_traceback").defer(
            "parent_checkpoint__input_event", "parent_checkpoint__output_event", "parent_checkpoint__state"
        )
        events = []
        for run in runs:
            parent = str(run.parent_checkpoint.run_id) if run.parent_checkpoint else None
            event = {"type": "run.changed", "message": run_message(run, parent)}
            events += [(RUNS_GROUP, event), (run_group(run.id), event)]

        async def send_all() -> None:
            for group, event in events:
                try:
                    await layer.group_send(group, event)
                except Exception:  # a live page missing an update catches up by seq; never fail the write
                    log.warning("could not announce to %s", group, exc_info=True)

        async_to_sync(send_all)()

    transaction.on_commit(send)


async def aannounce_checkpoints(messages: list[CheckpointMessage]) -> None:
    """Announce committed checkpoints (called by the worker's store after its batch committed)."""
    layer = get_channel_layer()
    if layer is None:
        return
    for message in messages:
        try:
            await layer.group_send(run_group(message["run_id"]), {"type": "checkpoint.created", "message": message})
        except Exception:
            log.warning("could not announce checkpoint", exc_info=True)


async def aannounce_runs(run_ids: list[str]) -> None:
    """Announce run changes from async code (the worker), reading each run once."""
    from asgiref.sync import sync_to_async

    layer = get_channel_layer()
    if layer is None or not run_ids:
        return

    def load() -> list[RunMessage]:
        rows = Run.objects.select_related("parent_checkpoint").filter(pk__in=run_ids)
        return [run_message(r, str(r.parent_checkpoint.run_id) if r.parent_checkpoint else None) for r in rows]

    try:
        messages = await sync_to_async(load)()
    except Exception:  # the database is away: pages catch up by seq when it is back
        log.warning("could not read runs to announce", exc_info=True)
        return
    await asend_runs(messages)


def run_messages(runs: list[Run]) -> list[RunMessage]:
    """Messages of runs already read (their fork points' run ids in one query)."""
    forks = [r.parent_checkpoint_id for r in runs if r.parent_checkpoint_id]
    parents = dict(Checkpoint.objects.filter(pk__in=forks).values_list("id", "run_id")) if forks else {}
    return [
        run_message(r, str(parents[r.parent_checkpoint_id]) if r.parent_checkpoint_id in parents else None)
        for r in runs
    ]


async def asend_runs(messages: list[RunMessage]) -> None:
    """Announce runs whose messages are built (see run_messages) to the list and run pages."""
    layer = get_channel_layer()
    if layer is None:
        return
    for message in messages:
        for group in (RUNS_GROUP, run_group(message["run_id"])):
            try:
                await layer.group_send(group, {"type": "run.changed", "message": message})
            except Exception:
                log.warning("could not announce run", exc_info=True)
    await asyncio.sleep(0)
