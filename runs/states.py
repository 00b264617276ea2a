"""Reading checkpoint states back: stored records, blob references expanded, materialised.

A checkpoint row stores a state record (see wfdash/workflow/snapshots.py) whose store
values are `{"v": value}` or `{"b": blob hash}`. The complete state at a checkpoint is
the full record at its `snapshot_seq` plus the records after it, read in one range query.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from wfdash.workflow.errors import SerializationError
from wfdash.workflow.snapshots import materialise

from .models import Blob

if TYPE_CHECKING:
    from .models import Checkpoint


def expand_records(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Records with their store values unwrapped, blobs read in one query."""
    records = list(records)
    refs: set[str] = set()
    for record in records:
        for entry in _store_of(record).values():
            if isinstance(entry, dict) and "b" in entry:
                refs.add(str(entry["b"]))
    blobs = {b.hash: b.data for b in Blob.objects.filter(hash__in=refs)} if refs else {}
    out: list[dict[str, Any]] = []
    for record in records:
        store: dict[str, Any] = {}
        for key, entry in _store_of(record).items():
            if isinstance(entry, dict) and "v" in entry:
                store[key] = entry["v"]
            elif isinstance(entry, dict) and entry.get("b") in blobs:
                store[key] = json.loads(blobs[entry["b"]])
            else:
                raise SerializationError(f"corrupt stored state: store key {key!r} refers to a missing value")
        out.append({**record, "store": store} if "store" in record else dict(record))
    return out


def records(checkpoint: Checkpoint) -> list[dict[str, Any]]:
    """The stored records the checkpoint's complete state is built from, in seq order."""
    from .models import Checkpoint

    if checkpoint.snapshot_seq == checkpoint.seq:
        return [checkpoint.state]
    if not 0 < checkpoint.snapshot_seq < checkpoint.seq:
        raise SerializationError(f"checkpoint {checkpoint.id}: snapshot_seq {checkpoint.snapshot_seq} is out of range")
    rows = list(
        Checkpoint.objects.filter(run_id=checkpoint.run_id, seq__gte=checkpoint.snapshot_seq, seq__lt=checkpoint.seq)
        .order_by("seq")
        .values_list("seq", "state")
    )
    if [seq for seq, _ in rows] != list(range(checkpoint.snapshot_seq, checkpoint.seq)):
        raise SerializationError(f"checkpoint {checkpoint.id}: the records it builds on are missing")
    return [state for _, state in rows] + [checkpoint.state]


def context_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The complete state at `checkpoint` (`ctx_state` form), store values expanded."""
    return materialise(expand_records(records(checkpoint)))


def outside_event_loop[T](fn: Callable[[], T]) -> T:
    """Call a function that queries the database, from a thread when this one runs an
    event loop (a notebook): Django refuses synchronous queries there."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _store_of(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise SerializationError("corrupt stored state: not an object")
    store = record.get("store", {})
    if not isinstance(store, dict):
        raise SerializationError("corrupt stored state: 'store' is not an object")
    return store
