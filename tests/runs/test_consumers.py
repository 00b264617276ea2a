"""WebSocket consumers on the real ASGI application: refusal, catch-up, exactly once across reconnects."""

from __future__ import annotations

import asyncio
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
from runs.models import Checkpoint, Run, start_run
from wfdash.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")


def _session_cookie() -> bytes:
    """A viewer's session (runs.view_run); test_access.py covers users without it."""
    user = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
async def cookie() -> bytes:
    return await sync_to_async(_session_cookie)()


def _ws(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=list(headers))


async def _run_chain(steps: int, **extra: Any) -> Run:
    run = await sync_to_async(start_run)("chain", {"steps": steps, **extra})
    await asyncio.wait_for(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False), 30)
    return run


async def _receive_checkpoints(ws: WebsocketCommunicator, until_seq: int) -> list[int]:
    seqs: list[int] = []
    while not seqs or seqs[-1] < until_seq:
        msg = await ws.receive_json_from(timeout=5)
        if msg["type"] == "checkpoint":
            seqs.append(msg["seq"])
    return seqs


async def test_it_refuses_anonymous_users(cookie: bytes) -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    for path in ("/ws/runs/", f"/ws/runs/{run.id}/"):
        ws = _ws(path, ORIGIN)
        connected, code = await ws.connect()
        assert not connected and code == 4401
        await ws.disconnect()


async def test_it_refuses_foreign_origins_and_missing_origins(cookie: bytes) -> None:
    for headers in ([(b"origin", b"http://evil.example"), (b"cookie", cookie)], [(b"cookie", cookie)]):
        ws = _ws("/ws/runs/", *headers)
        connected, _ = await ws.connect()
        assert not connected
        await ws.disconnect()


async def test_it_refuses_unknown_runs_and_bad_cursors(cookie: bytes) -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    for path, code in [
        ("/ws/runs/00000000-0000-0000-0000-000000000000/", 4404),
        ("/ws/runs/not-a-uuid/", 4400),
        (f"/ws/runs/{run.id}/?after=-1", 4400),
        (f"/ws/runs/{run.id}/?after=abc", 4400),
    ]:
        ws = _ws(path, ORIGIN, (b"cookie", cookie))
        connected, got = await ws.connect()
        assert not connected and got == code, path
        await ws.disconnect()


async def test_it_catches_up_after_the_cursor_in_order(cookie: bytes) -> None:
    run = await _run_chain(6)  # seq 1..7
    ws = _ws(f"/ws/runs/{run.id}/?after=3", ORIGIN, (b"cookie", cookie))
    connected, _ = await ws.connect()
    assert connected
    messages = [await ws.receive_json_from(timeout=5) for _ in range(5)]
    assert [m["seq"] for m in messages[:4]] == [4, 5, 6, 7]
    assert all(m["type"] == "checkpoint" and m["run_id"] == str(run.id) for m in messages[:4])
    assert 'id="ckpt-4"' in messages[0]["html"] and messages[0]["last_completed_step"] == "tick"
    assert messages[4]["type"] == "run" and messages[4]["status"] == "succeeded"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_it_relays_live_checkpoints_and_drops_duplicates(cookie: bytes) -> None:
    run = await _run_chain(2)  # seq 1..3 in the database
    ws = _ws(f"/ws/runs/{run.id}/?after=3", ORIGIN, (b"cookie", cookie))
    assert (await ws.connect())[0]
    assert (await ws.receive_json_from(timeout=5))["type"] == "run"
    layer = get_channel_layer()
    row = await Checkpoint.objects.aget(run=run, seq=3)
    old = live.checkpoint_message(row)
    await layer.group_send(live.run_group(run.id), {"type": "checkpoint.created", "message": old})
    assert await ws.receive_nothing(timeout=0.3)  # seq 3 was already sent: dropped
    # A message from the future (seq 5) while seq 4 exists only in the DB: the gap is filled first.
    base = {k: v for k, v in old.items()}
    for seq in (4, 5):
        await Checkpoint.objects.acreate(
            run=run,
            workflow="chain",
            seq=seq,
            last_completed_step="tick",
            input_event_type="Tick",
            output_event_type="Tick",
            input_event={"type": "Tick", "data": {"n": seq}},
            output_event={"type": "Tick", "data": {"n": seq}},
            state={"version": 1, "store": {}},
            snapshot_seq=seq,
        )
    await layer.group_send(live.run_group(run.id), {"type": "checkpoint.created", "message": {**base, "seq": 5}})
    got = [await ws.receive_json_from(timeout=5) for _ in range(2)]
    assert [m["seq"] for m in got] == [4, 5]
    await layer.group_send(live.run_group(run.id), {"type": "checkpoint.created", "message": {**base, "seq": 5}})
    assert await ws.receive_nothing(timeout=0.6)  # the poll finds nothing new either
    await ws.disconnect()


