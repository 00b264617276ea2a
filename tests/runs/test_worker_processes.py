"""Workers as real processes: racing claims, SIGKILL then resume elsewhere, SIGTERM drain."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from runs.models import Checkpoint, Run, RunStatus, respond, start_run
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FAST_LEASE = {"WFDASH_LEASE_SECONDS": "2"}


def _seqs(run: Run) -> list[int]:
    return list(Checkpoint.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))


def test_it_executes_each_of_200_runs_exactly_once_with_two_racing_workers(spawn) -> None:
    runs = [start_run("chain", {"steps": 2}) for _ in range(200)]
    a = spawn("wfworker", "--worker-id", "A", "--exit-when-idle", "--concurrency", "20")
    b = spawn("wfworker", "--worker-id", "B", "--exit-when-idle", "--concurrency", "20")
    assert a.wait(timeout=120) == 0, a.stdout.read() if a.stdout else ""
    assert b.wait(timeout=120) == 0, b.stdout.read() if b.stdout else ""
    done = Run.objects.filter(id__in=[r.id for r in runs])
    assert done.filter(status=RunStatus.SUCCEEDED).count() == 200
    assert set(done.values_list("attempts", flat=True)) == {1}
    by_worker = Counter(done.values_list("worker_id", flat=True))
    assert set(by_worker) <= {"A", "B"} and sum(by_worker.values()) == 200
    # Executed once: exactly begin + 2 ticks each, seq 1..3 (a second execution would add rows
    # or hit the unique (run, seq) constraint and fail the run).
    per_run = Counter(Checkpoint.objects.filter(run__in=done).values_list("run_id", flat=True))
    assert set(per_run.values()) == {3} and len(per_run) == 200


def test_it_resumes_a_run_on_another_worker_after_sigkill_losing_no_checkpoint(spawn) -> None:
    run = start_run("chain", {"steps": 12, "sleep": 0.2})
    victim = spawn("wfworker", "--worker-id", "victim", env=FAST_LEASE)
    wait_until(lambda: Checkpoint.objects.filter(run=run).count() >= 4, timeout=30)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    before = _seqs(run)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.worker_id == "victim"

    spawn("wfworker", "--worker-id", "rescuer", env=FAST_LEASE)
    wait_until(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result == {"ticks": 12}
    assert run.worker_id == "rescuer" and run.attempts == 2
    seqs = _seqs(run)
    assert seqs == list(range(1, 14))  # begin + 12 ticks, contiguous, no duplicates
    assert seqs[: len(before)] == before
    rescued = Checkpoint.objects.filter(run=run, seq__gt=len(before)).values_list("output_event", flat=True)
    assert all(e is not None for e in rescued)


def test_it_drains_on_sigterm_and_another_worker_finishes_the_run(spawn) -> None:
    run = start_run("chain", {"steps": 30, "sleep": 0.1})
    worker = spawn("wfworker", "--worker-id", "leaving")
    wait_until(lambda: Checkpoint.objects.filter(run=run).count() >= 3, timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    output = worker.stdout.read() if worker.stdout else ""
    assert "stopped" in output
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.worker_id == "" and run.lease_expires_at is None
    drained_at = _seqs(run)
    assert drained_at == list(range(1, len(drained_at) + 1)) and len(drained_at) < 31

    spawn("wfworker", "--worker-id", "next", "--exit-when-idle").wait(timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.result == {"ticks": 30}
    assert _seqs(run) == list(range(1, 32))


def test_it_resumes_a_2000_wide_fan_out_after_sigkill_processing_each_item_once(spawn) -> None:
    items = 2000
    run = start_run("map", {"items": items, "sleep": 0.002})
    victim = spawn("wfworker", "--worker-id", "victim", env=FAST_LEASE)
    work = Checkpoint.objects.filter(run=run, last_completed_step="work")
    wait_until(lambda: work.count() >= 600, timeout=120)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    killed_at = work.count()
    assert killed_at < items  # killed mid-fan-out

    spawn("wfworker", "--worker-id", "rescuer", env=FAST_LEASE)
    wait_until(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=180)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result == {"items": items, "index_sum": sum(range(items)), "distinct": items, "label": ""}
    assert run.worker_id == "rescuer" and run.attempts == 2
    # spread, one `work` and one `reduce` per item: contiguous, nothing twice.
    assert _seqs(run) == list(range(1, 2 * items + 2))
    processed = Counter(e["data"]["index"] for e in work.values_list("input_event", flat=True))
    assert processed == Counter(range(items))  # each item's work checkpointed exactly once


SLOW_ANSWER = {"WFDASH_WORKFLOWS": "slow_answer=tests.workflows.SlowAnswerFlow"}


@pytest.fixture
def slow_answer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from runs import registry

    monkeypatch.setenv("WFDASH_WORKFLOWS", SLOW_ANSWER["WFDASH_WORKFLOWS"])
    registry.clear_cache()
    yield
    monkeypatch.delenv("WFDASH_WORKFLOWS")
    registry.clear_cache()


def test_it_keeps_a_human_answer_when_the_worker_dies_before_the_checkpoint_consuming_it(
    spawn, slow_answer: None
) -> None:
    run = start_run("slow_answer", {})
    victim = spawn("wfworker", "--worker-id", "victim", env={**FAST_LEASE, **SLOW_ANSWER})
    wait_until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.WAITING, timeout=30)
    assert respond(run, {"response": "ship it"})
    # Claimed and delivered: `decide` is running with the answer; no checkpoint yet.
    wait_until(lambda: Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).exists(), timeout=30)
    time.sleep(0.5)  # well inside `decide`'s two seconds
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    run.refresh_from_db()
    assert _seqs(run) == [1]  # only `ask`
    assert run.pending_input == {"type": "HumanResponseEvent", "data": {"response": "ship it"}}

    spawn("wfworker", "--worker-id", "rescuer", env={**FAST_LEASE, **SLOW_ANSWER})
    wait_until(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result == {"answer": "ship it"}
    assert run.pending_input is None  # consumed by the checkpoint that used it
    assert _seqs(run) == [1, 2]
