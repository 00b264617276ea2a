"""What a fork will run with: the code now against the code the checkpoint's run ran.

"Now" is the workflow class registered in this process. The web processes and the
workers are expected to run the same code (deploy them together): the preview shown by a
page is what a worker will run only if they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wfdash.workflow import Workflow
from wfdash.workflow.code_version import (
    SchemaChange,
    StepChange,
    changed_steps,
    manifest,
    pending,
    schema_changes,
)
from wfdash.workflow.errors import SerializationError

from .inputs import InputError
from .models import Activity, Checkpoint, CodeVersion


class IncompatibleCode(InputError):
    """The checkpoint's events changed incompatibly since its run: a fork may not load them."""

    def __init__(self, changes: list[SchemaChange]) -> None:
        listed = "; ".join(f"{c.event}: {c.change}" for c in changes)
        super().__init__(
            f"the workflow's code changed incompatibly since this checkpoint's run ({listed}); "
            "its events may not load, so the fork was refused"
        )
        self.changes = changes


@dataclass
class ForkPreview:
    checkpoint_id: str
    workflow: str
    code_version: str
    # The code that wrote the checkpoint (see written_by); None: not recorded (the run
    # predates code versions).
    checkpoint_code_version: str | None
    # None when unknown (no recorded version to compare with).
    changed_steps: list[StepChange] | None
    schema_changes: list[SchemaChange]
    will_run: list[str]
    # Why the checkpoint cannot be restored with the code now, if it cannot.
    load_error: str | None

    @property
    def code_changed(self) -> bool | None:
        if self.checkpoint_code_version is None:
            return None
        return self.checkpoint_code_version != self.code_version

    @property
    def errors(self) -> list[SchemaChange]:
        return [c for c in self.schema_changes if c.severity == "error"]

    @property
    def notes(self) -> list[SchemaChange]:
        return [c for c in self.schema_changes if c.severity != "error"]

    @property
    def compatible(self) -> bool:
        return not self.errors and self.load_error is None

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint_id,
            "workflow": self.workflow,
            "code_version": self.code_version,
            "checkpoint_code_version": self.checkpoint_code_version,
            "code_changed": self.code_changed,
            "changed_steps": None
            if self.changed_steps is None
            else [{"step": s.step, "status": s.status, "diff": s.diff} for s in self.changed_steps],
            "schema_changes": [c.as_dict() for c in self.schema_changes],
            "will_run": self.will_run,
            "compatible": self.compatible,
            "load_error": self.load_error,
        }


def written_by(row: Checkpoint) -> str | None:
    """The code version that wrote the checkpoint: the run's, unless a worker resumed the run
    under other code after it (then the code it replaced; see Run.objects.record_code_version)."""
    later = (
        Activity.objects.filter(run_id=row.run_id, action=Activity.Action.CODE_CHANGED, at__gt=row.created_at)
        .order_by("at")
        .values_list("detail", flat=True)
        .first()
    )
    if isinstance(later, dict) and isinstance(later.get("from"), str):
        return str(later["from"])
    return row.run.code_version_id


def recorded_manifest(digest: str | None) -> dict[str, Any] | None:
    """The manifest of a recorded code version."""
    if digest is None:
        return None
    found = CodeVersion.objects.filter(pk=digest).values_list("manifest", flat=True).first()
    return found if isinstance(found, dict) else None


def preview(row: Checkpoint, workflow: Workflow) -> ForkPreview:
    """Compare the code that wrote the checkpoint with `workflow`'s (the code a fork runs now)."""
    from .store import to_engine

    now = manifest(workflow)
    version = written_by(row)
    old = recorded_manifest(version)
    load_error: str | None = None
    try:
        state = row.context_state()
    except SerializationError as exc:
        state, load_error = {}, f"the checkpoint's state cannot be read: {exc}"
    held = pending(state)
    names = {*held.event_types, row.input_event_type, *([row.output_event_type] if row.output_event_type else [])}
    changes = schema_changes(old, now, names) if old is not None else []
    same_code = old is not None and old.get("digest") == now["digest"]
    if load_error is None and not same_code:
        # Code changed or unknown: decode the checkpoint as the fork would, to be sure.
        try:
            to_engine(row, workflow)
        except SerializationError as exc:
            load_error = f"the checkpoint cannot be restored with the current code: {exc}"
    return ForkPreview(
        checkpoint_id=str(row.id),
        workflow=row.workflow,
        code_version=str(now["digest"]),
        checkpoint_code_version=version if old is not None else None,
        changed_steps=changed_steps(old, now) if old is not None else None,
        schema_changes=changes,
        will_run=_will_run(workflow, held.steps, [*held.unsent_types, row.output_event_type]),
        load_error=load_error,
    )


def _will_run(workflow: Workflow, pending_steps: list[str], routed: list[str]) -> list[str]:
    """Steps the fork starts with, in the order a restore starts them: those with queued or
    in-flight events, then those accepting the outputs it dispatches afresh."""
    steps = dict.fromkeys(s for s in pending_steps if s in workflow.steps)
    registry = workflow.event_registry
    for name in routed:
        if name and name in registry:
            steps.update(dict.fromkeys(workflow.accepting_steps(registry.get(name))))
    return list(steps)


def refuse_incompatible(row: Checkpoint, workflow: Workflow) -> None:
    """Raise IncompatibleCode when an event type the checkpoint holds changed incompatibly
    since it was written. One indexed query when the code did not change; reads the
    checkpoint's state only when some event type changed incompatibly."""
    digest = written_by(row)
    now = manifest(workflow)
    if digest is None or digest == now["digest"]:
        return
    old = recorded_manifest(digest)
    if old is None:
        return
    breaking = [c for c in schema_changes(old, now, old.get("events", {})) if c.severity == "error"]
    if not breaking:
        return
    try:
        held = pending(row.context_state()).event_types
    except SerializationError:
        return  # decoding it reports what is wrong
    held.update((row.input_event_type, row.output_event_type))
    found = [c for c in breaking if c.event in held]
    if found:
        raise IncompatibleCode(found)
