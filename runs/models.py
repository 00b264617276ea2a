"""Runs and their checkpoints: the durable truth the workers and pages share."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from wfdash.workflow.errors import SerializationError

if TYPE_CHECKING:
    from wfdash.workflow import Workflow
    from wfdash.workflow.checkpointer import Checkpoint as EngineCheckpoint


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
# How many activity records a run page or API answer shows.
ACTIVITY_SHOWN = 50


class RunQuerySet(models.QuerySet["Run"]):
    """Reads, and the transitions a worker makes by run id (see Run's state diagram)."""

    def claimable(self, now: Any = None) -> RunQuerySet:
        """Queued runs, and running ones whose worker's lease expired (it died)."""
        now = now or timezone.now()
        return self.filter(Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, lease_expires_at__lt=now))

    def unfinished(self) -> RunQuerySet:
        return self.exclude(status__in=TERMINAL)

    def owned_by(self, worker_id: str, attempt: int | None = None) -> RunQuerySet:
        """Running under `worker_id`'s lease: the guard of every transition a worker makes.
        With `attempt`, under the claim that counted it (see Run.claim_guard)."""
        owned = self.filter(worker_id=worker_id, status=RunStatus.RUNNING)
        return owned if attempt is None else owned.filter(attempts=attempt)

    def claim(self, worker_id: str, limit: int, lease_seconds: float, busy: Collection[str] = ()) -> list[Run]:
        """claim / resume after a lost lease: take up to `limit` claimable runs, atomically.

        PostgreSQL skips rows other workers are claiming; on SQLite the IMMEDIATE
        transaction took the write lock before this read, so nobody claims in between.
        `busy`: the runs the worker executes now. Its lease on one may have expired (a
        stalled loop) with nobody taking it over: it renews that lease, it does not
        start the run a second time beside itself.
        """
        now = timezone.now()
        with transaction.atomic():
            candidates = self.claimable(now).exclude(id__in=busy).order_by("created_at")
            if connection.vendor == "postgresql":
                candidates = candidates.select_for_update(skip_locked=True)
            ids = list(candidates.values_list("id", flat=True)[:limit])
            if not ids:
                return []
            self.filter(id__in=ids).update(
                status=RunStatus.RUNNING,
                worker_id=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=F("attempts") + 1,
                started_at=Coalesce(F("started_at"), now),
                updated_at=now,
            )
            return list(self.filter(id__in=ids, worker_id=worker_id))

    def renew(self, worker_id: str, run_ids: list[str], lease_seconds: float) -> set[str]:
        """renew: extend the leases `worker_id` still holds; return the ids another worker took.

        A run the worker just released (finished, waiting, drained) has no owner and is
        not lost: its handler is merely winding down.
        """
        lease = timezone.now() + timedelta(seconds=lease_seconds)
        self.filter(id__in=run_ids).owned_by(worker_id).update(lease_expires_at=lease)
        taken = self.filter(id__in=run_ids).exclude(worker_id__in=("", worker_id))
        return {str(i) for i in taken.values_list("id", flat=True)}

    def cancelling(self, worker_id: str) -> set[str]:
        """Ids of `worker_id`'s runs a user asked to cancel."""
        return {str(i) for i in self.owned_by(worker_id).filter(cancel_requested=True).values_list("id", flat=True)}

    def release(self, run_id: str, worker_id: str, attempt: int | None = None) -> bool:
        """release: running -> queued, for any worker to resume (drained, or a hiccup)."""
        return self._let_go(run_id, worker_id, RunStatus.QUEUED, attempt)

    def wait_for_input(self, run_id: str, worker_id: str, attempt: int | None = None) -> bool:
        """wait for input: running -> waiting, the lease given up until a human answers."""
        return self._let_go(run_id, worker_id, RunStatus.WAITING, attempt)

    def _let_go(self, run_id: str, worker_id: str, status: RunStatus, attempt: int | None) -> bool:
        changed = (
            self.filter(pk=run_id)
            .owned_by(worker_id, attempt)
            .update(status=status, worker_id="", lease_expires_at=None, updated_at=timezone.now())
        )
        return bool(changed)

    def fail(self, run_id: str, worker_id: str, message: str, attempt: int | None = None) -> bool:
        """fail (before any step could run): running -> failed, with why."""
        now = timezone.now()
        changed = (
            self.filter(pk=run_id)
            .owned_by(worker_id, attempt)
            .update(status=RunStatus.FAILED, error=message, finished_at=now, updated_at=now, lease_expires_at=None)
        )
        return bool(changed)

    def record_code_version(self, worker_id: str, runs: list[Run], digest: str) -> None:
        """A worker starts or resumes `runs` with the code named `digest` (a CodeVersion): the
        run keeps the newest; resuming under other code than recorded is noted as activity."""
        first = [r for r in runs if r.code_version_id is None]
        if first:  # the usual case, one statement for all: a first start
            self.filter(id__in=[r.id for r in first]).owned_by(worker_id).update(code_version_id=digest)
        for run in runs:
            if run.code_version_id not in (None, digest):  # rare: a resume under a new deploy
                with transaction.atomic():
                    if self.filter(pk=run.pk).owned_by(worker_id).update(code_version_id=digest):
                        detail = {"from": run.code_version_id, "to": digest}
                        Activity.record(run, Activity.Action.CODE_CHANGED, None, detail)
            run.code_version_id = digest

    def start_here(self, run_id: str, owner: str, **fields: Any) -> None:
        """A run executed in this process without a worker (a notebook): create it running
        under `owner`, or take it back when resuming."""
        now = timezone.now()
        if self.filter(pk=run_id).update(status=RunStatus.RUNNING, worker_id=owner, updated_at=now):
            return
        self.create(
            id=run_id,
            status=RunStatus.RUNNING,
            worker_id=owner,
            created_at=now,
            started_at=now,
            updated_at=now,
            attempts=1,
            **fields,
        )


