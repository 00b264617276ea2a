"""Webhook delivery by real workers to a real receiver on 127.0.0.1: signatures, retries
with backoff, event and workflow filters, worker restarts and kills, refusals at send time."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from runs import webhooks
from runs.executor import Worker
from runs.models import Run, RunStatus, WebhookDelivery, respond, start_run
from tests.conftest import wait_until

from .webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

ALL = ["succeeded", "failed", "cancelled", "waiting"]
# Retries after a few tens of milliseconds, so tests never wait for the real schedule.
FAST = {"WFDASH_WEBHOOK_RETRY_DELAYS": "0.05,0.1"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def fast(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.WFDASH_WEBHOOK_RETRY_DELAYS = [0.05, 0.1]
    monkeypatch.setenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", "1")


def _hook(receiver: Receiver, **fields: Any) -> Any:
    endpoint, secret = webhooks.create_endpoint(receiver.url, fields.pop("events", ALL), **fields)
    receiver.secret = secret
    return endpoint


async def _until(predicate: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll a database predicate (run in the database thread) until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await sync_to_async(predicate)()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


async def _with_worker(until: Callable[[], Any]) -> Any:
    """Run a worker in this process until `until` holds, then drain it."""
    worker = Worker(poll_interval=0.05)
    task = asyncio.create_task(worker.run(install_signals=False))
    try:
        return await _until(until)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 30)


def _deliveries(**filters: Any) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(**filters).order_by("id"))


async def test_a_run_is_notified_signed_and_retried_until_accepted(fast: None, receiver: Receiver) -> None:
    receiver.fail_first = 2
    endpoint = await sync_to_async(_hook)(receiver, workflow="chain", events=["succeeded"])
    run = await sync_to_async(start_run)("chain", {"steps": 2})
    (delivery,) = await _with_worker(lambda: _deliveries(status="succeeded"))
    assert delivery.attempts == 3 and delivery.last_response_code == 204 and delivery.delivered_at is not None
    assert delivery.endpoint_id == endpoint.id and delivery.run_id == run.id
    assert [r.answered for r in receiver.received] == [500, 500, 204]
    assert all(r.verified for r in receiver.received)  # the standardwebhooks library's verify
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert receiver.received[0].headers["webhook-id"] == delivery.message_id
    assert receiver.received[0].headers["webhook-signature"].startswith("v1,")
    assert receiver.received[0].headers["host"] == receiver.url.split("/")[2]
    body = receiver.received[-1].json
    assert body["type"] == "run.succeeded"
    assert body["data"]["run_id"] == str(run.id) and body["data"]["workflow"] == "chain"
    assert body["data"]["status"] == "succeeded" and json.loads(body["data"]["result"]) == {"ticks": 2}
    assert body["data"]["url"] == f"/runs/{run.id}/"


async def test_events_and_workflow_filters_and_waiting(fast: None, receiver: Receiver) -> None:
    await sync_to_async(_hook)(receiver, workflow="approval", events=["waiting", "succeeded"])
    other = Receiver().start()
    try:
        await sync_to_async(_hook)(other, events=["failed"])
        approval = await sync_to_async(start_run)("approval", {"subject": "tea"})
        broken = await sync_to_async(start_run)("flaky_forever", {})
        ok_chain = await sync_to_async(start_run)("chain", {"steps": 1})
        await _with_worker(lambda: len(_deliveries(status="succeeded")) == 2)
        assert [r.json["type"] for r in receiver.received] == ["run.waiting"]
        assert receiver.received[0].json["data"]["run_id"] == str(approval.id)
        assert [r.json["data"]["run_id"] for r in other.received] == [str(broken.id)]
        assert "error" in other.received[0].json["data"]
        assert await Run.objects.filter(pk=ok_chain.pk, status=RunStatus.SUCCEEDED).aexists()

        # The answer leads to success: notified too (and waiting again would be notified again).
        await sync_to_async(respond)(approval, {"response": "yes"})
        await _with_worker(lambda: len(_deliveries(status="succeeded")) == 3)
        assert [r.json["type"] for r in receiver.received] == ["run.waiting", "run.succeeded"]
        assert len(other.received) == 1
    finally:
        other.stop()


async def test_rotation_signs_with_the_new_secret_at_once(fast: None, receiver: Receiver) -> None:
    endpoint = await sync_to_async(_hook)(receiver, events=["succeeded"])
    old = receiver.secret
    receiver.secret = await sync_to_async(webhooks.rotate_secret)(endpoint)
    assert receiver.secret != old
    await sync_to_async(start_run)("chain", {"steps": 1})
    await _with_worker(lambda: _deliveries(status="succeeded"))
    assert [r.verified for r in receiver.received] == [True]


async def test_private_addresses_are_refused_at_delivery_time(
    fast: None, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sync_to_async(_hook)(receiver, events=["succeeded"])
    monkeypatch.delenv("WFDASH_WEBHOOK_ALLOW_PRIVATE")
    await sync_to_async(start_run)("chain", {"steps": 1})
    (delivery,) = await _with_worker(lambda: _deliveries(attempts__gte=2, status="pending"))
    assert delivery.last_error.startswith("refused:") and "loopback" in delivery.last_error
    assert delivery.last_response_code is None
    assert receiver.count() == 0


async def test_a_pending_delivery_survives_a_worker_stop(fast: None, receiver: Receiver) -> None:
    receiver.fail_first = 1000
    await sync_to_async(_hook)(receiver, events=["succeeded"])
    await sync_to_async(start_run)("chain", {"steps": 1})
    await _with_worker(lambda: _deliveries(attempts__gte=1, status="pending"))
    receiver.fail_first = 0
    # No worker runs now; the row waits. A new worker sends it.
    (delivery,) = await _with_worker(lambda: _deliveries(status="succeeded"))
    assert delivery.attempts >= 2 and receiver.received[-1].answered == 204


def test_worker_processes_deliver_after_a_restart_and_after_a_kill_mid_delivery(
    spawn: Callable[..., Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", "1")
    env = {
        **FAST,
        "WFDASH_WEBHOOK_ALLOW_PRIVATE": "1",
        "WFDASH_WEBHOOK_TIMEOUT_SECONDS": "2",
        "WFDASH_WEBHOOK_LEASE_SECONDS": "5",
    }
    receiver.hold_first = True
    _hook(receiver, events=["succeeded"])
    run = start_run("chain", {"steps": 1})
    first = spawn("wfworker", env=env)
    wait_until(lambda: receiver.count() == 1)  # the first attempt is in flight, unanswered
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "delivering" and delivery.leased_by and delivery.attempts == 1
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    receiver.release.set()
    second = spawn("wfworker", env=env)
    # The dead worker's lease runs out, and the second worker sends the delivery again.
    wait_until(lambda: WebhookDelivery.objects.filter(status="succeeded").exists())
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.leased_by == "" and delivery.run_id == run.id
    assert [r.verified for r in receiver.received] == [True, True]
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    second.terminate()
    second.wait(20)
