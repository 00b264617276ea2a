"""Webhooks: endpoints notified when runs finish or wait, and the log of every delivery.

A run's status change that notifies is recorded by a database trigger on the runs table
(migration 0011) as a `RunTransition` row, in the same transaction as the change, however
the change is made (the store's group commit, a cancel, the admin). The worker turns those
rows into `WebhookDelivery` rows, one per matching endpoint, and delivers them.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.utils import timezone

# The run statuses a webhook can subscribe to; the trigger records exactly these.
EVENTS = ("succeeded", "failed", "cancelled", "waiting")


def redact_url(url: str) -> str:
    """`scheme://host[:port]/…`: a URL without its path and query, where credentials often
    are (Slack's /services/T/B/XXXX, ?token=); shown to whoever may not change webhooks."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…"


class WebhookEndpoint(models.Model):
    """A URL notified of some events of one workflow's runs (or of every workflow's)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.URLField(max_length=2000)
    workflow = models.CharField(max_length=100, null=True, blank=True, help_text="Empty: every workflow.")
    events = models.JSONField(default=list, help_text=f"Some of: {', '.join(EVENTS)}.")
    # Needed to sign every delivery, so it is stored; it is shown once, when created or rotated.
    secret = models.CharField(max_length=100, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhooks"
    )
    created_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(
        default=True, help_text="An inactive endpoint is sent nothing; its unsent deliveries wait."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        # Admin links, logs and delete pages show this: never the full URL.
        return self.redacted_url

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def wants(self, workflow: str, event: str) -> bool:
        return self.active and event in self.events and self.workflow in (None, "", workflow)


class RunTransition(models.Model):
    """A run reached a status webhooks may want; written by the trigger, consumed by the worker."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=16)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.run_id} {self.status}"


class WebhookDelivery(models.Model):
    """One message to one endpoint, and how sending it went.

    pending -> delivering (leased by a worker; `next_attempt_at` is then the lease's end,
    after which another worker may take it) -> succeeded, or back to pending with the
    next retry's time, or failed once retries run past the give-up window.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERING = "delivering"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=16)
    # The `webhook-id` header: the same on every attempt, so receivers can drop duplicates.
    message_id = models.CharField(max_length=64, unique=True)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    leased_by = models.CharField(max_length=200, blank=True)
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["run", "-created_at"], name="delivery_run_idx"),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.run_id} -> {self.endpoint_id} ({self.status})"

    def retry_now(self) -> bool:
        """Another attempt as soon as a worker sees it (not while one is sending it)."""
        changed = WebhookDelivery.objects.filter(pk=self.pk).exclude(status=self.Status.DELIVERING)
        return bool(changed.update(status=self.Status.PENDING, next_attempt_at=timezone.now(), leased_by=""))

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint.url).hostname or ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "event": self.event,
            "message_id": self.message_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_response_code": self.last_response_code,
            "last_error": self.last_error,
            "next_attempt_at": self.next_attempt_at if self.status in ("pending", "delivering") else None,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
        }