class Run(models.Model):
    """One execution of a workflow. Its lifecycle lives here and nowhere else:

                  claim                      finish (a StopEvent)
        queued -----------> running ------------------------------> succeeded
          ^  ^              |  |  |  fail (a step failed for good)
          |  |   release    |  |  +-------------------------------> failed
          |  +--------------+  |  (drained, or a hiccup)
          |                    |  wait for input                    cancelled
          |  answer            v                                       ^
          +--------------- waiting                                     |
                                                                       |
        request_cancel: queued or waiting -> cancelled at once; running -> the worker
        stops at its next housekeeping tick and finishes the run as cancelled.
        renew: the owner extends its lease. resume after a lost lease: a running run
        whose lease expired is claimable again (its worker died, or stalled: then each
        of its late writes is refused by `owned_by(worker_id, attempt)` or Run.claim_guard).

    Every transition is one guarded method here or on the queryset (`Run.objects`):
    a worker's are guarded by `owned_by(worker_id, attempt)`, a user's by the status they
    start from. The pending human answer is cleared only by the statement that
    commits the first checkpoint after its delivery (`progress_sql`), so a worker
    killed in between loses nothing.
    """

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
    # A variant of a sweep: the experiment it belongs to and its index there (0-based).
    experiment = models.ForeignKey("Experiment", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    variant = models.PositiveSmallIntegerField(null=True, blank=True)
    # The code the run last ran with (set by the worker that starts or resumes it); None for
    # runs older than code versions and runs not started yet.
    code_version = models.ForeignKey(
        "CodeVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", db_index=False
    )

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"], name="run_claim_idx"),
            models.Index(fields=["-created_at", "-id"], name="run_recent_idx"),
            models.Index(fields=["workflow", "-created_at"], name="run_workflow_idx"),
            models.Index(fields=["status", "-created_at"], name="run_status_idx"),
            models.Index(fields=["updated_at"], name="run_updated_idx"),
            models.Index(fields=["code_version", "-created_at"], name="run_code_version_idx"),
        ]
        constraints = [
            # Also the index behind an experiment's matrix (its runs in variant order).
            models.UniqueConstraint(fields=["experiment", "variant"], name="run_experiment_variant_unique"),
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

    def request_cancel(self, user: Any = None) -> bool:
        """request_cancel: a queued or waiting run is cancelled at once; a running one's
        worker is asked to stop. False when the run had already finished."""
        now = timezone.now()
        with transaction.atomic():
            stopped = Run.objects.filter(pk=self.pk, status__in=[RunStatus.QUEUED, RunStatus.WAITING]).update(
                status=RunStatus.CANCELLED,
                finished_at=now,
                updated_at=now,
                cancel_requested=True,
                worker_id="",
                lease_expires_at=None,
                pending_input=None,
            )
            if not stopped:
                stopped = Run.objects.filter(pk=self.pk, status=RunStatus.RUNNING).update(
                    cancel_requested=True, updated_at=now
                )
            if stopped:
                Activity.record(self, Activity.Action.CANCELLED, user)
        self.refresh_from_db()
        _announce(self)
        return bool(stopped)

    def recent_activities(self) -> list[Activity]:
        """Who did what to this run, newest first (the newest ACTIVITY_SHOWN; the admin lists all)."""
        return list(self.activities.all()[:ACTIVITY_SHOWN])

    def answer(self, event: dict[str, Any], user: Any = None) -> bool:
        """answer: waiting -> queued with the (validated, encoded) human answer, which the
        next worker delivers. False when the run is not waiting."""
        with transaction.atomic():
            changed = Run.objects.filter(pk=self.pk, status=RunStatus.WAITING).update(
                pending_input=event, status=RunStatus.QUEUED, updated_at=timezone.now()
            )
            if changed:
                Activity.record(self, Activity.Action.ANSWERED, user, {"answer": event.get("data")})
        self.refresh_from_db()
        _announce(self)
        return bool(changed)

    @staticmethod
    def status_on_import(status: str) -> RunStatus:
        """An imported run keeps a final status; an unfinished one is queued, to resume from
        its latest checkpoint on whichever worker claims it."""
        return RunStatus(status) if status in TERMINAL else RunStatus.QUEUED

    # -- the statements a worker's group commit runs (many runs in one transaction) ----

    @staticmethod
    def progress_sql(quote: Any) -> str:
        """checkpointed: a checkpoint of a run this worker owns commits. Adds the step's
        counters and consumes the pending answer (it is in the checkpoint's state now).
        Parameters: updated_at, checkpoints, llm calls, prompt tokens, completion tokens,
        run id, worker id, attempt, 'running'. Matches no row when the lease was lost."""
        names = ("checkpoint_count", "llm_calls", "prompt_tokens", "completion_tokens")
        counters = ", ".join(f"{quote(c)} = {quote(c)} + %s" for c in names)
        return (
            f"UPDATE {quote(Run._meta.db_table)} SET {quote('updated_at')} = %s, {counters},"
            f" {quote('pending_input')} = NULL"
            f" WHERE {quote('id')} = %s AND {quote('worker_id')} = %s AND {Run.claim_guard(quote)}"
            f" AND {quote('status')} = %s"
        )

    @staticmethod
    def claim_guard(quote: Any) -> str:
        """The fencing token of a worker's writes besides its id: the attempt its claim
        counted (one %s; NULL for a run executed without a claim, as in a notebook). A
        worker that stalled past its lease and was replaced, even under the same worker
        id, writes nothing more."""
        return f"{quote('attempts')} = COALESCE(%s, {quote('attempts')})"

    @staticmethod
    def finish_sql(quote: Any, columns: list[str]) -> str:
        """finish / fail / cancelled: the owner's last word on a run (`columns` = %s each),
        unless a user cancelled it meanwhile. Then: run id, worker id, attempt, 'cancelled'."""
        assigned = ", ".join(f"{quote(c)} = %s" for c in columns)
        return (
            f"UPDATE {quote(Run._meta.db_table)} SET {assigned}"
            f" WHERE {quote('id')} = %s AND {quote('worker_id')} = %s AND {Run.claim_guard(quote)}"
            f" AND {quote('status')} <> %s"
        )


class CodeVersion(models.Model):
    """A workflow's code as a run ran it: its manifest (step sources, event schemas; see
    wfdash/workflow/code_version.py), stored once per distinct digest."""

    digest = models.CharField(max_length=64, primary_key=True)
    workflow = models.CharField(max_length=100)
    manifest = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.workflow} {self.digest[:12]}"


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
    # No index of its own: the (run, seq) unique index leads with it (one index fewer per write).
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="checkpoints", db_index=False)
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
    retries = models.JSONField(
        null=True,
        blank=True,
        help_text="Attempts of the step that raised before the one that succeeded: attempt, error, duration_ms.",
    )
    # In the explorer's indexes (below, partial on it). A worker's durable write on SQLite
    # leaves it false and the indexer (runs/search_index.py) sets it in batches: six index
    # pages fewer per step. Every other writer lists a row at once. Read them through
    # `Checkpoint.listed()`, which lists what is still queued first.
    listed = models.BooleanField(default=True)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="checkpoint_run_seq_unique")]
        indexes = [
            *(
                models.Index(fields=fields, name=name, condition=Q(listed=True))
                for fields, name in (
                    (["-created_at", "-id"], "ckpt_recent_idx"),
                    (["workflow", "-created_at"], "ckpt_workflow_idx"),
                    (["last_completed_step", "-created_at"], "ckpt_step_idx"),
                    # The explorer's usual query: one workflow's checkpoints of one step.
                    (["workflow", "last_completed_step", "-created_at", "-id"], "ckpt_wf_step_idx"),
                    (["input_event_type", "-created_at"], "ckpt_input_idx"),
                    (["output_event_type", "-created_at"], "ckpt_output_idx"),
                )
            ),
            # What is left to list: a few rows, so one small page per write.
            models.Index(fields=["id"], name="ckpt_unlisted_idx", condition=Q(listed=False)),
            # A run page's step filter and per-step counts, whatever the run's length.
            models.Index(fields=["run", "last_completed_step", "seq"], name="ckpt_run_step_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} #{self.seq} {self.last_completed_step}"

    def context_state(self) -> dict[str, Any]:
        """The complete context state at this checkpoint (`ctx_state`), store values expanded."""
        from .states import context_state

        return context_state(self)

    @classmethod
    def listing(cls, qs: models.QuerySet[Checkpoint] | None = None) -> models.QuerySet[Checkpoint]:
        """Checkpoints (of `qs`, default all) through the explorer's indexes (by workflow, step,
        event type, newest first), everything committed before this call in them: what a
        durable write left unlisted is listed first."""
        from django.db import connections

        from . import search_index

        qs = cls.objects.all() if qs is None else qs
        search_index.list_pending(connections[qs.db])
        return qs.filter(listed=True)


# -- creating runs: validation first, then one insert ---------------------------


def start_run(workflow_name: str, fields: dict[str, Any], user: Any = None) -> Run:
    """Queue a new run of `workflow_name` with start event `fields`."""
    from . import inputs

    workflow = inputs.workflow_named(workflow_name)
    event = inputs.start_event(workflow, fields)
    with transaction.atomic():
        run = Run.objects.create(workflow=workflow_name, start_event=event, created_by=user if _is_user(user) else None)
        Activity.record(run, Activity.Action.STARTED, user)
    _announce(run)
    return run


def fork_point(checkpoint_id: Any) -> tuple[Checkpoint, Workflow, EngineCheckpoint]:
    """The checkpoint row to fork, its workflow and its decoded state (what edits are validated
    against); refuses unknown ids, tampered rows and code whose events changed so the checkpoint
    may not load (fork_preview.IncompatibleCode) before anything is created."""
    from . import fork_preview, inputs
    from .store import to_engine

    try:
        row = Checkpoint.objects.select_related("run").get(pk=uuid.UUID(str(checkpoint_id)))
    except (Checkpoint.DoesNotExist, ValueError):
        raise inputs.UnknownCheckpoint(f"unknown checkpoint {checkpoint_id!r}") from None
    workflow = inputs.workflow_named(row.workflow)
    # Before decoding: an event type that changed incompatibly would fail it less helpfully.
    fork_preview.refuse_incompatible(row, workflow)
    try:
        decoded = to_engine(row, workflow)
    except SerializationError as exc:
        raise inputs.CorruptCheckpoint(f"checkpoint {row.id} cannot be restored: {exc}") from None
    return row, workflow, decoded


def fork_run(checkpoint_id: Any, output_event: Any = None, store: Any = None, user: Any = None) -> Run:
    """Queue a new run from a checkpoint, with optional validated edits; the parent is untouched."""
    from . import inputs

    row, workflow, decoded = fork_point(checkpoint_id)
    edits = inputs.fork_edits(workflow, decoded, output_event, store)
    return fork_runs(row, [edits], user)[0]


def fork_runs(row: Checkpoint, edits_list: list[dict[str, Any]], user: Any = None, experiment: Any = None) -> list[Run]:
    """Queue one run per validated edits (`inputs.fork_edits`) from checkpoint `row`, with their
    FORKED activity, in one transaction and (as a sweep's many) a few queries; an experiment's
    runs are its variants in order, and the base run records the sweep. Announced on commit."""
    from .live import announce_runs

    who = user if _is_user(user) else None
    username = who.get_username() if who else ""
    origin: dict[str, Any] = {"checkpoint": str(row.id), "seq": row.seq}
    if experiment is not None:
        origin["experiment"] = str(experiment.id)
    with transaction.atomic():
        runs = Run.objects.bulk_create(
            Run(
                workflow=row.workflow,
                start_event=row.run.start_event,
                parent_checkpoint=row,
                fork_edits=edits,
                created_by=who,
                experiment=experiment,
                variant=index if experiment is not None else None,
            )
            for index, edits in enumerate(edits_list)
        )
        activities = [
            Activity(
                run=run,
                action=Activity.Action.FORKED,
                user=who,
                username=username,
                detail={**origin, **({"variant": run.variant} if experiment else {}), **(run.fork_edits or {})},
            )
            for run in runs
        ]
        if experiment is not None:
            detail = {**origin, "variants": len(runs)}
            activities.append(
                Activity(run=row.run, action=Activity.Action.SWEPT, user=who, username=username, detail=detail)
            )
        Activity.objects.bulk_create(activities)
    announce_runs([run.id for run in runs])
    return runs


def respond(run: Run, fields: dict[str, Any], user: Any = None) -> bool:
    """Deliver a human answer to a waiting run; False if it is not waiting."""
    from . import inputs

    event = inputs.human_response(inputs.workflow_named(run.workflow), fields)
    return run.answer(event, user)


def _announce(run: Run) -> None:
    from .live import announce_run

    announce_run(run.id)


def _is_user(user: Any) -> bool:
    return user is not None and getattr(user, "is_authenticated", False)


class Activity(models.Model):
    """Who did what to a run, and when: started, forked, cancelled, answered, swept (and when its
    code changed between a worker and the next)."""

    class Action(models.TextChoices):
        STARTED = "started"
        FORKED = "forked"
        CANCELLED = "cancelled"
        ANSWERED = "answered"
        SWEPT = "swept"
        """Forked a checkpoint of this run into an experiment's variants."""
        CODE_CHANGED = "code_changed"
        """A worker resumed the run with other code than it had run with."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="activities")
    action = models.CharField(max_length=16, choices=Action.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="run_activities"
    )
    # Kept when the user is deleted, so the record still says who it was.
    username = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField(default=timezone.now)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "activities"
        indexes = [models.Index(fields=["run", "-at"], name="activity_run_idx")]

    def __str__(self) -> str:
        return f"{self.username or 'someone'} {self.action} {self.run_id}"

    @classmethod
    def record(cls, run: Run, action: str, user: Any = None, detail: dict[str, Any] | None = None) -> Activity:
        who = user if _is_user(user) else None
        return cls.objects.create(
            run=run, action=action, user=who, username=who.get_username() if who else "", detail=detail or {}
        )


class Experiment(models.Model):
    """A sweep: variants of one checkpoint forked in one action, each a run with its own edits
    (`Run.experiment`, `Run.variant`), compared with the base run (the checkpoint's run).

    Created only by `runs.experiments.create_sweep`, which validates every variant first."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200, blank=True)
    # Cascades: retention deletes a base run only once no fork of it (no variant) is left.
    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.CASCADE, related_name="experiments")
    base_run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="experiments")
    variants = models.JSONField(
        default=list,
        help_text="Each variant's edits as given (a grid's expanded), in variant order; "
        "the runs' fork_edits hold them validated and encoded.",
    )
    grid = models.JSONField(null=True, blank=True, help_text="The grid the variants were expanded from, if any.")
    # K, fixed at creation: lists show it without counting the runs.
    variant_count = models.PositiveIntegerField(default=0, help_text="How many variants (runs) the sweep made.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="experiments"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["base_run", "-created_at"], name="experiment_base_idx")]

    def __str__(self) -> str:
        return f"{self.name or 'experiment'} {self.id} ({len(self.variants)} variants)"


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


class StreamSnapshot(models.Model):
    """What a running step has streamed so far, for a page that opens mid-step.

    Written by the worker at most every few hundred milliseconds (never per token), and
    deleted in the transaction that commits the step's checkpoint, which holds the output.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="stream_snapshots")
    # The step execution's in-flight id: unique within the run, one per concurrent worker.
    execution = models.PositiveIntegerField()
    step = models.CharField(max_length=100)
    attempt = models.PositiveIntegerField(default=1)
    # The text's tail (at most STREAM_TEXT_LIMIT characters) and how long all of it is.
    text = models.TextField(blank=True)
    length = models.PositiveIntegerField(default=0)
    event_type = models.CharField(max_length=100, blank=True)
    event = models.JSONField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "execution"], name="stream_snapshot_run_execution")]

    def __str__(self) -> str:
        return f"{self.run_id} {self.step} ({self.length} characters)"


# Webhooks live in their own module; imported here so Django registers their models.
from .webhook_models import RunTransition, WebhookDelivery, WebhookEndpoint  # noqa: E402, F401
