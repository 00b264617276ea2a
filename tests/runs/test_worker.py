"""The worker, in this process: executes queued runs, forks, human input, cancel, retries."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from runs.executor import Worker
from runs.models import Checkpoint, Run, RunStatus, fork_run, respond, start_run

pytestmark = pytest.mark.django_db(transaction=True)


async def _drain(**kwargs: object) -> Worker:
    worker = Worker(poll_interval=0.05, **kwargs)  # type: ignore[arg-type]
    await asyncio.wait_for(worker.run(exit_when_idle=True, install_signals=False), 60)
    return worker


async def _refresh(run: Run) -> Run:
    await run.arefresh_from_db()
    return run


async def _steps(run: Run) -> list[str]:
    return [
        s
        async for s in Checkpoint.objects.filter(run=run).order_by("seq").values_list("last_completed_step", flat=True)
    ]


async def test_it_executes_queued_runs_and_records_their_results() -> None:
    runs = [await sync_to_async(start_run)("chain", {"steps": 3}) for _ in range(5)]
    worker = await _drain(concurrency=3)
    assert worker.executed == 5
    for run in runs:
        run = await _refresh(run)
        assert run.status == RunStatus.SUCCEEDED
        assert run.result == {"ticks": 3}
        assert run.attempts == 1
        assert run.started_at is not None and run.finished_at is not None
        assert await _steps(run) == ["begin", "tick", "tick", "tick"]


async def test_it_runs_the_wordcount_demo_with_fan_out_and_fan_in() -> None:
    run = await sync_to_async(start_run)("wordcount", {"text": "one two three four five six seven", "chunks": 3})
    await _drain()
    run = await _refresh(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result == {"words": 7, "chunks": 3}
    steps = await _steps(run)
    assert steps.count("count") == 3 and steps.count("total") == 3 and steps[0] == "split"


async def test_it_retries_the_flaky_demo_and_fails_the_broken_one_with_its_step_named() -> None:
    ok = await sync_to_async(start_run)("flaky", {"failures": 2})
    broken = await sync_to_async(start_run)("flaky_forever", {})
    await _drain()
    ok = await _refresh(ok)
    assert ok.status == RunStatus.SUCCEEDED and ok.result == {"attempts": 3}
    broken = await _refresh(broken)
    assert broken.status == RunStatus.FAILED
    assert "process" in broken.error and "needs fixing" in broken.error
    assert "ValueError" in broken.error_traceback

    # Retry after the fix: fork the failed run's latest checkpoint with a store edit.
    latest = await Checkpoint.objects.filter(run=broken).order_by("-seq").afirst()
    assert latest is not None
    child = await sync_to_async(fork_run)(latest.id, store={"fixed": True})
    await _drain()
    child = await _refresh(child)
    assert child.status == RunStatus.SUCCEEDED and child.result == {"processed": True}
    assert child.parent_checkpoint_id == latest.id
    assert await _steps(child) == ["process"]


async def test_it_forks_with_an_edited_output_event() -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 5})
    await _drain()
    ckpt = await Checkpoint.objects.aget(run=run, seq=2)  # tick 1 -> Tick(n=2)
    child = await sync_to_async(fork_run)(ckpt.id, output_event={"n": 4})
    plain = await sync_to_async(fork_run)(ckpt.id)
    await _drain()
    child = await _refresh(child)
    assert child.status == RunStatus.SUCCEEDED
    assert child.fork_edits == {"output_event": {"type": "Tick", "data": {"n": 4}}}
    assert await _steps(child) == ["tick", "tick"]  # 4 -> 5 -> stop
    plain = await _refresh(plain)
    assert await _steps(plain) == ["tick", "tick", "tick", "tick"]  # 2, 3, 4, 5
    assert await Checkpoint.objects.filter(run=run).acount() == 6  # parent untouched


async def test_it_waits_for_a_human_answer_and_then_finishes() -> None:
    run = await sync_to_async(start_run)("approval", {"subject": "the plan"})
    await _drain()
    run = await _refresh(run)
    assert run.status == RunStatus.WAITING
    assert run.worker_id == "" and run.lease_expires_at is None
    assert await sync_to_async(respond)(run, {"response": "yes"})
    assert run.status == RunStatus.QUEUED
    await _drain()
    run = await _refresh(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result == {"approved": True, "message": "Hello team, please find the plan attached."}
    assert await _steps(run) == ["draft", "ask", "decide"]
    assert run.pending_input is None


async def test_it_refuses_an_answer_for_a_run_that_is_not_waiting() -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    assert not await sync_to_async(respond)(run, {"response": "yes"})
    assert run.status == RunStatus.QUEUED and run.pending_input is None


async def test_it_cancels_a_queued_run_without_running_it() -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 3})
    assert await sync_to_async(run.request_cancel)()
    await _drain()
    run = await _refresh(run)
    assert run.status == RunStatus.CANCELLED
    assert await Checkpoint.objects.filter(run=run).acount() == 0


async def test_it_stops_a_running_run_within_a_second_of_cancel() -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1000, "sleep": 0.05})
    worker = Worker(poll_interval=0.05)
    task = asyncio.create_task(worker.run(exit_when_idle=True, install_signals=False))
    while await Checkpoint.objects.filter(run=run).acount() < 3:
        await asyncio.sleep(0.02)
    await sync_to_async(run.request_cancel)()
    loop = asyncio.get_running_loop()
    asked = loop.time()
    while (await _refresh(run)).status != RunStatus.CANCELLED:
        assert loop.time() - asked < 1.0, "the run did not stop within a second"
        await asyncio.sleep(0.02)
    await asyncio.wait_for(task, 10)
    count = await Checkpoint.objects.filter(run=run).acount()
    await asyncio.sleep(0.3)
    assert await Checkpoint.objects.filter(run=run).acount() == count  # nothing ran after


async def test_it_fails_a_run_whose_workflow_is_no_longer_registered() -> None:
    run = await Run.objects.acreate(workflow="gone", start_event={"type": "StartEvent", "data": {}})
    await _drain()
    run = await _refresh(run)
    assert run.status == RunStatus.FAILED
    assert "unknown workflow 'gone'" in run.error


async def test_it_claims_each_run_for_one_worker_only() -> None:
    for _ in range(10):
        await sync_to_async(start_run)("chain", {"steps": 1})
    first = await sync_to_async(Run.objects.claim)("worker-a", 6, 30)
    second = await sync_to_async(Run.objects.claim)("worker-b", 6, 30)
    assert len(first) == 6 and len(second) == 4
    assert not {r.id for r in first} & {r.id for r in second}
    assert await sync_to_async(Run.objects.claim)("worker-c", 6, 30) == []


async def test_it_reclaims_a_run_whose_lease_expired() -> None:
    run = await sync_to_async(start_run)("chain", {"steps": 1})
    [claimed] = await sync_to_async(Run.objects.claim)("dead-worker", 1, 30)
    assert await sync_to_async(Run.objects.claim)("other", 1, 30) == []
    await Run.objects.filter(pk=run.pk).aupdate(lease_expires_at=claimed.created_at)
    [again] = await sync_to_async(Run.objects.claim)("other", 1, 30)
    assert again.id == run.id and again.attempts == 2 and again.worker_id == "other"


async def test_renewing_leases_reports_only_runs_another_worker_took_over() -> None:
    kept, released, taken = [await sync_to_async(start_run)("chain", {"steps": 1}) for _ in range(3)]
    await sync_to_async(Run.objects.claim)("me", 3, 30)
    await sync_to_async(Run.objects.wait_for_input)(str(released.id), "me")
    await Run.objects.filter(pk=taken.pk).aupdate(worker_id="other")
    ids = [str(r.id) for r in (kept, released, taken)]
    assert await sync_to_async(Run.objects.renew)("me", ids, 600) == {str(taken.id)}
    kept = await _refresh(kept)
    assert kept.lease_expires_at is not None and (kept.lease_expires_at - kept.created_at).total_seconds() > 500


async def test_it_forks_a_durable_run_from_mid_fan_out_with_a_store_edit() -> None:
    parent = await sync_to_async(start_run)("map", {"items": 400})
    await _drain()
    parent = await _refresh(parent)
    assert parent.status == RunStatus.SUCCEEDED, parent.error
    # A checkpoint whose state is a delta, with work queued and results waiting to be reduced.
    middle = await Checkpoint.objects.filter(run=parent, seq=401).aget()
    assert middle.snapshot_seq < middle.seq
    state = await sync_to_async(middle.context_state)()
    assert state["queued"] and state["collect"]

    child = await sync_to_async(fork_run)(middle.id, store={"label": "after the fix"})
    await _drain()
    child = await _refresh(child)
    assert child.status == RunStatus.SUCCEEDED, child.error
    assert child.result == {"items": 400, "index_sum": sum(range(400)), "distinct": 400, "label": "after the fix"}
    # The child ran only what was pending at the fork point: the parent's 801 steps less 401.
    seqs = [s async for s in Checkpoint.objects.filter(run=child).order_by("seq").values_list("seq", flat=True)]
    assert seqs == list(range(1, 801 - 401 + 1))


async def _seqs(run: Run) -> list[int]:
    return [s async for s in Checkpoint.objects.filter(run=run).order_by("seq").values_list("seq", flat=True)]


async def _until_checkpoints(run: Run, count: int) -> None:
    while await Checkpoint.objects.filter(run=run).acount() < count:
        await asyncio.sleep(0.02)


async def test_a_worker_whose_lease_expired_under_load_keeps_its_run_instead_of_claiming_it_twice() -> None:
    # The worker stalled past its lease (a loaded machine) and nobody took the run over:
    # its claim loop must not start the run a second time beside the first, both writing
    # as the same owner until one hits the other's seq.
    run = await sync_to_async(start_run)("chain", {"steps": 20, "sleep": 0.05})
    worker = Worker(poll_interval=0.05, lease_seconds=60)  # no renewal during the test
    task = asyncio.create_task(worker.run(exit_when_idle=True, install_signals=False))
    await _until_checkpoints(run, 3)
    await Run.objects.filter(pk=run.pk).aupdate(lease_expires_at=run.created_at)
    await asyncio.wait_for(task, 60)
    run = await _refresh(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 1 and worker.executed == 1
    assert await _seqs(run) == list(range(1, 22))


async def test_a_replaced_worker_is_fenced_by_its_claim_even_under_the_same_worker_id() -> None:
    # Two executions of one run under one worker id (a process restarted with a fixed
    # --worker-id while the old one, stalled, still lives): the claim's attempt fences the
    # old one's late writes, and the new one resumes from the latest checkpoint and finishes.
    run = await sync_to_async(start_run)("chain", {"steps": 20, "sleep": 0.05})
    stalled = Worker(worker_id="same", poll_interval=0.05, lease_seconds=60)
    old = asyncio.create_task(stalled.run(install_signals=False))
    await _until_checkpoints(run, 3)
    await Run.objects.filter(pk=run.pk).aupdate(lease_expires_at=run.created_at)
    await _drain(worker_id="same", lease_seconds=60)
    stalled.request_stop()
    await asyncio.wait_for(old, 60)
    run = await _refresh(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.result == {"ticks": 20}
    assert run.worker_id == "same" and run.attempts == 2
    assert await _seqs(run) == list(range(1, 22))  # contiguous: nothing lost, nothing twice


async def test_a_claim_announces_its_runs_as_claimed_without_reading_them_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read after the runs started, a run's "running" message could count checkpoints its pages
    # had not had yet, and every page would then catch up from the database.
    from runs import live

    sent: list[live.RunMessage] = []
    reads: list[list[str]] = []

    async def send(messages: list[live.RunMessage]) -> None:
        sent.extend(messages)

    async def announce(run_ids: list[str]) -> None:
        reads.append(list(run_ids))

    monkeypatch.setattr(live, "asend_runs", send)
    monkeypatch.setattr(live, "aannounce_runs", announce)
    base = await sync_to_async(start_run)("chain", {"steps": 2})
    await _drain()
    fork_point = await Checkpoint.objects.aget(run=base, seq=2)
    fork = await sync_to_async(fork_run)(fork_point.id)
    sent.clear()
    await _drain(announce=True)
    assert reads == [[str(fork.id)]]  # only its end, read once it finished
    (message,) = sent
    assert message["run_id"] == str(fork.id) and message["status"] == RunStatus.RUNNING
    assert message["checkpoint_count"] == 0
    assert message["parent_run_id"] == str(base.id)
    assert message["parent_checkpoint_id"] == str(fork_point.id)


async def test_a_claim_whose_announcement_cannot_be_read_still_runs_its_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from runs import live

    def broken(runs: list[Run]) -> list[live.RunMessage]:
        raise OperationalError("the database went away while announcing")

    monkeypatch.setattr(live, "run_messages", broken)
    run = await sync_to_async(start_run)("chain", {"steps": 2})
    await _drain(announce=True)
    assert (await _refresh(run)).status == RunStatus.SUCCEEDED
