"""prune, exportrun and importrun."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from runs.executor import Worker
from runs.models import Blob, Checkpoint, Run, RunStatus, fork_run, start_run

pytestmark = pytest.mark.django_db(transaction=True)


def _execute() -> None:
    async def go() -> None:
        await asyncio.wait_for(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False), 60)

    async_to_sync(go)()


def _age(run: Run, days: int) -> None:
    then = timezone.now() - timedelta(days=days)
    Run.objects.filter(pk=run.pk).update(created_at=then, finished_at=then)


def test_it_prunes_old_finished_runs_but_keeps_what_forks_need(capsys) -> None:
    old_ok = start_run("chain", {"steps": 2})
    old_failed = start_run("flaky_forever", {})
    parent = start_run("chain", {"steps": 2})
    young = start_run("chain", {"steps": 1})
    _execute()
    fork = fork_run(Checkpoint.objects.get(run=parent, seq=1).id)
    unfinished_old = start_run("chain", {"steps": 1})  # queued: never pruned
    for run in (old_ok, old_failed, parent, unfinished_old):
        _age(run, 40)
    Run.objects.filter(pk=unfinished_old.pk).update(finished_at=None)

    call_command("prune", "--older-than", "30d", "--keep-failed", "--dry-run")
    assert "would delete 1 runs" in capsys.readouterr().out
    call_command("prune", "--older-than", "30d", "--keep-failed", "--batch-size", "1")
    remaining = set(Run.objects.values_list("id", flat=True))
    assert old_ok.id not in remaining
    assert {old_failed.id, parent.id, young.id, fork.id, unfinished_old.id} <= remaining
    assert not Checkpoint.objects.filter(run_id=old_ok.id).exists()

    # Once the fork is old and finished too, the chain goes leaf first.
    _execute()
    _age(Run.objects.get(pk=fork.pk), 35)
    call_command("prune", "--older-than", "30d")
    remaining = set(Run.objects.values_list("id", flat=True))
    assert remaining == {young.id, unfinished_old.id}


def test_it_collects_unreferenced_blobs(capsys) -> None:
    keep = start_run("chain", {"steps": 1, "payload": "k" * 1000})
    drop = start_run("chain", {"steps": 1, "payload": "d" * 1000})
    _execute()
    assert Blob.objects.count() == 2
    _age(drop, 40)
    Blob.objects.update(created_at=timezone.now() - timedelta(days=40))
    call_command("prune", "--older-than", "30d", "--gc-blobs")
    assert "deleted 1 unreferenced blobs" in capsys.readouterr().out
    assert Blob.objects.count() == 1 and Run.objects.filter(pk=keep.pk).exists()


def test_it_refuses_a_bad_age() -> None:
    with pytest.raises(CommandError, match="must look like"):
        call_command("prune", "--older-than", "soon")


def test_it_exports_and_imports_a_run_with_its_checkpoints(tmp_path: Path, capsys) -> None:
    run = start_run("chain", {"steps": 3, "payload": "p" * 2000})
    _execute()
    call_command("exportrun", str(run.id))
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "wfdash.run/2" and len(doc["checkpoints"]) == 4
    assert doc["checkpoints"][0]["state"]["store"]["payload"] == "p" * 2000  # blobs inlined
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    Checkpoint.objects.filter(run=run).delete()
    Run.objects.filter(pk=run.pk).delete()
    Blob.objects.all().delete()

    call_command("importrun", str(path))
    imported = Run.objects.get(pk=run.id)
    assert imported.status == RunStatus.SUCCEEDED and imported.result == {"ticks": 3}
    assert list(Checkpoint.objects.filter(run=imported).values_list("seq", flat=True)) == [1, 2, 3, 4]
    # And it forks like any other run.
    child = fork_run(Checkpoint.objects.get(run=imported, seq=2).id)
    _execute()
    child.refresh_from_db()
    assert child.status == RunStatus.SUCCEEDED and child.result == {"ticks": 3}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["run"].update(workflow="nope"), "unknown workflow 'nope'"),
        (lambda d: d["checkpoints"][1]["output_event"].update(type="os.system"), "unknown event type 'os.system'"),
        (lambda d: d["checkpoints"][1].update(seq=7), "without gaps"),
        (lambda d: d["checkpoints"][0]["state"].update(queued=[{"step": "x", "event": {}}]), "invalid export"),
        (lambda d: d.update(format="other"), "not a wfdash run export"),
        (lambda d: None, "exists already"),
    ],
)
def test_it_refuses_bad_imports_and_writes_nothing(tmp_path: Path, capsys, mutate, message) -> None:
    run = start_run("chain", {"steps": 1})
    _execute()
    call_command("exportrun", str(run.id))
    doc = json.loads(capsys.readouterr().out)
    if message != "exists already":  # a copy under new ids, so only the mutation is wrong
        doc["run"]["id"] = str(uuid.uuid4())
        for c in doc["checkpoints"]:
            c["id"] = str(uuid.uuid4())
    mutate(doc)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(doc))
    before = (Run.objects.count(), Checkpoint.objects.count())
    with pytest.raises(CommandError, match=message):
        call_command("importrun", str(path))
    assert (Run.objects.count(), Checkpoint.objects.count()) == before
