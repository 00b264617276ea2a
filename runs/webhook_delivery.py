"""Sending webhooks from the worker: claim due deliveries under a lease, sign, send, record.

Several workers on several machines may run this: a delivery is claimed atomically
(`SKIP LOCKED` on PostgreSQL, the IMMEDIATE transaction's write lock on SQLite) and held
under a lease longer than a whole attempt may take, so no two workers send it at once; a
worker that dies mid-attempt leaves the lease to expire, and another worker takes the
delivery again. Delivery is at least once: receivers drop repeats by `webhook-id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone
from standardwebhooks import Webhook

from . import webhooks
from .store import drop_connection
from .webhook_models import WebhookDelivery

log = logging.getLogger("runs.webhooks")

Status = WebhookDelivery.Status
# Deliveries one worker sends at once, and how often it looks for due ones.
CONCURRENCY = 20
POLL_SECONDS = 0.5
# Bytes of a response read (kept as an excerpt); the rest is never downloaded.
EXCERPT_BYTES = 300
USER_AGENT = "wfdash-webhooks/1"


def claim(worker_id: str, limit: int) -> list[WebhookDelivery]:
    """Take up to `limit` due deliveries: pending ones whose time has come, and delivering
    ones whose worker's lease ran out (an inactive endpoint's wait). Each comes back with
    its endpoint."""
    now = timezone.now()
    lease_end = now + timedelta(seconds=settings.WFDASH_WEBHOOK_LEASE_SECONDS)
    due = WebhookDelivery.objects.filter(
        status__in=[Status.PENDING, Status.DELIVERING], next_attempt_at__lte=now, endpoint__active=True
    ).order_by("next_attempt_at")
    # A plain read first: on SQLite the claiming transaction takes the write lock.
    if not due.exists():
        return []
    with transaction.atomic():
        if connection.vendor == "postgresql":
            due = due.select_for_update(skip_locked=True)
        ids = list(due.values_list("id", flat=True)[:limit])
        if not ids:
            return []
        WebhookDelivery.objects.filter(id__in=ids).update(
            status=Status.DELIVERING, leased_by=worker_id, next_attempt_at=lease_end, attempts=F("attempts") + 1
        )
        return list(
            WebhookDelivery.objects.filter(id__in=ids, leased_by=worker_id, status=Status.DELIVERING).select_related(
                "endpoint"
            )
        )


def record(delivery: WebhookDelivery, worker_id: str, code: int | None, error: str, excerpt: str, now: datetime) -> str:
    """Write an attempt's outcome, unless the lease was lost meanwhile; returns the new status."""
    fields: dict[str, Any] = {
        "last_response_code": code,
        "last_error": error[:300],
        "response_excerpt": excerpt[:300],
        "leased_by": "",
    }
    if code is not None and 200 <= code < 300 and not error:
        fields.update(status=Status.SUCCEEDED, delivered_at=now)
    else:
        retry = webhooks.retry_at(delivery, now)
        if retry is None:
            fields.update(status=Status.FAILED)
        else:
            fields.update(status=Status.PENDING, next_attempt_at=retry)
    mine = WebhookDelivery.objects.filter(pk=delivery.pk, leased_by=worker_id, status=Status.DELIVERING)
    return str(fields["status"]) if mine.update(**fields) else "lease lost"


def release(ids: list[int], worker_id: str) -> None:
    """Hand unfinished attempts back at once (the worker is stopping)."""
    WebhookDelivery.objects.filter(id__in=ids, leased_by=worker_id, status=Status.DELIVERING).update(
        status=Status.PENDING, leased_by="", next_attempt_at=timezone.now(), attempts=F("attempts") - 1
    )


