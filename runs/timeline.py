"""Bounded reads of one run's checkpoints for the run and compare pages.

Whatever a run's length, a page shows a window of at most WINDOW checkpoints, found by
keyset on the unique (run, seq) index, plus a summary of the whole run (checkpoints per
step and a Gantt chart binned into at most GANTT_BINS bars per step) computed by one
GROUP BY. A 100,000-checkpoint run page costs about what a 100-checkpoint one does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db.models import Count, Exists, IntegerField, Max, Min, OuterRef, Q, Value
from django.db.models.expressions import ExpressionWrapper, F

from . import live
from .filters import FilterError, name
from .models import Checkpoint, Run

WINDOW = 100
COMPARE_WINDOW = 50
GANTT_BINS = 200
INHERITED_DEPTH = 10
INHERITED_TAIL = 3
FORKS_SHOWN = 200
# What list views never read: a checkpoint's events and state record can be megabytes.
HEAVY = ("input_event", "output_event", "state")
# The same for a run reached through a foreign key.
RUN_HEAVY = ("start_event", "result", "pending_input", "fork_edits", "error_traceback")


def seq_param(params: Mapping[str, Any], key: str) -> int | None:
    value = str(params.get(key, "") or "").strip()
    if not value:
        return None
    # ASCII digits only: "²".isdigit() is true and int() refuses it.
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise FilterError(f"{key} must be a checkpoint number, got {value[:40]!r}")
    return int(value)


# -- the window --------------------------------------------------------------------


@dataclass
class Window:
    """Checkpoints shown on a run page, newest first, and where the links around them lead."""

    checkpoints: list[live.CheckpointMessage]
    step: str = ""
    older: int | None = None
    """`before_seq` of the "older" link (the oldest seq shown), when older checkpoints exist."""
    newer: int | None = None
    """`after_seq` of the "newer" link (the newest seq shown), when newer checkpoints exist."""
    target: int | None = None
    """The seq jumped to (`?seq=`), highlighted."""

    @property
    def latest(self) -> bool:
        """The newest checkpoints are shown, so live ones belong at the top."""
        return self.newer is None

    @property
    def first_seq(self) -> int | None:
        return self.checkpoints[0]["seq"] if self.checkpoints else None


def window(run: Run, params: Mapping[str, Any], size: int = WINDOW) -> Window:
    """The window `params` asks for: `before_seq`, `after_seq` or `seq` (jump), each optionally
    narrowed to one `step`; the newest `size` checkpoints when none is given."""
    before, after, target = seq_param(params, "before_seq"), seq_param(params, "after_seq"), seq_param(params, "seq")
    step = str(params.get("step", "") or "").strip()
    qs = Checkpoint.objects.filter(run=run).defer(*HEAVY)
    if step:
        qs = qs.filter(last_completed_step=name(step, "step"))
    up, down = qs.order_by("seq"), qs.order_by("-seq")
    newer_rows: list[Checkpoint] = []
    if target is not None:
        # Half the window after the target, the rest at and before it: the target stays in view.
        newer_rows = list(up.filter(seq__gt=target)[: size // 2 + 1])
        more_newer = len(newer_rows) > size // 2
        newer_rows = newer_rows[: size // 2]
        older_rows = list(down.filter(seq__lte=target)[: size - len(newer_rows) + 1])
    elif after is not None:
        newer_rows = list(up.filter(seq__gt=after)[: size + 1])
        more_newer = len(newer_rows) > size
        newer_rows = newer_rows[:size]
        # A short last page is topped up with older ones, so the newest window is always full.
        bottom = newer_rows[0].seq if newer_rows else after + 1
        older_rows = list(down.filter(seq__lt=bottom)[: size - len(newer_rows) + 1])
    else:
        older_rows = list(down.filter(seq__lt=before)[: size + 1] if before is not None else down[: size + 1])
        more_newer = before is not None and up.filter(seq__gte=before).exists()
    room = size - len(newer_rows)
    more_older = len(older_rows) > room
    rows = newer_rows[::-1] + older_rows[:room]
    return Window(
        checkpoints=[live.checkpoint_message(c) for c in rows],
        step=step,
        older=rows[-1].seq if more_older and rows else None,
        newer=rows[0].seq if more_newer and rows else None,
        target=target,
    )


# -- the summary: checkpoints per step and the binned Gantt --------------------------


@dataclass
class StepCount:
    step: str
    count: int
    first_seq: int
    last_seq: int


@dataclass
class Summary:
    """The whole run at a glance, from one aggregate query whatever its length."""

    steps: list[StepCount] = field(default_factory=list)
    gantt: dict[str, Any] = field(default_factory=dict)
    retried: int = 0
    """Checkpoints whose step needed more than one attempt (see Checkpoint.retries)."""

    @property
    def last_seq(self) -> int:
        return max((s.last_seq for s in self.steps), default=0)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.steps)


def summary(run: Run, bins: int = GANTT_BINS) -> Summary:
    """Checkpoints per step, and the Gantt's bars: each step's checkpoints grouped into at most
    `bins` consecutive seq ranges of equal width, each bar spanning its checkpoints' times.
    A bar is [lane, start ms, end ms (both from `t0`), count, first seq, last seq, row, failed
    attempts' durations (ms, a bar of one checkpoint only)]; `row` is the bar's row within its
    step's lane: bars of a step that overlap in time (concurrent workers) get rows of their own.

    Bins are seq ranges, not time ranges, because integer arithmetic on seq is portable SQL
    (SQLite has no epoch extraction); each bin still carries its times, so bars sit on a time
    axis. A run of at most `bins` checkpoints gets one bar per checkpoint. Bin widths are
    powers of two, so bins merge pairwise as the run grows, and what was aggregated is cached:
    checkpoints are never changed once written, so only those after the cached seq are read.
    """
    lo, hi = seq_bounds(run)
    if lo is None or hi is None:
        return Summary(gantt={"t0": None, "lanes": [], "rows": [], "bars": [], "bins": bins})
    width = 1
    while (hi - lo) // width >= bins:
        width *= 2
    key = f"wfdash.timeline.summary.v3.{run.pk}.{bins}"
    cached = cache.get(key)
    groups: dict[tuple[str, int], list[Any]] = {}
    upto = lo - 1
    if cached is not None and cached["lo"] == lo and cached["upto"] <= hi and cached["width"] <= width:
        upto = cached["upto"]
        factor = width // cached["width"]
        for (step, b), g in cached["groups"].items():
            _merge(groups, (step, b // factor), g)
    if upto < hi:
        # Bounded above too: a checkpoint committed meanwhile is left for the next read.
        for step, b, g in _aggregate(run, lo, width, upto, hi):
            _merge(groups, (step, b), g)
    if sum(g[0] for g in groups.values()) == hi - lo + 1:  # no hole below hi: safe to build on
        cache.set(key, {"lo": lo, "upto": hi, "width": width, "groups": groups}, SUMMARY_CACHE_SECONDS)
    return _summary(groups, bins)


def seq_bounds(run: Run) -> tuple[int | None, int | None]:
    """The run's first and last seq: two index lookups (SQLite scans the whole index range
    for MIN and MAX in one query, 15 ms at 100,000 checkpoints)."""
    seqs = Checkpoint.objects.filter(run=run).values_list("seq", flat=True)
    return seqs.order_by("seq").first(), seqs.order_by("-seq").first()


# How long an aggregate is kept for reuse (per process); a miss costs one full scan of the run.
SUMMARY_CACHE_SECONDS = 3600


def _aggregate(run: Run, lo: int, width: int, after: int, upto: int) -> list[tuple[str, int, list[Any]]]:
    """[step, bin, [count, first seq, last seq, start ms, end ms, failed attempts' ms]] for seq
    in (after, upto]."""
    bin_of = ExpressionWrapper((F("seq") - Value(lo)) / Value(width), output_field=IntegerField())
    rows = list(
        Checkpoint.objects.filter(run=run, seq__gt=after, seq__lte=upto)
        .annotate(bin=bin_of)
        .values("last_completed_step", "bin")
        .annotate(n=Count("pk"), first=Min("seq"), last=Max("seq"))
        .annotate(retried=Count("pk", filter=Q(retries__isnull=False)))
        .order_by()  # no default ordering: it would join the GROUP BY
    )
    # Times come from each bar's first and last checkpoint only, by seq: on SQLite the time
    # columns sit after the events and state in the row, and reading them for every row made
    # this query 90 ms at 100,000 checkpoints instead of 30. A checkpoint is written when its
    # step completes, so a bar starts at its first one's time minus its duration.
    ends = {r["first"] for r in rows} | {r["last"] for r in rows}
    times = {
        seq: (_ms(created), duration, [float(r.get("duration_ms", 0)) for r in retries or [] if isinstance(r, dict)])
        for seq, created, duration, retries in Checkpoint.objects.filter(run=run, seq__in=ends).values_list(
            "seq", "created_at", "duration_ms", "retries"
        )
    }
    return [
        (
            r["last_completed_step"],
            r["bin"],
            [
                r["n"],
                r["first"],
                r["last"],
                times[r["first"]][0] - times[r["first"]][1],
                times[r["last"]][0],
                times[r["first"]][2] if r["n"] == 1 else [],
                r["retried"],
            ],
        )
        for r in rows
    ]


def _ms(value: datetime) -> float:
    return value.timestamp() * 1000


def _merge(groups: dict[tuple[str, int], list[Any]], key: tuple[str, int], g: list[Any]) -> None:
    have = groups.get(key)
    if have is None:
        groups[key] = list(g)
        return
    have[0] += g[0]
    have[1], have[2] = min(have[1], g[1]), max(have[2], g[2])
    have[3], have[4] = min(have[3], g[3]), max(have[4], g[4])
    have[5] = []  # a bar of several checkpoints shows their count, not each one's attempts
    have[6] += g[6]


def _summary(groups: dict[tuple[str, int], list[Any]], bins: int) -> Summary:
    per_step: dict[str, StepCount] = {}
    retried = 0
    for (step, _), (n, first, last, *_rest, step_retried) in groups.items():
        retried += step_retried
        s = per_step.setdefault(step, StepCount(step, 0, first, last))
        s.count += n
        s.first_seq, s.last_seq = min(s.first_seq, first), max(s.last_seq, last)
    steps = sorted(per_step.values(), key=lambda s: s.first_seq)
    lane_of = {s.step: i for i, s in enumerate(steps)}
    t0 = min(g[3] for g in groups.values())
    bars = sorted(
        [lane_of[step], round(start - t0, 3), round(end - t0, 3), n, first, last, 0, [round(r, 3) for r in retries]]
        for (step, _), (n, first, last, start, end, retries, _retried) in groups.items()
    )
    rows = assign_rows(bars)
    return Summary(
        steps=steps,
        retried=retried,
        gantt={"t0": t0, "lanes": [s.step for s in steps], "rows": rows, "bars": bars, "bins": bins},
    )


GANTT_ROWS = 8  # rows per step at most; later overlapping bars share the last one


def assign_rows(bars: list[list[Any]], limit: int = GANTT_ROWS) -> list[int]:
    """Give each bar (sorted by lane then start) the first row of its lane that is free at its
    start, as many rows as the step ran at once (up to `limit`); return the rows per lane.
    live.js does the same for bars it adds."""
    ends: dict[int, list[float]] = {}
    for bar in bars:
        lane, start, end = bar[0], bar[1], bar[2]
        # Failed attempts are drawn before the bar's start: they occupy the row too.
        start -= sum(bar[7]) if len(bar) > 7 else 0
        rows = ends.setdefault(lane, [])
        row = next((i for i, busy_until in enumerate(rows) if busy_until <= start), None)
        if row is None:
            row = len(rows) if len(rows) < limit else limit - 1
            if row == len(rows):
                rows.append(end)
        rows[row] = max(rows[row], end)
        bar[6] = row
    return [len(ends.get(lane, [])) or 1 for lane in range(max(ends, default=-1) + 1)]


# -- ancestors --------------------------------------------------------------------------


@dataclass
class InheritedSection:
    """The last few checkpoints of an ancestor, up to the fork point the run descends from."""

    run: Run
    fork_point: Checkpoint
    checkpoints: list[live.CheckpointMessage]

    @property
    def earlier_through(self) -> int:
        """The seq just before the oldest one shown (0 when all are shown)."""
        return self.checkpoints[-1]["seq"] - 1 if self.checkpoints else 0


def inherited(run: Run, depth: int = INHERITED_DEPTH, tail: int = INHERITED_TAIL) -> list[InheritedSection]:
    """Ancestors, nearest first, each with its last `tail` checkpoints up to the fork point, newest first."""
    sections: list[InheritedSection] = []
    fork_id = run.parent_checkpoint_id
    while fork_id is not None and len(sections) < depth:
        fork = (
            Checkpoint.objects.select_related("run")
            .defer(*HEAVY, *(f"run__{f}" for f in RUN_HEAVY))
            .filter(pk=fork_id)
            .first()
        )
        if fork is None:
            break
        rows = Checkpoint.objects.filter(run_id=fork.run_id, seq__lte=fork.seq).defer(*HEAVY).order_by("-seq")
        sections.append(InheritedSection(fork.run, fork, [live.checkpoint_message(c) for c in rows[:tail]]))
        fork_id = fork.run.parent_checkpoint_id
    return sections


def forks(run: Run, limit: int = FORKS_SHOWN) -> list[Run]:
    """The first `limit` runs forked from this run's checkpoints, oldest first."""
    # EXISTS per fork run, not a join from the run's checkpoints: SQLite walks the join from
    # the checkpoints' run_id index, 20 ms for a 100,000-checkpoint run with no fork at all.
    of_this_run = Checkpoint.objects.filter(pk=OuterRef("parent_checkpoint_id"), run=run)
    qs = Run.objects.filter(parent_checkpoint__isnull=False).filter(Exists(of_this_run))
    qs = qs.select_related("parent_checkpoint")
    qs = qs.defer(*RUN_HEAVY, *(f"parent_checkpoint__{f}" for f in HEAVY))
    return list(qs.order_by("created_at")[:limit])
