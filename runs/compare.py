"""Two runs of one workflow side by side: checkpoints aligned by step, field-level diffs.

A page covers at most COMPARE_WINDOW positions. Position k is the k-th checkpoint after
the point the runs share: for a fork and its parent, the fork's #k and the parent's
#(fork point + k); for any other two runs, each one's own #k. Inside a page the two
step sequences are aligned (difflib's matching, so a step that only one run took
leaves a gap instead of shifting every later pair), and each pair is diffed by DeepDiff
on what users see: the input and output events and the store from `context_state()`,
never the storage format.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepdiff import DeepDiff

from . import filters
from .filters import FilterError
from .models import Checkpoint, Run
from .timeline import COMPARE_WINDOW, RUN_HEAVY, seq_bounds, seq_param

MAX_CHANGES = 50  # fields listed per pair; the rest are counted
VALUE_CHARS = 300  # characters of one value shown in a change
COLLAPSE_AT = 2  # identical pairs in a row folded into one "N identical checkpoints"


class NotComparable(Exception):
    """The other run does not exist, is ambiguous, or runs another workflow."""


@dataclass
class Change:
    path: str
    kind: str
    """changed, added (only on the right), removed (only on the left), or type."""
    left: str
    right: str


@dataclass
class Pair:
    position: int
    left: Checkpoint | None
    right: Checkpoint | None
    changes: list[Change] = field(default_factory=list)
    more_changes: int = 0
    left_values: dict[str, Any] | None = None
    right_values: dict[str, Any] | None = None

    @property
    def step_differs(self) -> bool:
        return self.left is not None and self.right is not None and _step(self.left) != _step(self.right)

    @property
    def differs(self) -> bool:
        return self.left is None or self.right is None or self.step_differs or bool(self.changes)

    @property
    def changed_sections(self) -> set[str]:
        return {c.path.split(".", 1)[0].split(" ", 1)[0] for c in self.changes}


@dataclass
class Stretch:
    """Consecutive identical pairs, shown folded."""

    pairs: list[Pair]

    @property
    def first(self) -> Pair:
        return self.pairs[0]

    @property
    def last(self) -> Pair:
        return self.pairs[-1]


@dataclass
class ComparePage:
    left: Run
    right: Run
    left_offset: int
    right_offset: int
    relation: str
    """fork (right is a fork of left), parent (left is a fork of right), or "" (each from #1)."""
    items: list[Pair | Stretch]
    pairs: list[Pair]
    start: int
    end: int
    earlier: int | None
    later: int | None
    result_changes: list[Change]

    @property
    def differing(self) -> int:
        return sum(1 for p in self.pairs if p.differs)

    @property
    def left_label(self) -> str:
        return {"fork": "parent", "parent": "fork"}.get(self.relation, "left")

    @property
    def right_label(self) -> str:
        return {"fork": "fork", "parent": "parent"}.get(self.relation, "right")

    @property
    def sides(self) -> list[tuple[Run, str]]:
        return [(self.left, self.left_label), (self.right, self.right_label)]

    @property
    def shared_point(self) -> int:
        """The seq (in the older run) after which the two runs part: 0 when unrelated."""
        return max(self.left_offset, self.right_offset)


def _step(c: Checkpoint | None) -> str | None:
    return c.last_completed_step if c is not None else None


def find_run(run: Run, ref: str) -> Run:
    """Another run of `run`'s workflow by its id or a prefix of it (the ids' one resolver)."""
    qs = Run.objects.filter(workflow=run.workflow).defer(*RUN_HEAVY)
    try:
        return qs.get(pk=filters.resolve_id(qs, ref, "the run to compare with", f"{run.workflow} run"))
    except filters.FilterError as exc:
        raise NotComparable(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
    except Run.DoesNotExist:
        raise NotComparable(f"No {run.workflow} run has the id {ref.strip()[:40]!r}.") from None


def recent_others(run: Run, limit: int = 10) -> list[Run]:
    """Suggestions for the "compare with" form: the newest other runs of the workflow."""
    qs = Run.objects.filter(workflow=run.workflow).exclude(pk=run.pk).defer(*RUN_HEAVY)
    return list(qs.order_by("-created_at", "-id")[:limit])


def offsets(left: Run, right: Run) -> tuple[int, int, str]:
    """Where each run's own checkpoints start in the positions both share."""
    if right.parent_checkpoint_id is not None:
        fork = Checkpoint.objects.filter(pk=right.parent_checkpoint_id).values("run_id", "seq").first()
        if fork and fork["run_id"] == left.pk:
            return fork["seq"], 0, "fork"
    if left.parent_checkpoint_id is not None:
        fork = Checkpoint.objects.filter(pk=left.parent_checkpoint_id).values("run_id", "seq").first()
        if fork and fork["run_id"] == right.pk:
            return 0, fork["seq"], "parent"
    return 0, 0, ""


def compare_page(left: Run, right: Run, params: Mapping[str, Any], size: int = COMPARE_WINDOW) -> ComparePage:
    """One page of `size` positions: after `after_seq`, before `before_seq`, or the first."""
    before, after = seq_param(params, "before_seq"), seq_param(params, "after_seq")
    left_offset, right_offset, relation = offsets(left, right)
    last = max((seq_bounds(left)[1] or left_offset) - left_offset, (seq_bounds(right)[1] or 0) - right_offset, 0)
    if before is not None:
        start = max(1, before - size)
    elif after is not None:
        start = after + 1
    else:
        start = 1
    if last and start > last:
        raise FilterError(f"there are only {last} checkpoints to compare")
    end = min(start + size - 1, last)
    lefts = _read(left, start + left_offset, end + left_offset)
    rights = _read(right, start + right_offset, end + right_offset)
    pairs = [_diff(p) for p in align(lefts, rights, start)]
    return ComparePage(
        left=left,
        right=right,
        left_offset=left_offset,
        right_offset=right_offset,
        relation=relation,
        items=fold(pairs),
        pairs=pairs,
        start=start,
        end=end,
        earlier=start if start > 1 else None,
        later=end if end < last else None,
        result_changes=changes(_outcome(left), _outcome(right)),
    )


def _read(run: Run, lo: int, hi: int) -> list[Checkpoint]:
    if hi < lo:
        return []
    return list(Checkpoint.objects.filter(run=run, seq__range=(lo, hi)).order_by("seq"))


def align(lefts: list[Checkpoint], rights: list[Checkpoint], start: int) -> list[Pair]:
    """Pairs by step: runs of equal steps pair in order; where the steps differ, pair what
    lines up and leave the rest one-sided."""
    matcher = difflib.SequenceMatcher(
        None, [c.last_completed_step for c in lefts], [c.last_completed_step for c in rights], autojunk=False
    )
    pairs: list[Pair] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("equal", "replace"):
            for k in range(max(i2 - i1, j2 - j1)):
                a = lefts[i1 + k] if i1 + k < i2 else None
                b = rights[j1 + k] if j1 + k < j2 else None
                pairs.append(Pair(start + len(pairs), a, b))
        elif tag == "delete":
            pairs.extend(Pair(start + len(pairs), c, None) for c in lefts[i1:i2])
        else:
            pairs.extend(Pair(start + len(pairs), None, c) for c in rights[j1:j2])
    return pairs


def fold(pairs: list[Pair], at: int = COLLAPSE_AT) -> list[Pair | Stretch]:
    """Identical pairs in a row (at least `at`) become one Stretch."""
    items: list[Pair | Stretch] = []
    run: list[Pair] = []

    def flush() -> None:
        if len(run) >= at:
            items.append(Stretch(list(run)))
        else:
            items.extend(run)
        run.clear()

    for p in pairs:
        if p.differs:
            flush()
            items.append(p)
        else:
            run.append(p)
    flush()
    return items


def values(c: Checkpoint | None) -> dict[str, Any] | None:
    """What a user sees of a checkpoint: its events and its store."""
    if c is None:
        return None
    try:
        store = c.context_state().get("store", {})
    except Exception as exc:  # a damaged row still compares, as unreadable
        store = {"(unreadable)": str(exc)[:200]}
    return {"input": _event(c.input_event), "output": _event(c.output_event), "store": store}


def _event(value: Any) -> Any:
    if isinstance(value, dict) and "data" in value:
        return {"type": value.get("type"), **({"data": value["data"]} if value["data"] is not None else {})}
    return value


def _diff(pair: Pair) -> Pair:
    pair.left_values, pair.right_values = values(pair.left), values(pair.right)
    if pair.left_values is not None and pair.right_values is not None:
        found = changes(pair.left_values, pair.right_values)
        pair.changes, pair.more_changes = found[:MAX_CHANGES], max(0, len(found) - MAX_CHANGES)
    return pair


def _outcome(run: Run) -> Any:
    if run.status == "failed":
        return {"status": run.status, "error": run.error}
    return {"status": run.status, "result": run.result}


def changes(left: Any, right: Any) -> list[Change]:
    """Every field that differs between two JSON values, by DeepDiff, with readable paths."""
    diff = DeepDiff(left, right, view="tree", verbose_level=2, max_diffs=MAX_CHANGES * 4)
    found: list[Change] = []
    kinds = {
        "values_changed": "changed",
        "type_changes": "type",
        "dictionary_item_added": "added",
        "iterable_item_added": "added",
        "dictionary_item_removed": "removed",
        "iterable_item_removed": "removed",
    }
    for report, kind in kinds.items():
        for level in diff.get(report, []):
            path = _path(level.path(output_format="list"))
            found.append(Change(path=path, kind=kind, left=_show(level.t1), right=_show(level.t2)))
    return sorted(found, key=lambda c: c.path)


def _path(parts: list[Any]) -> str:
    # Events are {"type", "data"}: "output.data.n" reads "output.n", "output.type" "output type".
    if len(parts) >= 2 and parts[0] in ("input", "output") and parts[1] == "data":
        parts = [parts[0], *parts[2:]]
    elif len(parts) == 2 and parts[0] in ("input", "output") and parts[1] == "type":
        return f"{parts[0]} type"
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(the whole value)"


def _show(value: Any) -> str:
    if type(value).__name__ == "NotPresent":
        return ""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
