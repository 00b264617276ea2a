"""The fork-after-fix loop with real code changes: a workflow module written to a temporary
directory, run by a worker process, rewritten, and reloaded (by this process, which serves
the API, and by a new worker process, as a deploy would)."""

from __future__ import annotations

import importlib
import linecache
import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs import registry
from runs.models import Activity, Checkpoint, Run, RunStatus, respond, start_run
from tests.conftest import ROOT, wait_until
from wfdash.workflow.code_version import digest

pytestmark = pytest.mark.django_db(transaction=True)

MODULE = '''
"""A workflow whose `process` step has a bug in its first version."""
from wfdash.workflow import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent, Workflow, step


class Prepared(Event):
{prepared}


class FixFlow(Workflow):
    @step
    async def prepare(self, ev: StartEvent) -> Prepared:
        return {make}

    @step
    async def process(self, ev: Prepared) -> StopEvent:
{process}


class AskFlow(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent:
        return InputRequiredEvent(prefix="go?")

    @step
    async def decide(self, ev: HumanResponseEvent) -> StopEvent:
{decide}
'''

V1 = {
    "prepared": "n: int",
    "make": "Prepared(n=2)",
    "process": 'raise ValueError("bug: wrong formula")',
    "decide": 'return StopEvent(result="v1 " + ev.response)',
}
FIXED = {
    **V1,
    "process": "return StopEvent(result=ev.n * 10)",
    "decide": 'return StopEvent(result="v2 " + ev.response)',
}
# Prepared's field renamed: a stored Prepared(n=2) would not load.
RENAMED = {
    **FIXED,
    "prepared": "count: int",
    "make": "Prepared(count=2)",
    "process": "return StopEvent(result=ev.count)",
}


class Module:
    """One workflow module on disk, reloadable in this process and importable by workers."""

    def __init__(self, directory: Path) -> None:
        self.name = f"codever_flow_{uuid.uuid4().hex[:8]}"
        self.directory = directory
        self.path = directory / f"{self.name}.py"
        self.workflows = f"codever={self.name}.FixFlow,codever_ask={self.name}.AskFlow"
        self.writes = 0

    def write(self, version: dict[str, str]) -> None:
        """Write `version` and load it here as a worker starting now would import it."""
        indents = {"prepared": "    ", "process": "        ", "decide": "        ", "make": ""}
        body = {k: textwrap.indent(v, indents[k]) for k, v in version.items()}
        self.path.write_text(MODULE.format(**body))
        # A new mtime, so neither the import system nor linecache reuses the old file's.
        self.writes += 1
        stamp = self.path.stat().st_mtime + self.writes
        os.utime(self.path, (stamp, stamp))
        sys.modules.pop(self.name, None)
        importlib.invalidate_caches()
        linecache.checkcache(str(self.path))
        registry.clear_cache()

    def digest(self) -> str:
        return digest(registry.workflow_class("codever"))

    def worker_env(self) -> dict[str, str]:
        return {
            "WFDASH_WORKFLOWS": self.workflows,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{self.directory}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Module]:
    found = Module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("WFDASH_WORKFLOWS", found.workflows)
    registry.clear_cache()
    yield found
    sys.modules.pop(found.name, None)
    monkeypatch.delenv("WFDASH_WORKFLOWS")
    registry.clear_cache()


@pytest.fixture
def api() -> Client:
    user = get_user_model().objects.create_user("dev", password="pw-dev-123")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="runs", codename__in=["view_run", "add_run"])
    )
    client = Client()
    client.force_login(user)
    return client


def _work(spawn: Callable[..., Any], module: Module) -> None:
    """One worker process with the module as it is on disk now, until nothing is left to run."""
    worker = spawn("wfworker", "--exit-when-idle", "--poll-interval", "0.05", env=module.worker_env())
    assert worker.wait(timeout=60) == 0, worker.stdout.read() if worker.stdout else ""


def _failed_at_process(spawn: Callable[..., Any], module: Module) -> tuple[Run, Checkpoint]:
    module.write(V1)
    run = start_run("codever", {})
    _work(spawn, module)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "bug: wrong formula" in run.error
    return run, Checkpoint.objects.get(run=run, last_completed_step="prepare")


def test_the_worker_records_the_code_it_ran(spawn, module: Module) -> None:
    run, _ = _failed_at_process(spawn, module)
    # The worker process and this one computed the same digest from the same file.
    assert run.code_version_id == module.digest()
    assert run.code_version is not None and run.code_version.workflow == "codever"
    assert 'raise ValueError("bug: wrong formula")' in run.code_version.manifest["steps"]["process"]["source"]


def test_the_preview_after_a_fix_shows_the_changed_step_and_the_fork_runs_the_fix(
    spawn, module: Module, api: Client
) -> None:
    run, prepared = _failed_at_process(spawn, module)
    before = run.code_version_id
    module.write(FIXED)

    preview = api.get(f"/api/checkpoints/{prepared.id}/fork-preview/").json()
    assert preview["checkpoint_code_version"] == before and preview["code_version"] == module.digest() != before
    (changed,) = [s for s in preview["changed_steps"] if s["step"] == "process"]
    assert '-    raise ValueError("bug: wrong formula")\n' in changed["diff"]
    assert "+    return StopEvent(result=ev.n * 10)\n" in changed["diff"]
    assert "prepare" not in [s["step"] for s in preview["changed_steps"]]
    assert preview["schema_changes"] == [] and preview["will_run"] == ["process"] and preview["compatible"]

    forked = api.post(f"/api/checkpoints/{prepared.id}/fork/", "{}", content_type="application/json")
    assert forked.status_code == 201, forked.content
    _work(spawn, module)
    fork = Run.objects.get(pk=forked.json()["id"])
    assert fork.status == RunStatus.SUCCEEDED and fork.result == 20, fork.error
    assert fork.code_version_id == module.digest()


def test_an_incompatible_event_change_refuses_the_fork_before_writing(spawn, module: Module, api: Client) -> None:
    _, prepared = _failed_at_process(spawn, module)
    module.write(RENAMED)

    preview = api.get(f"/api/checkpoints/{prepared.id}/fork-preview/").json()
    errors = {(c["event"], c["field"]) for c in preview["schema_changes"] if c["severity"] == "error"}
    assert errors == {("Prepared", "n"), ("Prepared", "count")} and preview["compatible"] is False

    counts = (Run.objects.count(), Checkpoint.objects.count(), Activity.objects.count())
    refused = api.post(f"/api/checkpoints/{prepared.id}/fork/", "{}", content_type="application/json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "incompatible_code"
    assert {c["field"] for c in refused.json()["error"]["changes"]} == {"n", "count"}
    assert (Run.objects.count(), Checkpoint.objects.count(), Activity.objects.count()) == counts


def test_a_resume_under_new_code_is_recorded_in_the_activity(spawn, module: Module) -> None:
    module.write(V1)
    run = start_run("codever_ask", {})
    worker = spawn("wfworker", "--poll-interval", "0.05", env=module.worker_env())
    wait_until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.WAITING)
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    first = Run.objects.get(pk=run.pk).code_version_id

    module.write(FIXED)
    assert respond(run, {"response": "yes"})
    _work(spawn, module)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.result == "v2 yes", run.error
    assert run.code_version_id == digest(registry.workflow_class("codever_ask")) != first
    (note,) = Activity.objects.filter(run=run, action=Activity.Action.CODE_CHANGED)
    assert note.detail == {"from": first, "to": run.code_version_id}
