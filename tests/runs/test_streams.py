"""Live streams on the run socket: deltas while a step runs, the text so far for a page that
joins mid-step, gaps filled from snapshots, and the fallback poll when no relay reaches the page.

The worker runs on this loop. With `announce=True` its relay reaches these pages through the
in-memory layer (as in `webworker`); with `announce=False` it stands for a worker in another
process. The fake server holds each stream after a few words until the test releases it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs import live
from runs.executor import Worker
from runs.models import Run, StreamSnapshot, start_run
from runs.streams import PageStreams
from tests.fake_openai import FakeOpenAI, fake_openai_server
from wfdash.asgi import application

ORIGIN = (b"origin", b"http://localhost")
JOKE = FakeOpenAI.answer("Write your best joke about owls.")
HELD_AFTER = 4
SHOWN = " ".join(JOKE.split()[:HELD_AFTER]) + " "


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with fake_openai_server() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-streams")
        monkeypatch.setenv("WFDASH_LLM_MODEL", "fake-model")
        yield server


def _session_cookie() -> bytes:
    user = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
async def cookie(transactional_db: None) -> bytes:
    return await sync_to_async(_session_cookie)()


async def _connect(run: Run, cookie: bytes) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"/ws/runs/{run.id}/?after=0", headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await ws.connect()
    assert connected
    return ws


async def _until(ws: WebsocketCommunicator, done: Any, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Receive (recording every message in `seen`) until `done(message)`; return that message."""
    while True:
        msg = await ws.receive_json_from(timeout=10)
        seen.append(msg)
        if done(msg):
            return msg


def _text(messages: list[dict[str, Any]], step: str) -> str:
    """A step's stream as a page assembles it."""
    text = ""
    for m in messages:
        if m["type"] == "stream" and m["step"] == step:
            text = m["delta"] if m["reset"] else text[: m["offset"]] + m["delta"]
    return text


def _start_worker(announce: bool) -> asyncio.Task[None]:
    worker = Worker(poll_interval=0.02, announce=announce)
    return asyncio.create_task(worker.run(exit_when_idle=True, install_signals=False))


async def _snapshot_length(run: Run) -> int:
    while True:
        row = await StreamSnapshot.objects.filter(run=run).afirst()
        if row is not None and row.length == len(SHOWN):
            return row.length
        await asyncio.sleep(0.02)


