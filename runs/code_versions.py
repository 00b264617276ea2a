"""Recording the code a run runs with: one CodeVersion row per distinct manifest digest."""

from __future__ import annotations

import logging

from wfdash.workflow import Workflow
from wfdash.workflow.code_version import manifest

from . import registry
from .models import CodeVersion, Run

log = logging.getLogger("runs.code_versions")


def ensure(name: str, workflow: Workflow | type[Workflow]) -> str:
    """The digest of `workflow`'s code, its CodeVersion row written if new (by whichever
    process gets there first: concurrent writers of one digest write the same row)."""
    found = manifest(workflow)
    digest = str(found["digest"])
    if not CodeVersion.objects.filter(pk=digest).exists():
        CodeVersion.objects.bulk_create(
            [CodeVersion(digest=digest, workflow=name, manifest=found)], ignore_conflicts=True
        )
    return digest


def record_started(worker_id: str, runs: list[Run]) -> None:
    """A worker claimed `runs` and is about to start or resume them with the code loaded in
    this process. A query or two per workflow per claim, not per run."""
    by_workflow: dict[str, list[Run]] = {}
    for run in runs:
        by_workflow.setdefault(run.workflow, []).append(run)
    for name, group in by_workflow.items():
        try:
            digest = ensure(name, registry.workflow_class(name))
            Run.objects.record_code_version(worker_id, group, digest)
        except Exception:
            # Informational: the claimed runs must start even if this cannot be written.
            log.exception("cannot record the code version of %d %s runs", len(group), name)
