"""The engine's checkpoint store on the Django ORM.

Writes from all runs of one process go through one writer that commits them in
batches (group commit): a step's output is dispatched only after the batch holding
its checkpoint committed, and concurrent runs share the cost of a commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from functools import cache, cached_property, partial
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.db import (
    DEFAULT_DB_ALIAS,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    models,
    transaction,
)
from django.utils import timezone

from wfdash.workflow import Workflow, WorkflowCancelledError, WorkflowSuspendedError
from wfdash.workflow.checkpointer import Checkpoint as EngineCheckpoint
from wfdash.workflow.checkpointer import RunInfo, validate_snapshot
from wfdash.workflow.errors import SerializationError
from wfdash.workflow.serialization import encode_event

from . import code_versions, live, metrics, registry
from .models import Blob, Checkpoint, Run, RunStatus
from .states import context_state, expand_records, outside_event_loop

# Store values whose JSON is longer than this go to a content-addressed blob.
BLOB_THRESHOLD = 256
# How long a batch keeps retrying a lost database connection before the step fails.
RETRY_SECONDS = 60.0

log = logging.getLogger("runs.store")


class LeaseLost(RuntimeError):
    """This process no longer owns the run: another worker took it over."""


def lost_lease(error: BaseException | None) -> bool:
    """Whether `error` is, or was caused by, a LeaseLost (the engine wraps a failed checkpoint)."""
    while error is not None:
        if isinstance(error, LeaseLost):
            return True
        error = error.__cause__
    return False


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _database_thread(loop: asyncio.AbstractEventLoop) -> Any:
    """The executor of the thread `sync_to_async` (thread-sensitive) would use, when it is
    asgiref's one sync thread (a worker, a script), or None (inside an async_to_sync call or a
    request's thread-sensitive context: sync_to_async decides there).

    Handing work to it directly skips sync_to_async's per-call machinery: half of a 75-85 µs
    round trip, a sixth of a durable step on SQLite (bench/profile_store.py). The writes stay
    in the thread that also claims and renews runs: a writer thread with its own connection
    made SQLite's two connections of one process wait on each other's lock and cost a worker
    up to a third of its runs per second.
    """
    if (
        SyncToAsync.thread_sensitive_context.get(None) is None
        and loop not in AsyncToSync.loop_thread_executors
        and getattr(AsyncToSync.executors, "current", None) is None
    ):
        return SyncToAsync.single_thread_executor
    return None


async def in_database_thread(fn: Callable[[], Any]) -> Any:
    """Run `fn` in the thread `sync_to_async` (thread-sensitive) would, with its connection."""
    loop = asyncio.get_running_loop()
    executor = _database_thread(loop)
    if executor is not None:
        future = loop.run_in_executor(executor, fn)
        # A cancelled caller cannot stop a commit under way; its outcome is then read here,
        # so an error nobody waits for is not reported as never retrieved.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(future)
    return await sync_to_async(fn)()


class _Batcher:
    """Runs write operations of many coroutines in one transaction per batch: the writes that
    arrive while a batch commits go in the next one (group commit).

    The common case costs one trip to the database thread and back: the batch is handed to
    the thread with a callback that settles its writers' futures on the event loop, with no
    task, shield or chained future in between (together a fifth of a durable step on SQLite).
    A batch that lost its connection is retried by a task (reconnect, back off).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Callable[[bool], Any], asyncio.Future[Any]]] = []
        self._busy = False

    async def submit(self, op: Callable[[bool], Any]) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((op, future))
        if not self._busy:
            self._busy = True
            self._send(loop)
        return await future

    def _send(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit what is pending (the batcher is busy till `_settle` sends the next batch)."""
        batch, self._pending = self._pending, []
        ops = [op for op, _ in batch]
        executor = _database_thread(loop)
        if executor is not None:

            def commit() -> None:
                try:
                    outcome: Any = _apply_batch(ops, False)
                except BaseException as exc:  # settled on the loop, like the outcomes
                    outcome = exc
                loop.call_soon_threadsafe(self._settle, loop, batch, outcome)

            try:
                executor.submit(commit)
                return
            except RuntimeError:  # the executor shut down (interpreter exit): the slow path says so
                pass
        loop.create_task(self._retry(loop, batch, None))

    def _settle(self, loop: asyncio.AbstractEventLoop, batch: list[Any], outcome: Any) -> None:
        if isinstance(outcome, OperationalError | InterfaceError):
            loop.create_task(self._retry(loop, batch, outcome))
            return
        outcomes = [outcome] * len(batch) if isinstance(outcome, BaseException) else outcome
        for (_, future), result in zip(batch, outcomes, strict=True):
            if future.done():  # its writer was cancelled; the write committed all the same
                continue
            if isinstance(result, asyncio.CancelledError):
                future.cancel()
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if self._pending:
            self._send(loop)
        else:
            self._busy = False

    async def _retry(self, loop: asyncio.AbstractEventLoop, batch: list[Any], error: BaseException | None) -> None:
        try:
            outcomes: Any = await self._commit([op for op, _ in batch], error)
        except BaseException as exc:  # cancelled at shutdown: the writers hear it
            outcomes = exc
        self._settle(loop, batch, outcomes)

    async def _commit(self, ops: list[Callable[[bool], Any]], error: BaseException | None) -> list[Any]:
        """Apply a batch; on a lost or locked connection, reconnect and retry (ops are idempotent)."""
        delay = 0.05
        deadline = asyncio.get_running_loop().time() + RETRY_SECONDS
        retrying = error is not None
        while True:
            if error is not None:
                if asyncio.get_running_loop().time() > deadline:
                    return [error] * len(ops)
                log.warning("checkpoint write failed (%s); retrying in %.2f s", error, delay)
                await in_database_thread(drop_connection)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            try:
                return await in_database_thread(partial(_apply_batch, ops, retrying))
            except (OperationalError, InterfaceError) as exc:
                error, retrying = exc, True
            except BaseException as exc:  # the commit itself failed: every op in it failed
                return [exc] * len(ops)


def drop_connection() -> None:
    """Close this thread's connection (call it through sync_to_async: resolved in the worker thread)."""
    try:
        connection.close()
    except Exception:  # it is already broken; the next query reconnects
        pass


def _apply_batch(ops: list[Callable[[bool], Any]], retrying: bool) -> list[Any]:
    if not retrying:
        try:
            if len(ops) == 1 and _one_statement(ops[0]):
                return [None]
            with transaction.atomic():
                return _apply_bulk(ops)
        except (OperationalError, InterfaceError):
            raise  # the connection is gone: retry the whole batch
        except Exception:  # some op failed: redo them one by one to tell which
            pass
    return _apply_one_by_one(ops, retrying)


def _apply_one_by_one(ops: list[Callable[[bool], Any]], retrying: bool) -> list[Any]:
    outcomes: list[Any] = []
    with transaction.atomic():
        for op in ops:
            try:
                # A savepoint per op: one failing write does not undo the others.
                with transaction.atomic():
                    outcomes.append(op(retrying))
            except (OperationalError, InterfaceError):
                raise
            except Exception as exc:
                outcomes.append(exc)
    return outcomes


def _apply_bulk(ops: list[Callable[[bool], Any]]) -> list[Any]:
    """The common case, fast: runs of checkpoint writes and of run endings each in a few
    statements, no savepoints. Raises on any failure; the caller then rolls back and
    applies the ops one by one.
    """
    outcomes: list[Any] = []
    group: list[Any] = []
    for op in ops:
        if group and type(op) is not type(group[0]):
            _flush(group)  # order matters: a run's row before its checkpoints, its end after them
            group = []
        if isinstance(op, _CheckpointWrite | _RunFinish):
            group.append(op)
            outcomes.append(None)
        else:
            outcomes.append(op(False))
    if group:
        _flush(group)
    return outcomes


def _one_statement(op: Any) -> bool:
    """A lone checkpoint on PostgreSQL, written with its run's progress in one statement, its
    own transaction: one round trip instead of four (BEGIN, UPDATE, INSERT, COMMIT). False
    when it does not apply; raises LeaseLost (nothing written) when the run is not ours."""
    if not isinstance(op, _CheckpointWrite) or op.blobs:
        return False
    conn = _connection()
    if conn.vendor != "postgresql" or not conn.get_autocommit():
        return False
    sql = _sql(conn)
    params = [
        *(_datetime(op.values["created_at"], conn), 1, op.llm_calls, op.prompt_tokens, op.completion_tokens),
        *(_uuid(op.values["run_id"], conn), op.owner, op.attempt, RunStatus.RUNNING.value),
        *(prep(op.values.get(name), conn) for name, prep in sql.checkpoint_params),
    ]
    with conn.cursor() as cursor:
        cursor.execute(sql.checkpoint_with_progress, params)
        if cursor.rowcount != 1:
            raise LeaseLost("a run in this batch is no longer owned by this worker")
    return True


def _flush(group: list[Any]) -> None:
    if isinstance(group[0], _CheckpointWrite):
        _write_checkpoints(group)
    else:
        _finish_runs(group)


class _CheckpointWrite:
    """One checkpoint's field values, its new blobs and its run's counters.

    Batched, it is written by _write_checkpoints; called alone, through the ORM.
    """

    def __init__(
        self,
        values: dict[str, Any],
        blobs: dict[str, str],
        owner: str,
        usage: list[dict[str, Any]],
        attempt: int | None = None,
    ) -> None:
        self.values, self.blobs, self.owner, self.attempt = values, blobs, owner, attempt
        self.llm_calls = len(usage)
        self.prompt_tokens = self.completion_tokens = 0
        for u in usage:
            self.prompt_tokens += int(u.get("prompt_tokens") or 0)
            self.completion_tokens += int(u.get("completion_tokens") or 0)

    @cached_property
    def row(self) -> Checkpoint:
        return Checkpoint(**self.values)

    def __call__(self, retrying: bool) -> None:
        run_id = self.values["run_id"]
        # After a lost connection the first attempt may have committed after all.
        if retrying and Checkpoint.objects.filter(pk=self.values["id"]).exists():
            return
        try:
            _write_checkpoints([self])
        except LeaseLost:
            raise LeaseLost(f"run {run_id} is no longer owned by {self.owner}") from None
        except IntegrityError as exc:
            raise LeaseLost(f"run {run_id} already has checkpoint seq {self.values['seq']}") from exc


def _write_checkpoints(writes: list[_CheckpointWrite]) -> None:
    """What _CheckpointWrite does, for many at once: one UPDATE per run, one INSERT batch."""
    if not writes:
        return
    blobs = {h: d for w in writes for h, d in w.blobs.items()}
    if blobs:
        Blob.objects.bulk_create([Blob(hash=h, data=d) for h, d in blobs.items()], ignore_conflicts=True)
    totals: dict[tuple[Any, str, int | None], list[Any]] = {}
    for w in writes:
        created_at = w.values["created_at"]
        t = totals.setdefault((w.values["run_id"], w.owner, w.attempt), [created_at, 0, 0, 0, 0])
        t[0] = max(t[0], created_at)
        t[1] += 1
        t[2] += w.llm_calls
        t[3] += w.prompt_tokens
        t[4] += w.completion_tokens
    conn = _connection()
    sql = _sql(conn)
    updates = [
        [
            *(_datetime(when, conn), count, calls, prompt, completion),
            *(_uuid(run_id, conn), owner, attempt, RunStatus.RUNNING.value),
        ]
        for (run_id, owner, attempt), (when, count, calls, prompt, completion) in totals.items()
    ]
    with conn.cursor() as cursor:
        _execute(cursor, sql.update_run, updates)
        # Each statement matches at most one row (by id): fewer means a lost lease.
        if cursor.rowcount != len(updates):
            raise LeaseLost("a run in this batch is no longer owned by this worker")
        rows = [[prep(w.values.get(name), conn) for name, prep in sql.checkpoint_params] for w in writes]
        _execute(cursor, sql.insert_checkpoint, rows)


class _RunFinish:
    """A run's final fields, unless it was cancelled meanwhile. Plain SQL: compiling the
    ORM's query cost more than the statement itself."""

    def __init__(self, run_id: str, owner: str, fields: dict[str, Any], attempt: int | None = None) -> None:
        self.run_id, self.owner, self.fields, self.attempt = run_id, owner, fields, attempt

    def statement(self, conn: Any) -> tuple[str, list[Any]]:
        columns = _run_columns()
        sql = Run.finish_sql(conn.ops.quote_name, [str(columns[name].column) for name in self.fields])
        params = [_prepared(columns[name], value, conn) for name, value in self.fields.items()]
        return sql, [*params, _uuid(self.run_id, conn), self.owner, self.attempt, RunStatus.CANCELLED.value]

    def __call__(self, retrying: bool) -> None:
        _finish_runs([self])


def _finish_runs(finishes: list[_RunFinish]) -> None:
    conn = _connection()
    by_sql: dict[str, list[list[Any]]] = {}
    for finish in finishes:
        sql, params = finish.statement(conn)
        by_sql.setdefault(sql, []).append(params)
    with conn.cursor() as cursor:
        for sql, rows in by_sql.items():
            _execute(cursor, sql, rows)


def _execute(cursor: Any, sql: str, rows: list[list[Any]]) -> None:
    # One row: a plain execute (psycopg's executemany sets up a pipeline, a round trip more).
    if len(rows) == 1:
        cursor.execute(sql, rows[0])
    else:
        cursor.executemany(sql, rows)


@cache
def _run_columns() -> dict[str, Any]:
    return {f.name: f for f in Run._meta.concrete_fields}


class _Statements:
    def __init__(self, conn: Any) -> None:
        qn = conn.ops.quote_name
        self.checkpoint_fields = list(Checkpoint._meta.concrete_fields)
        columns = ", ".join(qn(str(f.column)) for f in self.checkpoint_fields)
        marks = ", ".join(["%s"] * len(self.checkpoint_fields))
        self.insert_checkpoint = f"INSERT INTO {qn(Checkpoint._meta.db_table)} ({columns}) VALUES ({marks})"
        self.checkpoint_params: list[tuple[str, Callable[[Any, Any], Any]]] = [
            (f.attname, _adapter(f)) for f in self.checkpoint_fields
        ]
        self.update_run = Run.progress_sql(qn)
        if conn.vendor == "postgresql":
            # INSERT ... SELECT types its parameters by no column: each is cast to its column's.
            casts = ", ".join(f"CAST(%s AS {f.db_type(conn)})" for f in self.checkpoint_fields)
            self.checkpoint_with_progress = (
                f"WITH progress AS ({self.update_run} RETURNING 1) "
                f"INSERT INTO {qn(Checkpoint._meta.db_table)} ({columns}) SELECT {casts} FROM progress"
            )


def _adapter(field: Any) -> Callable[[Any, Any], Any]:
    """How one column's value goes to the driver: what the field's get_db_prep_save
    does, minus the layers (they cost more than the insert on a busy worker)."""
    if field.attname == "listed":
        return _listed_at_write
    if isinstance(field, models.CharField | models.IntegerField | models.FloatField):
        return _as_is
    if isinstance(field, models.JSONField) and field.encoder is None:
        return _json
    if isinstance(field, models.DateTimeField):
        return _datetime
    if isinstance(field, models.UUIDField) or (
        isinstance(field, models.ForeignKey) and isinstance(field.target_field, models.UUIDField)
    ):
        return _uuid
    return partial(_prepared, field)


def _listed_at_write(value: Any, conn: Any) -> bool:
    """Whether a worker's checkpoint enters the explorer's indexes with its write. On SQLite
    the indexer lists it later, in batches (six index pages fewer in every step's commit); on
    PostgreSQL listing it later would cost a second row version in every index."""
    return conn.vendor != "sqlite"


def _as_is(value: Any, conn: Any) -> Any:
    return value


def _json(value: Any, conn: Any) -> Any:
    return None if value is None else conn.ops.adapt_json_value(value, None)


def _datetime(value: Any, conn: Any) -> Any:
    return conn.ops.adapt_datetimefield_value(value)


def _uuid(value: Any, conn: Any) -> Any:
    if value is None:
        return None
    value = value if isinstance(value, uuid.UUID) else uuid.UUID(value)
    return value if conn.features.has_native_uuid_field else value.hex


def _prepared(field: Any, value: Any, conn: Any) -> Any:
    # A nullable JSON field's None is SQL NULL, as the ORM stores it.
    return None if value is None else field.get_db_prep_save(value, conn)


def _connection() -> Any:
    # This thread's connection itself: every attribute read through the
    # `connection` proxy costs a context-local lookup.
    return connections[DEFAULT_DB_ALIAS]


_statements: dict[str, _Statements] = {}


def _sql(conn: Any) -> _Statements:
    if conn.vendor not in _statements:
        _statements[conn.vendor] = _Statements(conn)
    return _statements[conn.vendor]


class DatabaseCheckpointStore:
    """Implements the engine's CheckpointStore on the `runs` models.

    Used directly (a notebook, a script) it creates the Run row itself; a worker
    passes `managed=True` because it claimed the row already.
    """

    def __init__(self, owner: str | None = None, *, managed: bool = False, announce: bool | None = None) -> None:
        self.owner = owner or f"local:{default_owner()}"
        self.managed = managed
        # Only worth sending when another process can hear it (Redis); see live.py.
        self.announce = live.cross_process() if announce is None else announce
        self._announcing: set[asyncio.Task[None]] = set()
        self._batcher = _Batcher()
        # Blob hashes this process already wrote, and per (run, key) the last
        # encoded value and its hash, so unchanged values cost nothing.
        self._known_blobs: OrderedDict[str, None] = OrderedDict()
        self._value_hashes: dict[tuple[str, str], tuple[Any, str]] = {}
        self._names: dict[type[Workflow], str] = {}
        # Per run a worker claimed, the attempt its claim counted: the fencing token of
        # the run's writes (see Run.claim_guard).
        self._attempts: dict[str, int] = {}

    def claimed(self, run_id: str, attempt: int) -> None:
        """A worker executes `run_id` under the claim that counted `attempt`."""
        self._attempts[run_id] = attempt

    def unclaimed(self, run_id: str) -> None:
        self._attempts.pop(run_id, None)

    # -- writing -------------------------------------------------------------

    async def run_started(self, run: RunInfo) -> None:
        if self.managed:
            return
        name = registry.name_of(run.workflow)
        start = encode_event(run.start_event) if run.start_event is not None else None
        owner = self.owner

        def op(retrying: bool) -> None:
            Run.objects.start_here(
                run.run_id,
                owner,
                code_version_id=code_versions.ensure(name, run.workflow),
                workflow=name,
                start_event=start,
                parent_checkpoint_id=run.parent_checkpoint_id,
                fork_edits=run.edits,
            )

        await self._batcher.submit(op)
        if self.announce:
            self._in_background(live.aannounce_runs([run.run_id]))

    async def put_checkpoint(self, checkpoint: EngineCheckpoint, workflow: Workflow) -> None:
        state, blobs = self._split_state(checkpoint.run_id, checkpoint.state_record)
        # Field values, not a model instance: building one costs more than writing it.
        values = {
            "id": checkpoint.id_,
            "run_id": checkpoint.run_id,
            "workflow": self._name_of(workflow),
            "seq": checkpoint.seq,
            "last_completed_step": checkpoint.last_completed_step,
            "input_event_type": type(checkpoint.input_event).__name__,
            "output_event_type": type(checkpoint.output_event).__name__ if checkpoint.output_event is not None else "",
            "input_event": encode_event(checkpoint.input_event),
            "output_event": encode_event(checkpoint.output_event) if checkpoint.output_event is not None else None,
            "state": state,
            "snapshot_seq": checkpoint.snapshot_seq,
            "created_at": checkpoint.created_at,
            "duration_ms": checkpoint.duration_ms,
            "usage": checkpoint.usage or None,
            "retries": checkpoint.retries or None,
        }
        op = _CheckpointWrite(values, blobs, self.owner, checkpoint.usage or [], self._attempts.get(checkpoint.run_id))
        submitted = time.perf_counter()
        await self._batcher.submit(op)
        metrics.checkpoint_written(
            self._name_of(workflow),
            checkpoint.last_completed_step,
            checkpoint.duration_ms / 1000.0,
            time.perf_counter() - submitted,
            checkpoint.usage,
        )
        for h in blobs:
            self._remember_blob(h)
        if self.announce:
            self._in_background(live.aannounce_checkpoints([live.checkpoint_message(op.row)]))

    def _name_of(self, workflow: Workflow) -> str:
        name = self._names.get(type(workflow))
        if name is None:
            name = self._names[type(workflow)] = registry.name_of(workflow)
        return name

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def run_finished(self, run_id: str, result: Any, error: BaseException | None) -> None:
        owner = self.owner
        now = timezone.now()
        fields: dict[str, Any] = {"finished_at": now, "updated_at": now, "lease_expires_at": None}
        if error is None:
            fields.update(status=RunStatus.SUCCEEDED, result=_json_result(result), error="", error_traceback="")
        elif isinstance(error, WorkflowCancelledError):
            fields.update(status=RunStatus.CANCELLED, error="cancelled")
        elif lost_lease(error) or isinstance(error, WorkflowSuspendedError | asyncio.CancelledError):
            # Another worker owns the run now, or it paused at a checkpoint: the
            # caller decides what the run's status becomes.
            return
        else:
            fields.update(status=RunStatus.FAILED, error=str(error), error_traceback=_format_traceback(error))

        await self._batcher.submit(_RunFinish(run_id, owner, fields, self._attempts.get(run_id)))
        self._forget_run(run_id)
        if self.announce:
            self._in_background(live.aannounce_runs([run_id]))

    # -- reading -------------------------------------------------------------

    async def get_checkpoint(self, checkpoint_id: str, workflow: Workflow) -> EngineCheckpoint:
        # Its complete state is built here (off the event loop) but not decoded: running
        # from it restores it through the registry anyway, and that is the costly part.
        return await sync_to_async(partial(load_checkpoint, validate=False))(checkpoint_id, workflow)

    async def list_checkpoints(
        self,
        workflow: Workflow,
        *,
        run_id: str | None = None,
        last_completed_step: str | None = None,
        input_event_type: str | None = None,
        output_event_type: str | None = None,
    ) -> list[EngineCheckpoint]:
        def query() -> list[EngineCheckpoint]:
            qs = Checkpoint.listing().filter(workflow=registry.name_of(workflow))
            if run_id is not None:
                qs = qs.filter(run_id=run_id)
            if last_completed_step is not None:
                qs = qs.filter(last_completed_step=last_completed_step)
            if input_event_type is not None:
                qs = qs.filter(input_event_type=input_event_type)
            if output_event_type is not None:
                qs = qs.filter(output_event_type=output_event_type)
            # Complete states are built only when asked for: a listing reads each row once.
            return [to_engine(row, workflow, lazy=True) for row in qs.order_by("created_at", "seq")]

        return await sync_to_async(query)()

    # -- blobs -----------------------------------------------------------------

    def _split_state(self, run_id: str, state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Replace large store values by blob references; return (record, new blobs).

        A delta carries only the keys its step changed, so this costs what the step did."""
        blobs: dict[str, str] = {}
        stored: dict[str, Any] = {}
        for key, value in state.get("store", {}).items():
            if isinstance(value, int | float | bool | type(None)):
                stored[key] = {"v": value}
                continue
            cached = self._value_hashes.get((run_id, key))
            # Strings are immutable: the same object means the same content.
            if cached is not None and cached[0] is value and isinstance(value, str):
                stored[key] = {"b": cached[1]}
                continue
            data = canonical_json(value)
            if len(data) <= BLOB_THRESHOLD:
                stored[key] = {"v": value}
                continue
            digest = hashlib.sha256(data.encode()).hexdigest()
            self._value_hashes[(run_id, key)] = (value, digest)
            if digest not in self._known_blobs:
                blobs[digest] = data
            stored[key] = {"b": digest}
        out = dict(state)
        out["store"] = stored
        return out, blobs

    def _remember_blob(self, digest: str) -> None:
        self._known_blobs[digest] = None
        self._known_blobs.move_to_end(digest)
        while len(self._known_blobs) > 10_000:
            self._known_blobs.popitem(last=False)

    def _forget_run(self, run_id: str) -> None:
        for key in [k for k in self._value_hashes if k[0] == run_id]:
            del self._value_hashes[key]


def _json_result(result: Any) -> Any:
    try:
        return json.loads(json.dumps(result))
    except (TypeError, ValueError):
        return {"repr": repr(result), "note": "the result was not JSON-serializable"}


def _format_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))[-20_000:]


def to_engine(row: Checkpoint, workflow: Workflow, *, validate: bool = True, lazy: bool = False) -> EngineCheckpoint:
    """Decode a stored checkpoint through `workflow`'s own event registry.

    Its complete state is built now (and with `validate` checked against the registry),
    or with `lazy` when first asked for. A worker skips `validate`: restoring the state
    to run it checks the same, and a 10,000-event state takes 100 ms to decode.
    """
    if row.last_completed_step not in workflow.steps:
        raise SerializationError(f"unknown step {row.last_completed_step!r}")
    checkpoint = EngineCheckpoint.from_record(
        {
            "id": str(row.id),
            "run_id": str(row.run_id),
            "seq": row.seq,
            "last_completed_step": row.last_completed_step,
            "input_event": row.input_event,
            "output_event": row.output_event,
            "ctx_state": expand_records([row.state])[0],
            "created_at": row.created_at,
            "duration_ms": row.duration_ms,
        },
        workflow.event_registry,
    )
    checkpoint.snapshot_seq = row.snapshot_seq
    if lazy:
        checkpoint.load_state_with(lambda: outside_event_loop(lambda: context_state(row)))
        return checkpoint
    state = context_state(row)
    if validate:
        validate_snapshot(workflow, state)
    checkpoint.load_state_with(lambda: state)
    return checkpoint


def load_checkpoint(checkpoint_id: str, workflow: Workflow, *, validate: bool = True) -> EngineCheckpoint:
    try:
        row = Checkpoint.objects.get(pk=checkpoint_id)
    except (Checkpoint.DoesNotExist, ValueError, TypeError):
        raise KeyError(f"unknown checkpoint {checkpoint_id!r}") from None
    expected = registry.name_of(workflow)
    if row.workflow != expected:
        raise SerializationError(f"checkpoint {checkpoint_id} belongs to workflow {row.workflow!r}, not {expected!r}")
    return to_engine(row, workflow, validate=validate)


def split_store(state: dict[str, Any]) -> dict[str, Any]:
    """The stored form of a snapshot (sync): large store values written as blobs, referred to by hash."""
    blobs: dict[str, str] = {}
    stored: dict[str, Any] = {}
    for key, value in state.get("store", {}).items():
        data = canonical_json(value)
        if isinstance(value, int | float | bool | type(None)) or len(data) <= BLOB_THRESHOLD:
            stored[key] = {"v": value}
        else:
            digest = hashlib.sha256(data.encode()).hexdigest()
            blobs[digest] = data
            stored[key] = {"b": digest}
    if blobs:
        Blob.objects.bulk_create([Blob(hash=h, data=d) for h, d in blobs.items()], ignore_conflicts=True)
    return {**state, "store": stored}
