"""The webhook endpoints' API: `/api/webhooks/`, imported and registered by runs/api.py
(same auth, same error bodies).

A secret is in the answer to a create or a rotate, and nowhere else. An endpoint's full
URL is shown to whoever may change webhooks (and echoed to its creator); others get
`scheme://host/…` (runs/access.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import Field, Query, Router, Schema, Status

from . import access, webhooks
from .api import ERRORS, error
from .webhook_models import WebhookDelivery, WebhookEndpoint

router = Router(tags=["webhooks"])

# Deliveries an endpoint's detail shows (the newest); the admin lists them all.
RECENT_DELIVERIES = 20
PAGE_SIZE = 100


class WebhookIn(Schema):
    url: str = Field(min_length=1, max_length=2000)
    workflow: str | None = Field(default=None, max_length=100, description="a workflow's name; omitted: every one")
    events: list[str] = Field(min_length=1, max_length=4, description="succeeded, failed, cancelled, waiting")


class WebhookOut(Schema):
    id: uuid.UUID
    url: str = Field(description="the full URL with the change permission; else scheme://host/…")
    workflow: str | None
    events: list[str]
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: shown this once; verify signatures with it")


class SecretOut(Schema):
    id: uuid.UUID
    secret: str = Field(description="the new secret, shown this once; the old one signs nothing more")


class DeliveryOut(Schema):
    id: int
    run_id: uuid.UUID
    event: str
    message_id: str
    status: str
    attempts: int
    last_response_code: int | None
    last_error: str
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class WebhookDetail(WebhookOut):
    deliveries: list[DeliveryOut] = Field(description=f"the newest {RECENT_DELIVERIES}")


class WebhookPage(Schema):
    items: list[WebhookOut]
    next_cursor: str | None = Field(description="pass as `after` for the next page")


def _endpoint(webhook_id: uuid.UUID) -> WebhookEndpoint:
    try:
        return WebhookEndpoint.objects.get(pk=webhook_id)
    except WebhookEndpoint.DoesNotExist:
        raise Http404(f"no webhook {webhook_id}") from None


def _invalid(request: HttpRequest, exc: webhooks.WebhookError) -> HttpResponse:
    return error(request, 422, "invalid", str(exc), exc.field)


@router.post("/", response={201: WebhookCreated, **ERRORS})
def create_webhook(request: HttpRequest, payload: WebhookIn) -> Any:
    access.check(request.user, access.WEBHOOK_ADD)
    try:
        endpoint, secret = webhooks.create_endpoint(payload.url, payload.events, payload.workflow, request.user)
    except webhooks.WebhookError as exc:
        return _invalid(request, exc)
    return Status(201, {**_out(endpoint, full_url=True), "secret": secret})


@router.get("/", response={200: WebhookPage, **ERRORS})
def list_webhooks(request: HttpRequest, after: str | None = Query(None, max_length=60)) -> Any:
    access.check(request.user, access.WEBHOOK_VIEW)
    qs = WebhookEndpoint.objects.order_by("id")
    if after:
        try:
            qs = qs.filter(id__gt=uuid.UUID(after))
        except ValueError:
            return error(request, 400, "bad_filter", "after must be a webhook id from next_cursor", "after")
    rows = list(qs[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    full_url = access.allows(request.user, access.WEBHOOK_CHANGE)
    return {"items": [_out(e, full_url) for e in rows], "next_cursor": str(rows[-1].id) if more else None}


@router.get("/{webhook_id}/", response={200: WebhookDetail, **ERRORS})
def get_webhook(request: HttpRequest, webhook_id: uuid.UUID) -> Any:
    access.check(request.user, access.WEBHOOK_VIEW)
    endpoint = _endpoint(webhook_id)
    recent = WebhookDelivery.objects.filter(endpoint=endpoint).defer("payload")[:RECENT_DELIVERIES]
    full_url = access.allows(request.user, access.WEBHOOK_CHANGE)
    return {**_out(endpoint, full_url), "deliveries": [d.summary() for d in recent]}


@router.delete("/{webhook_id}/", response={204: None, **ERRORS})
def delete_webhook(request: HttpRequest, webhook_id: uuid.UUID) -> Any:
    access.check(request.user, access.WEBHOOK_DELETE)
    _endpoint(webhook_id).delete()
    return Status(204, None)


@router.post("/{webhook_id}/rotate/", response={200: SecretOut, **ERRORS})
def rotate_webhook_secret(request: HttpRequest, webhook_id: uuid.UUID) -> Any:
    access.check(request.user, access.WEBHOOK_CHANGE)
    endpoint = _endpoint(webhook_id)
    return {"id": endpoint.id, "secret": webhooks.rotate_secret(endpoint)}


def _out(endpoint: WebhookEndpoint, full_url: bool) -> dict[str, Any]:
    """An endpoint as the API shows it: every field but the secret, the URL redacted unless `full_url`."""
    out = {f: getattr(endpoint, f) for f in WebhookOut.model_fields}
    if not full_url:
        out["url"] = endpoint.redacted_url
    return out
