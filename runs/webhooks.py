"""Webhooks: checking endpoint URLs, secrets, messages, and turning run transitions into deliveries.

Nothing is lost between a run's status change and its notification: the change and a
`RunTransition` row commit together (a trigger, migration 0011), and `dispatch` turns
transitions into `WebhookDelivery` rows and deletes them in one transaction. The worker
(runs/webhook_delivery.py) sends deliveries, signed the Standard Webhooks way.

Server-side request forgery: endpoint URLs are http(s) with a host and no user info, and
every address the host resolves to must be public (no loopback, private, link-local,
multicast, reserved, site-local or unspecified address, nor an IPv6 address wrapping
one: IPv4-mapped, 6to4, Teredo, NAT64), checked when the endpoint is saved and again
before each attempt, which then connects to the very address checked.
`WFDASH_WEBHOOK_ALLOW_PRIVATE=1` lifts the address check (tests, private networks).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import random
import secrets
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import TextField
from django.db.models.functions import Cast, Substr
from django.utils import timezone

from . import registry
from .models import Run
from .webhook_models import EVENTS, RunTransition, WebhookDelivery, WebhookEndpoint

SECRET_PREFIX = "whsec_"
# How much of a run's result (as JSON) or error a message carries.
RESULT_PREVIEW_CHARS = 1000
ERROR_PREVIEW_CHARS = 500
# Transitions turned into deliveries per transaction.
DISPATCH_BATCH = 200
# Deliveries a run page lists (the newest); the admin lists them all.
DELIVERIES_SHOWN = 20
# How long saving an endpoint waits for its name to resolve.
DNS_TIMEOUT_SECONDS = 5.0


class WebhookError(ValueError):
    """A bad endpoint field; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# -- endpoints --------------------------------------------------------------------


def new_secret() -> str:
    """`whsec_` and 32 random bytes in base64, the Standard Webhooks secret format."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class Target:
    """Where a URL points: its parts, and the port to connect to."""

    scheme: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """The URL's scheme, host and port, or WebhookError("url") when it is not an http(s)
    URL with a host and without user info."""
    if not isinstance(url, str) or len(url) > 2000 or any(c.isspace() or ord(c) < 32 for c in url):
        raise WebhookError("url", "the url must be an http or https URL of at most 2000 characters, without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookError("url", f"the url is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookError("url", "the url must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebhookError("url", "the url may not contain a user name or password")
    if not parts.hostname:
        raise WebhookError("url", "the url has no host")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def allow_private() -> bool:
    """Read at each check, so a test can set or unset it in a running process."""
    if os.environ.get("WFDASH_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes", "on"):
        return True
    return getattr(settings, "WFDASH_WEBHOOK_ALLOW_PRIVATE", False) is True


# NAT64 prefixes (RFC 6052's well-known one and RFC 8215's local-use one): the last 32 bits
# are the IPv4 address the gateway connects to.
NAT64_PREFIXES = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_KINDS = ("loopback", "private", "link_local", "site_local", "multicast", "reserved", "unspecified")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address reaches through: mapped, 6to4, Teredo, NAT64."""
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in prefix for prefix in NAT64_PREFIXES):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def refused_reason(address: str) -> str | None:
    """Why a webhook may not connect to `address`, or None when it is a public address.
    An IPv6 address wrapping an IPv4 one is judged by both (6to4 2002:7f00:1:: reaches 127.0.0.1)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        candidates = [*embedded_ipv4(ip), ip]
    for candidate in candidates:
        via = "" if candidate is ip else f" (it reaches {candidate})"
        for kind in _KINDS:
            if getattr(candidate, f"is_{kind}", False):
                return f"{address} is a {kind.replace('_', '-')} address{via}"
        if not candidate.is_global:
            return f"{address} is not a public address{via}"
    return None


async def resolve(target: Target) -> str:
    """The address to connect to for `target` (resolved in a thread); see `pick_address`."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise WebhookError("url", f"cannot resolve {target.host}: {exc}") from None
    return pick_address(target, infos)


def pick_address(target: Target, infos: list[Any]) -> str:
    """The first address `getaddrinfo` gave, when every one of them is allowed (one bad
    answer refuses the whole name); else WebhookError("url")."""
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise WebhookError("url", f"{target.host} resolves to no address")
    if not allow_private():
        for address in addresses:
            why = refused_reason(address)
            if why is not None:
                raise WebhookError("url", f"{target.host} resolves to {why}; webhooks only call public addresses")
    return addresses[0]


def _getaddrinfo(host: str, port: int) -> list[Any]:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


# Names are resolved here, off the request's thread, so a resolver that never answers costs
# a request DNS_TIMEOUT_SECONDS (and at most this pool's threads), not a worker forever.
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook-dns")


