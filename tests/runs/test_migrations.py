"""Upgrading a database from full snapshots (0002) to state records (0003) keeps old rows readable."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("runs", "0002_checkpoint_workflow_step_index")]
AFTER = [("runs", "0003_checkpoint_state_records")]
OLD_SNAPSHOT = {
    "version": 1,
    "store": {"steps": {"v": 3}, "sleep": {"v": 0.0}},
    "queued": [],
    "in_flight": [],
    "unsent": [],
    "collect": [],
    "waiters": [],
    "awaiting_input": False,
}


def _migrate(targets: list[tuple[str, str]]) -> object:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def _latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.fixture
def upgraded_run() -> Iterator[uuid.UUID]:
    """A run with two checkpoints written by the previous release, then the upgrade."""
    old = _migrate(BEFORE)
    Run = old.get_model("runs", "Run")  # type: ignore[attr-defined]
    Checkpoint = old.get_model("runs", "Checkpoint")  # type: ignore[attr-defined]
    run = Run.objects.create(workflow="chain", status="succeeded", start_event={"type": "ChainStart", "data": {}})
    for seq, (step, inp, out) in enumerate(
        [("begin", ("ChainStart", {"steps": 3}), ("Tick", {"n": 1})), ("tick", ("Tick", {"n": 1}), ("Tick", {"n": 2}))],
        start=1,
    ):
        Checkpoint.objects.create(
            run=run,
            workflow="chain",
            seq=seq,
            last_completed_step=step,
            input_event_type=inp[0],
            output_event_type=out[0],
            input_event={"type": inp[0], "data": inp[1]},
            output_event={"type": out[0], "data": out[1]},
            ctx_state=OLD_SNAPSHOT,
        )
    _migrate(AFTER)
    _migrate(_latest())
    yield run.id


def test_it_makes_each_old_snapshot_its_own_base(upgraded_run: uuid.UUID) -> None:
    from runs.models import Checkpoint

    rows = Checkpoint.objects.filter(run_id=upgraded_run).order_by("seq")
    assert [(c.seq, c.snapshot_seq) for c in rows] == [(1, 1), (2, 2)]
    assert rows[1].context_state()["store"] == {"steps": 3, "sleep": 0.0}


def test_it_forks_from_an_old_snapshot_after_the_upgrade(upgraded_run: uuid.UUID) -> None:
    import asyncio

    from runs.executor import Worker
    from runs.models import Checkpoint, RunStatus, fork_run

    old = Checkpoint.objects.get(run_id=upgraded_run, seq=2)
    child = fork_run(old.id)
    asyncio.run(Worker(poll_interval=0.05).run(exit_when_idle=True, install_signals=False))
    child.refresh_from_db()
    assert child.status == RunStatus.SUCCEEDED, child.error
    assert child.result == {"ticks": 3}
