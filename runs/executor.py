"""The worker: claims runs atomically, executes many on one loop, heartbeats, resumes, drains."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError

from wfdash import telemetry
from wfdash.workflow import Event, HumanResponseEvent, WorkflowCancelledError, WorkflowHandler, WorkflowSuspendedError
from wfdash.workflow.checkpointer import Checkpoint as EngineCheckpoint
from wfdash.workflow.checkpointer import WorkflowCheckpointer
from wfdash.workflow.errors import SerializationError

from . import code_versions, live, metrics, registry, search_index, webhook_delivery
from .models import Checkpoint, Run, RunStatus
from .store import LeaseLost, default_owner, drop_connection, load_checkpoint, to_engine
from .streams import StreamingCheckpointStore

log = logging.getLogger("runs.worker")

MAX_ATTEMPTS = 5


def latest_checkpoint(run_id: str) -> Checkpoint | None:
    return Checkpoint.objects.filter(run_id=run_id).order_by("-seq").first()


class Worker:
    """Executes queued runs; several workers may share one database."""

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        lease_seconds: int | None = None,
        poll_interval: float = 0.2,
        drain_timeout: float | None = None,
        announce: bool | None = None,
    ) -> None:
        self.concurrency = concurrency or settings.WFDASH_WORKER_CONCURRENCY
        self.worker_id = worker_id or f"{default_owner()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds or settings.WFDASH_LEASE_SECONDS
        self.poll_interval = poll_interval
        self.drain_timeout = drain_timeout if drain_timeout is not None else float(self.lease_seconds)
        # announce: send live messages through the channel layer (default: when it reaches
        # other processes; `serve` runs a worker inside daphne, whose pages it reaches too).
        self.store = StreamingCheckpointStore(self.worker_id, managed=True, announce=announce)
        self.handlers: dict[str, WorkflowHandler] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # Runs another worker took over: stopped here, but not ended.
        self.lost: set[str] = set()
        self.stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self.executed = 0

    def request_stop(self) -> None:
        """SIGTERM: claim nothing more; running steps finish to their checkpoint."""
        if not self.stopping.is_set():
            log.info("worker %s draining %d runs", self.worker_id, len(self.tasks))
            self.stopping.set()
            self._wakeup.set()
            for handler in self.handlers.values():
                handler.suspend()

    async def run(self, *, exit_when_idle: bool = False, install_signals: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        housekeeping = loop.create_task(self._housekeeping())
        # Webhooks are sent by every worker; leases keep two from sending one delivery.
        hooks = loop.create_task(webhook_delivery.run_forever(self.worker_id))
        indexing = loop.create_task(search_index.keep_indexing())
        try:
            while not self.stopping.is_set():
                try:
                    claimed = await self._claim()
                except Exception:
                    # The database is away (restart, failover, dropped connection):
                    # keep running what we have and try again shortly.
                    log.exception("cannot claim runs; retrying")
                    await sync_to_async(drop_connection)()
                    claimed = []
                if exit_when_idle and not claimed and not self.tasks:
                    break
                if not claimed or len(self.tasks) >= self.concurrency:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
                    except TimeoutError:
                        pass
            if self.tasks:
                _, pending = await asyncio.wait(list(self.tasks.values()), timeout=self.drain_timeout)
                for task in pending:
                    task.cancel()
                if pending:
                    await asyncio.wait(pending)
        finally:
            housekeeping.cancel()
            indexing.cancel()
            hooks.cancel()
            await asyncio.gather(hooks, return_exceptions=True)  # hands its unsent deliveries back
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _claim(self) -> list[Run]:
        free = self.concurrency - len(self.tasks)
        if free <= 0:
            return []
        planned, messages = await sync_to_async(self._claim_and_plan)(free, list(self.tasks))
        for run, plan in planned:
            self._start(run, plan)
        # As claimed, with no read after the runs started: a read could see their first
        # checkpoints counted before pages had them, and send every page to the database.
        await live.asend_runs(messages)
        return [run for run, _ in planned]

    def _claim_and_plan(
        self, limit: int, busy: list[str]
    ) -> tuple[list[tuple[Run, _LaunchPlan | Exception | None]], list[live.RunMessage]]:
        """Claim runs, read what each needs and build their announcements, in one trip to the
        database thread."""
        planned: list[tuple[Run, _LaunchPlan | Exception | None]] = []
        for run in Run.objects.claim(self.worker_id, limit, self.lease_seconds, busy):
            try:
                planned.append((run, self._plan(run)))
            except Exception as exc:  # handled per run by _execute
                planned.append((run, exc))
        code_versions.record_started(self.worker_id, [run for run, plan in planned if isinstance(plan, _LaunchPlan)])
        claimed = [run for run, _ in planned]
        messages: list[live.RunMessage] = []
        if claimed and self.store.announce:
            try:
                messages = live.run_messages(claimed)
            except (OperationalError, InterfaceError):  # the runs start all the same; pages catch up
                log.warning("could not build the claimed runs' announcements", exc_info=True)
        return planned, messages

    async def _housekeeping(self) -> None:
        """Renew leases every third of the lease; stop cancelled runs within half a second."""
        last_renewal = asyncio.get_running_loop().time()
        while True:
            metrics.heartbeat()
            await asyncio.sleep(0.5)
            if not self.handlers:
                continue
            try:
                for run_id in await sync_to_async(Run.objects.cancelling)(self.worker_id):
                    handler = self.handlers.get(run_id)
                    if handler is not None:
                        await handler.cancel_run()
                now = asyncio.get_running_loop().time()
                if now - last_renewal >= self.lease_seconds / 3:
                    last_renewal = now
                    ids = list(self.handlers)
                    lost = await sync_to_async(Run.objects.renew)(self.worker_id, ids, self.lease_seconds)
                    for run_id in lost:
                        # Another worker took it over (this one was stalled past its lease).
                        log.warning("lost the lease on run %s; stopping it here", run_id)
                        self.lost.add(run_id)
                        handler = self.handlers.get(run_id)
                        if handler is not None:
                            await handler.cancel_run()
            except Exception:
                log.exception("housekeeping failed; retrying")
                await sync_to_async(drop_connection)()

    def _start(self, run: Run, plan: _LaunchPlan | Exception | None) -> None:
        run_id = str(run.id)
        self.store.claimed(run_id, run.attempts)
        task = asyncio.get_running_loop().create_task(self._execute(run, plan))
        self.tasks[run_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self.tasks.pop(run_id, None)
            self.handlers.pop(run_id, None)
            self.lost.discard(run_id)
            self.store.unclaimed(run_id)
            self.executed += 1
            self._wakeup.set()

        task.add_done_callback(done)

    async def _execute(self, run: Run, plan: _LaunchPlan | Exception | None) -> None:
        run_id = str(run.id)
        try:
            if isinstance(plan, Exception):
                raise plan
            handler = plan.launch() if plan is not None else None
        except (OperationalError, InterfaceError) as exc:
            # A database hiccup is no reason to fail the run: hand it back.
            log.warning("run %s: database error while starting (%s); releasing it", run_id, exc)
            await sync_to_async(drop_connection)()
            with contextlib.suppress(Exception):
                await sync_to_async(Run.objects.release)(run_id, self.worker_id, run.attempts)
            return
        except Exception as exc:
            log.warning("run %s cannot start: %s", run_id, exc)
            if await sync_to_async(Run.objects.fail)(run_id, self.worker_id, f"cannot start: {exc}", run.attempts):
                self._ended(run, RunStatus.FAILED, f"cannot start: {exc}", None)
            if self.store.announce:
                await live.aannounce_runs([run_id])
            return
        if handler is None:
            self._ended(run, RunStatus.FAILED, "gave up: its worker died each time", None)
            return
        if run.attempts == 1:
            metrics.run_started(run.workflow)
        # Before the run's first step: its task has not started yet.
        resumed = plan.resume_from if isinstance(plan, _LaunchPlan) else None
        self.store.streams.attach(run_id, handler.ctx, resumed.seq if resumed is not None else 0)
        self.handlers[run_id] = handler
        if self.stopping.is_set():
            handler.suspend()
        # Waiting for a human may take days: checkpoint, release the run, free the slot.
        handler.on_idle(handler.suspend)
        try:
            await handler
            self._ended(run, RunStatus.SUCCEEDED, None, plan)
        except WorkflowSuspendedError:
            let_go = Run.objects.wait_for_input if handler.ctx.is_waiting_for_input else Run.objects.release
            await sync_to_async(let_go)(run_id, self.worker_id, run.attempts)
            if self.store.announce:
                await live.aannounce_runs([run_id])
        except asyncio.CancelledError:
            await sync_to_async(Run.objects.release)(run_id, self.worker_id, run.attempts)
            raise
        except Exception as exc:  # the store recorded the failure
            log.info("run %s ended: %s", run_id, exc)
            if run_id not in self.lost and not _lease_lost(exc):
                status = RunStatus.CANCELLED if isinstance(exc, WorkflowCancelledError) else RunStatus.FAILED
                self._ended(run, status, f"{type(exc).__name__}: {exc}", plan)

    def _ended(self, run: Run, status: RunStatus, error: str | None, plan: _LaunchPlan | None) -> None:
        """This worker finished `run`: count it, and export its trace's root span."""
        metrics.run_finished(run.workflow, status.value)
        telemetry.export_run(
            str(run.id),
            run.workflow,
            started_at=run.started_at,
            status=status.value,
            error=error,
            parent_run_id=plan.parent_run_id if plan is not None else None,
            attributes={"wfdash.attempts": run.attempts},
        )

    def _plan(self, run: Run) -> _LaunchPlan | None:
        """Read what the run needs from the database; None if the run was failed instead."""
        run_id = str(run.id)
        if run.attempts > MAX_ATTEMPTS:
            why = f"gave up after {MAX_ATTEMPTS} attempts: its worker died each time"
            Run.objects.fail(run_id, self.worker_id, why, run.attempts)
            return None
        workflow = registry.get_workflow(run.workflow)
        # The run's root span is exported by _ended, from the run's own start time.
        checkpointer = WorkflowCheckpointer(workflow, store=self.store, name=run.workflow, root_spans=False)
        plan = _LaunchPlan(checkpointer, run_id)
        if run.parent_checkpoint_id is not None and telemetry.enabled():
            # For the link from a fork's trace to its parent's.
            parent = Checkpoint.objects.filter(pk=run.parent_checkpoint_id).values_list("run_id", flat=True).first()
            plan.parent_run_id = str(parent) if parent is not None else None
        # A run's first attempt has no checkpoint to resume from: skip the query.
        latest = latest_checkpoint(run_id) if run.checkpoint_count or run.attempts > 1 else None
        if run.pending_input is not None:
            # Delivered now; cleared by the first checkpoint's commit (Run.progress_sql).
            answer = workflow.event_registry.decode(run.pending_input)
            if not isinstance(answer, HumanResponseEvent):
                raise SerializationError("pending input is not a HumanResponseEvent")
            plan.send.append(answer)
        if latest is not None:
            plan.resume_from = to_engine(latest, workflow, validate=False)
        elif run.parent_checkpoint_id is not None:
            plan.fork_from = load_checkpoint(str(run.parent_checkpoint_id), workflow, validate=False)
            edits = run.fork_edits or {}
            if edits.get("output_event") is not None:
                plan.output_event = workflow.event_registry.decode(edits["output_event"])
            plan.store_edits = edits.get("store") or None
        else:
            if run.start_event is None:
                raise SerializationError("run has no start event")
            start = workflow.event_registry.decode(run.start_event)
            if not isinstance(start, workflow.start_event_class):
                raise SerializationError(f"start event must be a {workflow.start_event_class.__name__}")
            plan.start_event = start
        return plan


class _LaunchPlan:
    """How to (re)start one run, built from database reads outside the event loop."""

    def __init__(self, checkpointer: WorkflowCheckpointer, run_id: str) -> None:
        self.checkpointer = checkpointer
        self.run_id = run_id
        self.send: list[Event] = []
        self.resume_from: EngineCheckpoint | None = None
        self.fork_from: EngineCheckpoint | None = None
        self.output_event: Event | None = None
        self.store_edits: dict[str, Any] | None = None
        self.start_event: Event | None = None
        self.parent_run_id: str | None = None

    def launch(self) -> WorkflowHandler:
        cp = self.checkpointer
        if self.resume_from is not None:
            return cp.resume(self.resume_from, send=self.send)
        if self.fork_from is not None:
            return cp.run_from(
                self.fork_from, output_event=self.output_event, store=self.store_edits, run_id=self.run_id
            )
        assert self.start_event is not None
        return cp.run_as(self.run_id, self.start_event)


def _lease_lost(error: BaseException) -> bool:
    """Whether the run failed here because another worker owns it now (it goes on there)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, LeaseLost):
            return True
        seen = seen.__cause__
    return False