def check_url(url: str) -> str:
    """`url` if an endpoint may use it (scheme, host, resolved addresses); else WebhookError.
    Resolving the name takes at most WFDASH_WEBHOOK_DNS_TIMEOUT_SECONDS (5 s by default)."""
    target = parse_url(url)
    timeout = float(getattr(settings, "WFDASH_WEBHOOK_DNS_TIMEOUT_SECONDS", DNS_TIMEOUT_SECONDS))
    future = _resolver.submit(_getaddrinfo, target.host, target.port)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise WebhookError("url", f"cannot resolve {target.host}: no DNS answer within {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise WebhookError("url", f"cannot resolve {target.host}: {exc}") from None
    pick_address(target, infos)
    return url


def check_events(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise WebhookError("events", f"events must be a non-empty list of: {', '.join(EVENTS)}")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise WebhookError("events", f"unknown event {unknown[0]!r}; the events are {', '.join(EVENTS)}")
    return [e for e in EVENTS if e in events]


def check_workflow(workflow: str | None) -> str | None:
    if workflow in (None, ""):
        return None
    if workflow not in registry.names():
        raise WebhookError("workflow", f"unknown workflow {workflow!r}")
    return workflow


def create_endpoint(
    url: str, events: Any, workflow: str | None = None, user: Any = None
) -> tuple[WebhookEndpoint, str]:
    """Validate and save an endpoint; its secret is returned once, here."""
    workflow = check_workflow(workflow)
    events = check_events(events)
    url = check_url(url)
    secret = new_secret()
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        workflow=workflow,
        events=events,
        secret=secret,
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    return endpoint, secret


def rotate_secret(endpoint: WebhookEndpoint) -> str:
    """A new secret, used for every attempt from now on (the old one signs nothing more)."""
    secret = new_secret()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret=secret)
    endpoint.secret = secret
    return secret


# -- messages ---------------------------------------------------------------------


def run_links(run_id: Any) -> tuple[str, str]:
    """The run page and the run's API URL: absolute with WFDASH_PUBLIC_URL, else relative."""
    base = str(getattr(settings, "WFDASH_PUBLIC_URL", "") or "").rstrip("/")
    return f"{base}/runs/{run_id}/", f"{base}/api/runs/{run_id}/"


def message(run: Any, status: str, at: datetime) -> dict[str, Any]:
    """The JSON body for `run` reaching `status`; `run` carries `result_head` (see `dispatch`)."""
    url, api_url = run_links(run.id)
    data: dict[str, Any] = {"run_id": str(run.id), "workflow": run.workflow, "status": status}
    if status == "succeeded":
        head = run.result_head
        data["result"] = None if head is None else head[:RESULT_PREVIEW_CHARS]
        data["result_truncated"] = head is not None and len(head) > RESULT_PREVIEW_CHARS
    elif status in ("failed", "cancelled"):
        data["error"] = (run.error or "")[:ERROR_PREVIEW_CHARS]
    data.update(url=url, api_url=api_url)
    return {"type": f"run.{status}", "timestamp": at.isoformat(), "data": data}


def message_id(endpoint_id: uuid.UUID, transition_id: int) -> str:
    """The same for the same transition and endpoint, so a repeated dispatch inserts nothing."""
    return "msg_" + uuid.uuid5(endpoint_id, str(transition_id)).hex


def dispatch(limit: int = DISPATCH_BATCH) -> int:
    """Turn up to `limit` recorded transitions into deliveries and delete them, atomically.
    Returns how many transitions were consumed."""
    # A plain read first: on SQLite the consuming transaction takes the write lock.
    if not RunTransition.objects.exists():
        return 0
    with transaction.atomic():
        pending = RunTransition.objects.order_by("id")
        if connection.vendor == "postgresql":
            pending = pending.select_for_update(skip_locked=True)
        transitions = list(pending[:limit])
        if not transitions:
            return 0
        endpoints = list(WebhookEndpoint.objects.filter(active=True))
        runs = {
            r.id: r
            for r in Run.objects.filter(id__in={t.run_id for t in transitions})
            .only("id", "workflow", "error")
            .annotate(result_head=Substr(Cast("result", TextField()), 1, RESULT_PREVIEW_CHARS + 1))
        }
        now = timezone.now()
        deliveries = []
        for t in transitions:
            run = runs.get(t.run_id)
            if run is None:
                continue
            for endpoint in endpoints:
                if endpoint.wants(run.workflow, t.status):
                    deliveries.append(
                        WebhookDelivery(
                            endpoint=endpoint,
                            run_id=t.run_id,
                            event=t.status,
                            message_id=message_id(endpoint.id, t.id),
                            payload=message(run, t.status, t.at),
                            next_attempt_at=now,
                            created_at=now,
                        )
                    )
        WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        RunTransition.objects.filter(id__in=[t.id for t in transitions]).delete()
        return len(transitions)


def recent_deliveries(run: Run) -> list[WebhookDelivery]:
    """The newest DELIVERIES_SHOWN deliveries about `run`, with their endpoints."""
    qs = WebhookDelivery.objects.filter(run=run).select_related("endpoint").defer("payload", "endpoint__secret")
    return list(qs.order_by("-created_at", "-id")[:DELIVERIES_SHOWN])


# -- the retry schedule -------------------------------------------------------------


def retry_at(delivery: WebhookDelivery, now: datetime) -> datetime | None:
    """When to try `delivery` again after its `attempts`-th attempt failed, or None to give
    up: delays from WFDASH_WEBHOOK_RETRY_DELAYS (the last one repeats), ±10 % jitter, for
    at most WFDASH_WEBHOOK_GIVE_UP_SECONDS after the delivery was created."""
    delays: list[float] = list(settings.WFDASH_WEBHOOK_RETRY_DELAYS)
    delay = delays[min(max(delivery.attempts - 1, 0), len(delays) - 1)]
    delay *= random.uniform(0.9, 1.1)
    when = now + timedelta(seconds=delay)
    if when > delivery.created_at + timedelta(seconds=settings.WFDASH_WEBHOOK_GIVE_UP_SECONDS):
        return None
    return when


def body_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