@pytest.mark.django_db(transaction=True)
async def test_it_relays_the_text_while_the_step_runs_then_ends_it_with_its_checkpoint(
    fake: FakeOpenAI, cookie: bytes
) -> None:
    release = fake.hold_after(HELD_AFTER)
    run = await sync_to_async(start_run)("joke", {"topic": "owls"})
    ws = await _connect(run, cookie)
    worker = _start_worker(announce=True)
    seen: list[dict[str, Any]] = []
    await _until(ws, lambda m: _text(seen, "generate_joke") == SHOWN, seen)
    assert not [m for m in seen if m["type"] == "checkpoint"]  # held mid-answer: no checkpoint yet
    stream = next(m for m in seen if m["type"] == "stream")
    assert stream["run_id"] == str(run.id) and stream["after_seq"] == 0 and stream["event_type"] == "StreamDelta"
    assert stream["event"]["type"] == "StreamDelta" and stream["attempt"] == 1

    release.set()
    end = await _until(ws, lambda m: m["type"] == "stream_end" and m["step"] == "generate_joke", seen)
    assert end["seq"] == 1 and end["execution"] == stream["execution"]
    assert _text(seen, "generate_joke") == JOKE
    await _until(ws, lambda m: m["type"] == "run" and m["status"] == "succeeded", seen)
    await asyncio.wait_for(worker, 30)
    await ws.disconnect()
    # The checkpoints keep the output; no stream is stored once they landed.
    assert await StreamSnapshot.objects.filter(run=run).acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_a_page_that_joins_mid_step_gets_the_text_so_far(fake: FakeOpenAI, cookie: bytes) -> None:
    release = fake.hold_after(HELD_AFTER)
    run = await sync_to_async(start_run)("joke", {"topic": "owls"})
    worker = _start_worker(announce=True)
    await asyncio.wait_for(_snapshot_length(run), 20)
    ws = await _connect(run, cookie)
    seen: list[dict[str, Any]] = []
    snapshot = await _until(ws, lambda m: m["type"] == "stream", seen)
    assert snapshot["reset"] is True and snapshot["delta"] == SHOWN and snapshot["offset"] == 0

    release.set()
    await _until(ws, lambda m: m["type"] == "stream_end" and m["step"] == "generate_joke", seen)
    assert _text(seen, "generate_joke") == JOKE
    await asyncio.wait_for(worker, 30)
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_without_a_relay_the_shared_poll_brings_the_text_from_snapshots(fake: FakeOpenAI, cookie: bytes) -> None:
    release = fake.hold_after(HELD_AFTER)
    run = await sync_to_async(start_run)("joke", {"topic": "owls"})
    ws = await _connect(run, cookie)
    worker = _start_worker(announce=False)  # as if in another process: nothing reaches the page
    seen: list[dict[str, Any]] = []
    await _until(ws, lambda m: _text(seen, "generate_joke") == SHOWN, seen)
    assert not [m for m in seen if m["type"] == "checkpoint"]
    release.set()
    await _until(ws, lambda m: m["type"] == "run" and m["status"] == "succeeded", seen)
    await asyncio.wait_for(worker, 30)
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_it_fills_a_gap_from_the_snapshot_then_sends_the_rest(cookie: bytes) -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    await Run.objects.filter(pk=run.pk).aupdate(status="running")
    ws = await _connect(run, cookie)
    await _until(ws, lambda m: m["type"] == "run", [])
    base: live.StreamMessage = {
        "type": "stream",
        "run_id": str(run.id),
        "step": "tick",
        "execution": 7,
        "attempt": 1,
        "after_seq": 0,
        "offset": 10,
        "delta": "klmno",
        "reset": False,
        "event_type": "StreamDelta",
        "event": None,
        "count": 1,
    }
    layer = get_channel_layer()
    # The page has nothing of execution 7, and the delta starts at character 10: held.
    await layer.group_send(live.run_group(run.id), {"type": "stream.delta", "message": base})
    assert await ws.receive_nothing(timeout=0.3)
    await StreamSnapshot.objects.acreate(run=run, execution=7, step="tick", text="abcdefghijkl", length=12)
    first = await ws.receive_json_from(timeout=5)
    rest = await ws.receive_json_from(timeout=5)
    assert (first["reset"], first["offset"], first["delta"]) == (True, 0, "abcdefghijkl")
    assert (rest["reset"], rest["offset"], rest["delta"]) == (False, 12, "mno")
    await ws.disconnect()


# -- what a page is sent ---------------------------------------------------------------------


def _message(offset: int, delta: str, *, reset: bool = False, attempt: int = 1) -> live.StreamMessage:
    return {
        "type": "stream",
        "run_id": "r",
        "step": "s",
        "execution": 1,
        "attempt": attempt,
        "after_seq": 0,
        "offset": offset,
        "delta": delta,
        "reset": reset,
        "event_type": "StreamDelta",
        "event": None,
        "count": 0 if reset else 1,
    }


def test_a_page_is_sent_only_what_extends_its_text() -> None:
    page = PageStreams()
    assert page.admit(_message(0, "abc")) == ({**_message(0, "abc"), "reset": True}, False)
    assert page.admit(_message(3, "de"))[0] == _message(3, "de")
    assert page.admit(_message(0, "abcd", reset=True)) == (None, False)  # an older snapshot
    sent, gap = page.admit(_message(2, "cdefg"))
    assert sent is not None and (sent["offset"], sent["delta"], gap) == (5, "fg", False)


def test_a_retry_starts_the_text_afresh() -> None:
    page = PageStreams()
    page.admit(_message(0, "first try"))
    sent, _ = page.admit(_message(0, "again", attempt=2))
    assert sent is not None and sent["reset"] and sent["delta"] == "again"


def test_what_follows_a_gap_waits_for_a_snapshot() -> None:
    page = PageStreams()
    assert page.admit(_message(4, "ef")) == (None, True)
    assert page.admit(_message(6, "gh")) == (None, True)  # held with the first, contiguous
    out, gap = page.fill(_message(0, "abcdef", reset=True))
    assert [(m["offset"], m["delta"]) for m in out] == [(0, "abcdef"), (6, "gh")] and not gap
    still, gap = PageStreams().fill(_message(0, "ab", reset=True))
    assert [m["delta"] for m in still] == ["ab"] and not gap