async def test_it_delivers_every_checkpoint_exactly_once_across_a_reconnect(cookie: bytes) -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 30, "sleep": 0.03})
    worker_task = asyncio.create_task(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False))
    received: list[int] = []
    ws = _ws(f"/ws/runs/{run.id}/?after=0", ORIGIN, (b"cookie", cookie))
    assert (await ws.connect())[0]
    while len(received) < 8:
        msg = await ws.receive_json_from(timeout=5)
        if msg["type"] == "checkpoint":
            received.append(msg["seq"])
    await ws.disconnect()
    await asyncio.sleep(0.2)  # checkpoints keep coming while the client is away
    ws = _ws(f"/ws/runs/{run.id}/?after={received[-1]}", ORIGIN, (b"cookie", cookie))
    assert (await ws.connect())[0]
    received += await _receive_checkpoints(ws, 31)
    await ws.disconnect()
    await asyncio.wait_for(worker_task, 30)
    assert received == list(range(1, 32))


async def test_it_streams_new_runs_and_status_changes_to_the_list(cookie: bytes) -> None:
    ws = _ws("/ws/runs/", ORIGIN, (b"cookie", cookie))
    assert (await ws.connect())[0]
    await asyncio.sleep(0.1)
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    first = await ws.receive_json_from(timeout=5)
    assert first["type"] == "run" and first["run_id"] == str(run.id) and first["status"] == "queued"
    assert f'id="run-{run.id}"' in first["html"]
    await asyncio.wait_for(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False), 30)
    statuses = []
    while "succeeded" not in statuses:
        msg = await ws.receive_json_from(timeout=5)
        assert msg["run_id"] == str(run.id)
        statuses.append(msg["status"])
    await ws.disconnect()


async def test_pages_of_one_run_share_one_database_poll_and_each_get_every_checkpoint(cookie: bytes) -> None:
    from runs.consumers import _shared_polls

    run = await sync_to_async(start_run)("chain", {"steps": 20, "sleep": 0.02})
    group = live.run_group(run.id)
    pages = [_ws(f"/ws/runs/{run.id}/?after=0", ORIGIN, (b"cookie", cookie)) for _ in range(3)]
    for ws in pages:
        assert (await ws.connect())[0]
    for _ in range(100):  # each page joins the poll right after its catch-up
        if len(_shared_polls.pages.get(group, ())) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(_shared_polls.pages[group]) == 3 and group in _shared_polls.tasks  # one polling task
    # The worker runs in this process but the in-memory layer is not cross-process, so it
    # does not announce: everything the pages get after their catch-up comes from the poll.
    worker = asyncio.create_task(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False))
    received = [await _receive_checkpoints(ws, 21) for ws in pages]
    await asyncio.wait_for(worker, 30)
    assert received == [list(range(1, 22))] * 3
    for ws in pages:
        await ws.disconnect()
    assert group not in _shared_polls.tasks and group not in _shared_polls.pages


def _bulk_checkpoints(run: Run, n: int) -> None:
    Checkpoint.objects.bulk_create(
        Checkpoint(
            run=run,
            workflow="chain",
            seq=seq,
            snapshot_seq=seq,
            last_completed_step="tick",
            input_event_type="Tick",
            output_event_type="Tick",
            input_event={"type": "Tick", "data": {"n": seq}},
            output_event={"type": "Tick", "data": {"n": seq + 1}},
            state={"version": 1, "store": {}},
        )
        for seq in range(1, n + 1)
    )
    Run.objects.filter(pk=run.pk).update(checkpoint_count=n, status="succeeded")


async def test_it_bounds_a_catch_up_to_the_newest_window_and_says_what_it_skipped(cookie: bytes) -> None:
    from runs.consumers import CATCH_UP_LIMIT

    run = await sync_to_async(start_run)("chain", {"steps": 1})
    await sync_to_async(_bulk_checkpoints)(run, 250)
    ws = _ws(f"/ws/runs/{run.id}/?after=20", ORIGIN, (b"cookie", cookie))
    assert (await ws.connect())[0]
    skipped = await ws.receive_json_from(timeout=5)
    assert skipped == {"type": "skipped", "after": 20, "through": 150, "count": 130}
    seqs = await _receive_checkpoints(ws, 250)
    assert CATCH_UP_LIMIT == 100 and seqs == list(range(151, 251))
    assert (await ws.receive_json_from(timeout=5))["type"] == "run"
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


async def test_it_skips_nothing_for_a_client_within_the_window(cookie: bytes) -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    await sync_to_async(_bulk_checkpoints)(run, 250)
    ws = _ws(f"/ws/runs/{run.id}/?after=150", ORIGIN, (b"cookie", cookie))
    assert (await ws.connect())[0]
    first = await ws.receive_json_from(timeout=5)
    assert first["type"] == "checkpoint" and first["seq"] == 151
    assert await _receive_checkpoints(ws, 250) == list(range(152, 251))
    await ws.disconnect()