def signed_headers(delivery: WebhookDelivery, body: str) -> dict[str, str]:
    """The Standard Webhooks headers: id, timestamp, and `v1,<base64 HMAC-SHA256>` of
    `id.timestamp.body` with the endpoint's current secret."""
    now = datetime.now(UTC).replace(microsecond=0)
    signature = Webhook(delivery.endpoint.secret).sign(delivery.message_id, now, body)
    return {
        "webhook-id": delivery.message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


async def attempt(client: httpx.AsyncClient, delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    """One POST of `delivery`: (response code or None, error or "", response excerpt), all
    within WFDASH_WEBHOOK_TIMEOUT_SECONDS (resolving the name included)."""
    timeout = settings.WFDASH_WEBHOOK_TIMEOUT_SECONDS
    try:
        async with asyncio.timeout(timeout):
            return await _post(client, delivery)
    except TimeoutError:
        return None, f"timed out after {timeout} s", ""
    except Exception as exc:  # recorded as a failed attempt, never a stuck delivery
        log.warning("webhook %s: unexpected error %r", delivery.message_id, exc)
        return None, f"{type(exc).__name__}: {exc}", ""


async def _post(client: httpx.AsyncClient, delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    """The host is resolved and checked here, and the request goes to the address checked:
    the URL's host is replaced by it, while the `Host` header and TLS (SNI and the
    certificate's name) keep the name. So a name that resolves to another address a moment
    later (DNS rebinding) cannot redirect the request."""
    try:
        target = webhooks.parse_url(delivery.endpoint.url)
        address = await webhooks.resolve(target)
    except webhooks.WebhookError as exc:
        return None, f"refused: {exc}", ""
    url = httpx.URL(delivery.endpoint.url)
    body = webhooks.body_of(delivery.payload)
    headers = {**signed_headers(delivery, body), "host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {}
    request = client.build_request(
        "POST", url.copy_with(host=address), content=body.encode(), headers=headers, extensions=extensions
    )
    try:
        response = await client.send(request, stream=True)
        try:
            excerpt = b""
            async for chunk in response.aiter_raw():
                excerpt += chunk
                if len(excerpt) >= EXCERPT_BYTES:
                    break
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, ""
    text = excerpt[:EXCERPT_BYTES].decode("utf-8", "replace")
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return response.status_code, error, text


def client() -> httpx.AsyncClient:
    """No redirects followed, no proxies or other settings from the environment (a proxy
    would connect on its own terms), the timeout from the settings."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.WFDASH_WEBHOOK_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0),
    )


@dataclass
class Outcome:
    delivery: WebhookDelivery
    code: int | None
    error: str
    excerpt: str
    at: datetime


def record_all(outcomes: list[Outcome], worker_id: str) -> list[str]:
    """Record several attempts in one transaction (one commit, however many)."""
    with transaction.atomic():
        return [record(o.delivery, worker_id, o.code, o.error, o.excerpt, o.at) for o in outcomes]


class Sender:
    """A worker's webhook task: dispatch new transitions, claim due deliveries, send up to
    CONCURRENCY at once, and record their outcomes together; idle, it looks again every
    POLL_SECONDS, or as soon as an attempt ends."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.sending: dict[int, asyncio.Task[None]] = {}
        self.outcomes: list[Outcome] = []
        self.woken = asyncio.Event()

    async def run(self) -> None:
        async with client() as http:
            try:
                while True:
                    busy = False
                    try:
                        await self.flush()
                        busy = bool(await sync_to_async(webhooks.dispatch)())
                        free = CONCURRENCY - len(self.sending)
                        for delivery in await sync_to_async(claim)(self.worker_id, free) if free > 0 else []:
                            busy = True
                            self.sending[delivery.pk] = asyncio.get_running_loop().create_task(
                                self.send(http, delivery)
                            )
                    except Exception:
                        log.exception("webhook delivery failed; retrying")
                        await sync_to_async(drop_connection)()
                    if not busy and not self.outcomes:
                        self.woken.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self.woken.wait(), POLL_SECONDS)
            finally:
                await asyncio.shield(self.stop())

    async def send(self, http: httpx.AsyncClient, delivery: WebhookDelivery) -> None:
        try:
            code, error, excerpt = await attempt(http, delivery)
            self.outcomes.append(Outcome(delivery, code, error, excerpt, timezone.now()))
        finally:
            self.sending.pop(delivery.pk, None)
            self.woken.set()

    async def flush(self) -> None:
        """Record the attempts that ended. If that fails, their leases run out and other
        attempts follow (receivers drop repeats by webhook-id)."""
        if not self.outcomes:
            return
        done, self.outcomes = self.outcomes, []
        statuses = await sync_to_async(record_all)(done, self.worker_id)
        for o, status in zip(done, statuses, strict=True):
            d = o.delivery
            log.info(
                "webhook %s (%s of run %s) attempt %d: %s -> %s",
                d.message_id, d.event, d.run_id, d.attempts, o.error or o.code, status,
            )  # fmt: skip

    async def stop(self) -> None:
        """Record what ended; hand unfinished attempts back for any worker to make at once."""
        unfinished = list(self.sending)
        for task in list(self.sending.values()):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.flush()
        if unfinished:
            await sync_to_async(release)(unfinished, self.worker_id)


async def run_forever(worker_id: str) -> None:
    await Sender(worker_id).run()
