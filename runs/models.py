"""Runs and their checkpoints: the durable truth the workers and pages share."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from wfdash.workflow.errors import SerializationError


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    """Inserted and waiting for a worker to claim it."""
    RUNNING = "running"
    """Claimed by a worker (or executing in a notebook) and holding a lease."""
    WAITING = "waiting"
    """Paused until a human answers its InputRequiredEvent."""
    SUCCEEDED = "succeeded"
    """Ended with a StopEvent; `result` holds its result."""
    FAILED = "failed"
    """A step failed for good, or the run could not be restored."""
    CANCELLED = "cancelled"
    """Stopped at a user's request."""


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class RunQuerySet(models.QuerySet["Run"]):
    def claimable(self, now: Any = None) -> RunQuerySet:
        """Queued runs, and running ones whose worker's lease expired (it died)."""
        now = now or timezone.now()
        return self.filter(Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, lease_expires_at__lt=now))

    def unfinished(self) -> RunQuerySet:
        return self.exclude(status__in=TERMINAL)


class Run(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    start_event = models.JSONField(null=True, blank=True, help_text="Encoded start event: {type, data}.")
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_traceback = models.TextField(blank=True)
    parent_checkpoint = models.ForeignKey(
        "Checkpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="forks"
    )
    fork_edits = models.JSONField(default=dict, blank=True, help_text="Output event / store edits applied at the fork.")
    pending_input = models.JSONField(
        null=True, blank=True, help_text="Encoded HumanResponseEvent waiting to be delivered."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set by every change, so pages without a cross-process channel layer can poll for changes.
    updated_at = models.DateTimeField(default=timezone.now)
    worker_id = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # Kept up to date with each checkpoint so the runs list needs no aggregate.
    checkpoint_count = models.PositiveIntegerField(default=0)
    llm_calls = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="run_claim_idx"),
            models.Index(fields=["-created_at", "-id"], name="run_recent_idx"),
            models.Index(fields=["workflow", "-created_at"], name="run_workflow_idx"),
            models.Index(fields=["status", "-created_at"], name="run_status_idx"),
            models.Index(fields=["updated_at"], name="run_updated_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow} {self.id} ({self.status})"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        return (self.finished_at or timezone.now()) - self.started_at

    def request_cancel(self) -> bool:
        """Cancel a queued or waiting run at once; ask the worker to stop a running one.

        Returns False when the run had already finished.
        """
        now = timezone.now()
        stopped = Run.objects.filter(pk=self.pk, status__in=[RunStatus.QUEUED, RunStatus.WAITING]).update(
            status=RunStatus.CANCELLED,
            finished_at=now,
            updated_at=now,
            cancel_requested=True,
            worker_id="",
            lease_expires_at=None,
        )
        if not stopped:
            stopped = Run.objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(
                cancel_requested=True, updated_at=now
            )
        self.refresh_from_db()
        _announce(self)
        return bool(stopped)


class Blob(models.Model):
    """A JSON value stored once, keyed by the SHA-256 of its canonical encoding."""

    hash = models.CharField(max_length=64, primary_key=True)
    data = models.TextField()
    # Lets `prune --gc-blobs` spare blobs written while it scanned.
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.hash


class Checkpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints")
    # Denormalized from the run so the explorer filters without a join.
    workflow = models.CharField(max_length=100)
    seq = models.PositiveIntegerField()
    last_completed_step = models.CharField(max_length=100)
    input_event_type = models.CharField(max_length=100)
    output_event_type = models.CharField(max_length=100, blank=True)
    input_event = models.JSONField()
    output_event = models.JSONField(null=True, blank=True)
    state = models.JSONField(
        help_text="What this checkpoint's step changed (a delta) or the whole context state (a full record); "
        "see wfdash/workflow/snapshots.py. Large store values refer to blobs by hash."
    )
    # The seq of the full record `state` builds on (its own seq for a full one): the
    # complete state is that record plus the ones after it, read in one range query.
    snapshot_seq = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.FloatField(default=0.0)
    usage = models.JSONField(null=True, blank=True, help_text="LLM calls made by the step.")

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="checkpoint_run_seq_unique")]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="ckpt_recent_idx"),
            models.Index(fields=["workflow", "-created_at"], name="ckpt_workflow_idx"),
            models.Index(fields=["last_completed_step", "-created_at"], name="ckpt_step_idx"),
            # The explorer's usual query: one workflow's checkpoints of one step.
            models.Index(fields=["workflow", "last_completed_step", "-created_at", "-id"], name="ckpt_wf_step_idx"),
            models.Index(fields=["input_event_type", "-created_at"], name="ckpt_input_idx"),
            models.Index(fields=["output_event_type", "-created_at"], name="ckpt_output_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.last_completed_step}"

    def context_state(self) -> dict[str, Any]:
        """The complete context state at this checkpoint (`ctx_state`), store values expanded."""
        from .states import context_state

        return context_state(self)


# -- creating runs: validation first, then one insert ---------------------------


def start_run(workflow_name: str, fields: dict[str, Any], user: Any = None) -> Run:
    """Queue a new run of `workflow_name` with start event `fields`."""
    from . import inputs

    workflow = inputs.workflow_named(workflow_name)
    event = inputs.start_event(workflow, fields)
    run = Run.objects.create(workflow=workflow_name, start_event=event, created_by=user if _is_user(user) else None)
    _announce(run)
    return run


def fork_run(checkpoint_id: Any, output_event: Any = None, store: Any = None, user: Any = None) -> Run:
    """Queue a new run from a checkpoint, with optional validated edits; the parent is untouched."""
    from . import inputs
    from .store import to_engine

    try:
        row = Checkpoint.objects.select_related("run").get(pk=uuid.UUID(str(checkpoint_id)))
    except (Checkpoint.DoesNotExist, ValueError):
        raise inputs.InputError(f"unknown checkpoint {checkpoint_id!r}") from None
    workflow = inputs.workflow_named(row.workflow)
    try:
        decoded = to_engine(row, workflow)  # refuses tampered rows before anything is created
    except SerializationError as exc:
        raise inputs.InputError(f"checkpoint {row.id} cannot be restored: {exc}") from None
    edits = inputs.fork_edits(workflow, decoded.output_event, output_event, store)
    run = Run.objects.create(
        workflow=row.workflow,
        start_event=row.run.start_event,
        parent_checkpoint=row,
        fork_edits=edits,
        created_by=user if _is_user(user) else None,
    )
    _announce(run)
    return run


def respond(run: Run, fields: dict[str, Any]) -> bool:
    """Deliver a human answer to a waiting run; False if it is not waiting."""
    from . import inputs

    event = inputs.human_response(inputs.workflow_named(run.workflow), fields)
    changed = Run.objects.filter(pk=run.pk, status=RunStatus.WAITING).update(
        pending_input=event, status=RunStatus.QUEUED, updated_at=timezone.now()
    )
    run.refresh_from_db()
    _announce(run)
    return bool(changed)


def _announce(run: Run) -> None:
    from .live import announce_run

    announce_run(run.id)


def _is_user(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


class ApiToken(models.Model):
    """A bearer token for the JSON API; only its SHA-256 is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False, help_text="A revoked token authenticates nobody.")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def digest(raw: str) -> str:
        import hashlib

        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, user: Any, name: str = "") -> tuple[ApiToken, str]:
        """Create a token; the raw value is returned once and never stored."""
        import secrets

        raw = f"wfd_{secrets.token_urlsafe(32)}"
        token = cls.objects.create(user=user, name=name, prefix=raw[:12], token_hash=cls.digest(raw))
        return token, raw

    @classmethod
    def authenticate(cls, raw: str) -> Any:
        """The user a raw token belongs to, or None."""
        if not raw or len(raw) > 200:
            return None
        token = cls.objects.select_related("user").filter(token_hash=cls.digest(raw), revoked=False).first()
        if token is None or not token.user.is_active:
            return None
        cls.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
        return token.user
