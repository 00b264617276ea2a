"""A run's family: its root ancestor and every fork below it, as a bounded tree.

Walking up follows `parent_checkpoint` (at most MAX_DEPTH hops); walking down reads one
level of forks per query, each fork found by an EXISTS on its own parent checkpoint (a
join from the parents' checkpoints would scan every checkpoint of a 100,000-checkpoint
run). At most LIMIT runs are read; the tree says how many more there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, TextField
from django.db.models.functions import Cast, Substr

from .models import Checkpoint, Run

LIMIT = 200
MAX_DEPTH = 50
HEAD = 160  # characters of a result or of the edits read for a node's summary

_FIELDS = (
    "id",
    "status",
    "created_at",
    "error",
    "parent_checkpoint_id",
    "parent_checkpoint__run_id",
    "parent_checkpoint__seq",
    "parent_checkpoint__last_completed_step",
)


@dataclass
class Node:
    id: str
    status: str
    created_at: Any
    fork_seq: int | None
    fork_step: str
    edits: str
    result: str
    current: bool = False
    children: list[Node] = field(default_factory=list)


@dataclass
class Lineage:
    root: Node
    size: int
    """Runs shown."""
    more: int
    """Runs of the family not shown (beyond LIMIT)."""


def _rows(qs: Any, limit: int) -> list[dict[str, Any]]:
    # Only the first characters of the result and the edits: either can be megabytes.
    qs = qs.annotate(
        result_head=Substr(Cast("result", output_field=TextField()), 1, HEAD),
        edits_head=Substr(Cast("fork_edits", output_field=TextField()), 1, HEAD),
    )
    return list(qs.values(*_FIELDS, "result_head", "edits_head").order_by("created_at", "id")[:limit])


def _node(row: dict[str, Any], current: str) -> Node:
    status = row["status"]
    if status == "failed":
        result = (row["error"] or "failed").splitlines()[0][:HEAD]
    elif row["result_head"] and row["result_head"] != "null":
        result = _short(row["result_head"])
    else:
        result = ""
    edits = row["edits_head"] or ""
    return Node(
        id=str(row["id"]),
        status=status,
        created_at=row["created_at"],
        fork_seq=row["parent_checkpoint__seq"],
        fork_step=row["parent_checkpoint__last_completed_step"] or "",
        edits="" if edits in ("{}", "null") else _short(edits),
        result=result,
        current=str(row["id"]) == current,
    )


def _short(text: str, size: int = 80) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


def root_of(run: Run) -> Any:
    """The id of the run's oldest ancestor (itself when it is no fork)."""
    run_id, parent = run.pk, run.parent_checkpoint_id
    for _ in range(MAX_DEPTH):
        if parent is None:
            return run_id
        row = Checkpoint.objects.filter(pk=parent).values("run_id", "run__parent_checkpoint_id").first()
        if row is None:
            return run_id
        run_id, parent = row["run_id"], row["run__parent_checkpoint_id"]
    return run_id


def lineage(run: Run, limit: int = LIMIT) -> Lineage:
    """The family tree of `run`, from its root, oldest forks first at each level."""
    current = str(run.pk)
    root_rows = _rows(Run.objects.filter(pk=root_of(run)), 1)
    root = _node(root_rows[0], current)
    nodes = {root.id: root}
    frontier = [root.id]
    more = 0
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        forks = Run.objects.filter(workflow=run.workflow, parent_checkpoint__isnull=False).filter(
            Exists(Checkpoint.objects.filter(pk=OuterRef("parent_checkpoint_id"), run_id__in=frontier))
        )
        room = limit - len(nodes)
        rows = _rows(forks, room + 1) if room > 0 else []
        if len(rows) > room or room <= 0:
            more = forks.count() - max(room, 0)
            rows = rows[: max(room, 0)]
        frontier = []
        for row in rows:
            node = _node(row, current)
            nodes[str(row["parent_checkpoint__run_id"])].children.append(node)
            nodes[node.id] = node
            frontier.append(node.id)
        if more:
            break
    return Lineage(root=root, size=len(nodes), more=more)
