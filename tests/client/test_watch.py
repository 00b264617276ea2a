"""`watch()` over a real WebSocket to daphne: every checkpoint once and in order, across a cut
connection; the server's `skipped`; refusals as the API's errors."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from runs.models import Checkpoint
from tests.client.proxy import CuttableProxy
from wfdash.client import AsyncClient, Client, NotFound, PermissionDenied, Unauthenticated
from wfdash.client.models import LiveCheckpoint, LiveRun, LiveSkipped

pytestmark = pytest.mark.usefixtures("worker")
TIMEOUT = 60


def _seqs(messages: list[Any]) -> list[int]:
    return [m.seq for m in messages if isinstance(m, LiveCheckpoint)]


def test_it_follows_a_run_to_its_end(client: Client) -> None:
    run = client.start("chain", steps=5, sleep=0.05)

    messages = list(client.watch(run.id))

    assert _seqs(messages) == [1, 2, 3, 4, 5, 6]
    assert isinstance(messages[-1], LiveRun) and messages[-1].status == "succeeded"
    assert messages[-1].checkpoint_count == 6


def _waiting(message: Any) -> bool:
    return isinstance(message, LiveRun) and message.status == "waiting"


def test_it_yields_each_checkpoint_once_across_a_cut_connection(
    token: str, client: Client, proxy: CuttableProxy
) -> None:
    # `approval` stops after two checkpoints until it is answered: the cut falls at a known
    # point, and the third checkpoint is committed while the watch is disconnected.
    run = client.start("approval")
    messages: list[Any] = []

    with Client(proxy.url, token) as through_proxy:
        for message in through_proxy.watch(run.id):
            messages.append(message)
            if _waiting(message):
                proxy.cut()
                client.respond(run.id, "yes")
                client.wait(run.id, TIMEOUT)

    assert proxy.accepted == 2
    assert (
        _seqs(messages) == [1, 2, 3] == sorted(Checkpoint.objects.filter(run_id=run.id).values_list("seq", flat=True))
    )
    assert [m.status for m in messages if isinstance(m, LiveRun)][-2:] == ["waiting", "succeeded"]


async def test_the_async_watch_yields_each_checkpoint_once_across_a_cut_connection(
    token: str, aclient: AsyncClient, proxy: CuttableProxy
) -> None:
    run = await aclient.start("approval")
    messages: list[Any] = []

    async with AsyncClient(proxy.url, token) as through_proxy:
        async for message in through_proxy.watch(run.id):
            messages.append(message)
            if _waiting(message):
                proxy.cut()
                await aclient.respond(run.id, "yes")
                await aclient.wait(run.id, TIMEOUT)

    assert proxy.accepted == 2
    assert _seqs(messages) == [1, 2, 3] and (await aclient.get(run.id)).checkpoint_count == 3
    assert [m.status for m in messages if isinstance(m, LiveRun)][-2:] == ["waiting", "succeeded"]


def test_it_resumes_after_a_given_seq(client: Client) -> None:
    run = client.wait(client.start("chain", steps=4).id, TIMEOUT)

    assert _seqs(list(client.watch(run.id, after=3))) == [4, 5]


def test_it_passes_on_what_a_long_catch_up_skipped(client: Client) -> None:
    run = client.wait(client.start("chain", steps=150).id, TIMEOUT)  # 151 checkpoints

    messages = list(client.watch(run.id))

    assert messages[0] == LiveSkipped(type="skipped", after=0, through=51, count=51)
    assert _seqs(messages) == list(range(52, 152))


def test_it_raises_not_found_for_an_unknown_run(client: Client) -> None:
    with pytest.raises(NotFound):
        next(client.watch(uuid.uuid4()))


def test_it_raises_unauthenticated_for_a_bad_token(server: str, client: Client) -> None:
    run = client.start("chain", steps=1)

    with Client(server, "wfd_not-a-token") as stranger, pytest.raises(Unauthenticated):
        next(stranger.watch(run.id))


def test_it_raises_permission_denied_without_view_permission(server: str, client: Client, outsider_token: str) -> None:
    run = client.start("chain", steps=1)

    with Client(server, outsider_token) as outsider, pytest.raises(PermissionDenied) as caught:
        next(outsider.watch(run.id))

    assert "runs.view_run" in caught.value.message
