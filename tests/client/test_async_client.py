"""`AsyncClient` against a live daphne and a real worker: the same calls as `Client`, awaited."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async

from runs.models import Run
from tests.client.proxy import free_port
from wfdash.client import (
    AsyncClient,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
    WaitTimeout,
)

TIMEOUT = 60


@pytest.mark.usefixtures("worker")
async def test_it_starts_a_run_and_waits_for_its_result(aclient: AsyncClient) -> None:
    run = await aclient.start("chain", steps=3)

    done = await aclient.wait(run.id, TIMEOUT)

    assert done.status == "succeeded" and done.result == {"ticks": 3}
    assert await aclient.get(run.id) == done


@pytest.mark.usefixtures("worker")
async def test_it_pages_through_the_explorer(aclient: AsyncClient) -> None:
    run = await aclient.wait((await aclient.start("chain", steps=60)).id, TIMEOUT)

    seqs = [c.seq async for c in aclient.checkpoints(run=str(run.id), step="tick")]

    assert seqs == list(range(61, 1, -1))
    assert [r.id async for r in aclient.runs(workflow="chain")] == [run.id]
    assert [c.seq async for c in aclient.run_checkpoints(run.id, after=58)] == [59, 60, 61]


@pytest.mark.usefixtures("worker")
async def test_it_forks_and_reads_checkpoints(aclient: AsyncClient) -> None:
    run = await aclient.wait((await aclient.start("chain", steps=3)).id, TIMEOUT)
    begin = [c async for c in aclient.checkpoints(run=str(run.id), step="begin")][0]

    fork = await aclient.fork(begin.id, output_event={"n": 3}, store={"steps": 4})
    done = await aclient.wait(fork.id, TIMEOUT)

    assert done.result == {"ticks": 4} and done.parent_checkpoint_id == begin.id
    assert (await aclient.checkpoint(begin.id)).output_event == {"type": "Tick", "data": {"n": 1}}


@pytest.mark.usefixtures("worker")
async def test_it_answers_a_waiting_run(aclient: AsyncClient) -> None:
    run = await aclient.start("approval")
    await aclient.wait(run.id, TIMEOUT, until={"waiting"})

    await aclient.respond(run.id, "no")
    done = await aclient.wait(run.id, TIMEOUT)

    assert done.result == {"approved": False, "message": None}


async def test_it_cancels_a_queued_run_and_refuses_to_cancel_it_twice(aclient: AsyncClient) -> None:
    run = await aclient.start("chain", steps=1)

    cancelled = await aclient.cancel(run.id)

    assert cancelled.status == "cancelled"
    with pytest.raises(Conflict):
        await aclient.cancel(run.id)


async def test_it_stops_waiting_after_the_timeout(aclient: AsyncClient) -> None:
    run = await aclient.start("chain", steps=1)  # no worker: it stays queued

    with pytest.raises(WaitTimeout) as caught:
        await aclient.wait(run.id, timeout=0.2)

    assert caught.value.run.status == "queued"


async def test_it_raises_the_apis_errors(aclient: AsyncClient) -> None:
    with pytest.raises(NotFound) as not_found:
        await aclient.get(uuid.uuid4())
    with pytest.raises(ValidationFailed) as invalid:
        await aclient.start("chain", steps=-1)

    assert (not_found.value.status, not_found.value.code) == (404, "not_found")
    assert (invalid.value.status, invalid.value.field) == (422, "input")
    assert not await sync_to_async(Run.objects.exists)()


async def test_it_raises_unauthenticated_for_a_bad_token(server: str) -> None:
    async with AsyncClient(server, "wfd_wrong") as client:
        with pytest.raises(Unauthenticated) as caught:
            await client.workflows()

    assert caught.value.code == "unauthenticated"


async def test_it_raises_permission_denied_for_a_viewer_who_forks(server: str, viewer_token: str) -> None:
    async with AsyncClient(server, viewer_token) as client:
        with pytest.raises(PermissionDenied) as caught:
            await client.fork(uuid.uuid4(), output_event={"n": 1})

    assert "runs.add_run" in caught.value.message


async def test_it_raises_connection_failed_when_nothing_listens(transactional_db: None) -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", "wfd_x") as client:
        with pytest.raises(ConnectionFailed):
            await client.get(uuid.uuid4())
