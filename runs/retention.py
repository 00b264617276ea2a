"""Retention: delete old finished runs in batches, never one a remaining fork still needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from .models import TERMINAL, Blob, Checkpoint, Run, RunStatus


def prunable(cutoff: datetime, keep_failed: bool) -> QuerySet[Run]:
    """Finished runs older than `cutoff` that no other run was forked from."""
    statuses = set(TERMINAL) - ({RunStatus.FAILED} if keep_failed else set())
    has_fork = Run.objects.filter(parent_checkpoint__run=OuterRef("pk"))
    return (
        Run.objects.filter(status__in=statuses, created_at__lt=cutoff)
        .exclude(finished_at__gte=cutoff)
        .annotate(has_fork=Exists(has_fork))
        .filter(has_fork=False)
    )


def prune(cutoff: datetime, *, keep_failed: bool = False, batch_size: int = 500, dry_run: bool = False) -> int:
    """Delete prunable runs (and their checkpoints), leaves first, so fork chains peel from the end."""
    deleted = 0
    while True:
        ids = list(prunable(cutoff, keep_failed).order_by("created_at").values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        if dry_run:
            return deleted + prunable(cutoff, keep_failed).count()
        with transaction.atomic():
            Checkpoint.objects.filter(run_id__in=ids).delete()
            Run.objects.filter(id__in=ids).delete()
        deleted += len(ids)


def _referenced_hashes(chunk: int = 2000) -> Iterator[str]:
    last = None
    while True:
        qs = Checkpoint.objects.order_by("id").values_list("id", "state")
        if last is not None:
            qs = qs.filter(id__gt=last)
        rows = list(qs[:chunk])
        if not rows:
            return
        for _, state in rows:
            store = state.get("store", {}) if isinstance(state, dict) else {}
            for entry in store.values():
                if isinstance(entry, dict) and "b" in entry:
                    yield str(entry["b"])
        last = rows[-1][0]


def collect_blobs() -> int:
    """Delete blobs no checkpoint refers to (those created during the scan are kept)."""
    started = timezone.now()
    referenced = set(_referenced_hashes())
    orphans = [
        h for h in Blob.objects.filter(created_at__lt=started).values_list("hash", flat=True) if h not in referenced
    ]
    for i in range(0, len(orphans), 1000):
        Blob.objects.filter(hash__in=orphans[i : i + 1000]).delete()
    return len(orphans)


def dumps(value: object) -> str:
    return json.dumps(value, default=str)
