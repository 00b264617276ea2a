"""Filters and keyset pagination for the runs list and the checkpoint explorer.

Shared by the pages and the API; bad values raise FilterError with one line.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast, Substr
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import Checkpoint, CodeVersion, Run, RunStatus

PAGE_SIZE = 50
_RELATIVE = re.compile(r"^(\d{1,5})([mhd])$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


class FilterError(ValueError):
    """A filter value is malformed; the message says which and why."""


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise FilterError(f"{what} must be a UUID, got {value[:60]!r}") from None


MIN_PREFIX = 6
_HEX = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},32}}$")
# How many matches an ambiguous prefix reports exactly; past it, "more than".
AMBIGUOUS_SHOWN = 10


def id_range(value: str, what: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The smallest and largest UUID starting with `value`: a whole id (with or without dashes)
    or a prefix of at least MIN_PREFIX hex digits."""
    digits = value.strip().strip("\"'").lower().replace("-", "")
    if not _HEX.match(digits):
        raise FilterError(
            f"{what} must be a UUID or an id prefix of at least {MIN_PREFIX} hex digits, got {value[:60]!r}"
        )
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def id_prefix_q(value: str, what: str, field: str = "id") -> Q:
    """Rows whose `field` starts with the id prefix `value`: a range on the field's index.

    Django stores a UUID as 32 lowercase hex characters on SQLite and as `uuid` on
    PostgreSQL; both order like the hex string, so the range is exactly the prefix.
    """
    low, high = id_range(value, what)
    return Q(**{f"{field}__gte": low, f"{field}__lte": high})


def resolve_id(qs: QuerySet[Any], value: str, what: str, noun: str) -> uuid.UUID:
    """The one id of `qs` that `value` (a whole id or a prefix) names; FilterError when none or
    several do. A whole id is returned without a query: it names at most one row."""
    low, high = id_range(value, what)
    if low == high:
        return low
    found = list(qs.filter(pk__gte=low, pk__lte=high).order_by().values_list("pk", flat=True)[: AMBIGUOUS_SHOWN + 1])
    shown = value.strip()[:36]
    if not found:
        raise FilterError(f"no {noun} has an id starting with {shown!r}")
    if len(found) > 1:
        many = f"more than {AMBIGUOUS_SHOWN}" if len(found) > AMBIGUOUS_SHOWN else str(len(found))
        raise FilterError(f"{what} id prefix {shown!r} matches {many} {noun}s; type more characters")
    return uuid.UUID(str(found[0]))


_DIGEST = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},64}}$")


def code_version(value: str) -> str:
    """The one code version digest `value` (a whole digest or its first 6+ hex digits) names."""
    digits = value.strip().lower()
    if not _DIGEST.match(digits):
        raise FilterError(
            f"code_version must be a code version digest or its first {MIN_PREFIX}+ hex digits, got {value[:70]!r}"
        )
    found = list(
        CodeVersion.objects.filter(digest__startswith=digits).values_list("digest", flat=True)[: AMBIGUOUS_SHOWN + 1]
    )
    if not found:
        raise FilterError(f"code_version {digits!r} matches no recorded code version")
    if len(found) > 1:
        many = f"more than {AMBIGUOUS_SHOWN}" if len(found) > AMBIGUOUS_SHOWN else str(len(found))
        raise FilterError(f"code_version prefix {digits!r} matches {many} code versions; type more characters")
    return found[0]


def name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise FilterError(f"{what} must be a name of letters, digits and _.:- (at most 100), got {value[:60]!r}")
    return value


def parse_time(value: str) -> datetime | None:
    """An ISO date-time a database can compare with, in UTC; None when it is not one
    (malformed, impossible like 2026-02-30, an offset of +24:00, or out of range)."""
    if not value or len(value) > 40:
        return None
    try:
        parsed = parse_datetime(value)
        if parsed is None:
            return None
        if parsed.tzinfo is None:
            parsed = timezone.make_aware(parsed, UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return parsed if 1 <= parsed.year <= 9998 else None


def parse_since(value: str) -> datetime:
    m = _RELATIVE.match(value)
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        try:
            return timezone.now() - timedelta(**{unit: int(m.group(1))})
        except OverflowError:
            raise FilterError(f"since reaches back too far: {value[:60]!r}") from None
    parsed = parse_time(value)
    if parsed is None:
        raise FilterError(f"since must be like 30m, 24h, 7d or an ISO date-time, got {value[:60]!r}")
    return parsed


def encode_cursor(created_at: datetime, pk: Any) -> str:
    return f"{created_at.isoformat()}_{pk}"


def _cursor(value: str) -> tuple[datetime, uuid.UUID]:
    stamp, _, pk = value.rpartition("_")
    when = parse_time(stamp)
    if when is None:
        raise FilterError("the page cursor is malformed")
    return when, _uuid(pk, "the page cursor")


@dataclass
class Page:
    rows: list[Any]
    next_cursor: str | None


def paginate(qs: QuerySet[Any], before: str | None, size: int = PAGE_SIZE) -> Page:
    """Newest first, keyset on (created_at, id): constant cost at any depth."""
    if before:
        when, pk = _cursor(before)
        # The plain range first lets the database walk the (..., created_at) index; the
        # OR alone is not sargable and made deep pages scan from the top.
        qs = qs.filter(created_at__lte=when).filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=pk))
    rows = list(qs.order_by("-created_at", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, encode_cursor(rows[-1].created_at, rows[-1].pk) if more and rows else None)


def run_filters(params: Any) -> tuple[QuerySet[Run], dict[str, str]]:
    """Runs matching `workflow`, `status`, `parent` (run id), `code_version` and `since` in `params`."""
    # Lists read neither the runs' large values nor their fork point's events and state.
    qs = Run.objects.select_related("parent_checkpoint").defer(
        "start_event",
        "result",
        "pending_input",
        "error_traceback",
        "parent_checkpoint__input_event",
        "parent_checkpoint__output_event",
        "parent_checkpoint__state",
    )
    active: dict[str, str] = {}
    if workflow := params.get("workflow", "").strip():
        qs = qs.filter(workflow=name(workflow, "workflow"))
        active["workflow"] = workflow
    if status := params.get("status", "").strip():
        if status not in RunStatus.values:
            raise FilterError(f"status must be one of {', '.join(RunStatus.values)}, got {status[:40]!r}")
        qs = qs.filter(status=status)
        active["status"] = status
    if parent := params.get("parent", "").strip():
        qs = qs.filter(parent_checkpoint__run_id=resolve_id(Run.objects.all(), parent, "parent", "run"))
        active["parent"] = parent
    if version := params.get("code_version", "").strip():
        qs = qs.filter(code_version_id=code_version(version))
        active["code_version"] = version
    if since := params.get("since", "").strip():
        qs = qs.filter(created_at__gte=parse_since(since))
        active["since"] = since
    return qs, active


PREVIEW_CHARS = 200
PREVIEWED = ("start_event", "result")


def with_previews(qs: QuerySet[Run]) -> QuerySet[Run]:
    """Runs annotated with `<field>_head`: the first PREVIEW_CHARS + 1 characters of each
    PREVIEWED field's JSON, cut by the database so a 30 MB result never leaves it."""
    heads = {
        f"{field}_head": Substr(Cast(field, output_field=TextField()), 1, PREVIEW_CHARS + 1) for field in PREVIEWED
    }
    return qs.defer(*PREVIEWED).annotate(**heads)


CHECKPOINT_FILTERS = {
    "workflow": "workflow",
    "step": "last_completed_step",
    "input_event_type": "input_event_type",
    "output_event_type": "output_event_type",
}


# What the explorer shows and the API accepts for "no output event" (stored as "").
NO_OUTPUT = "None"


def checkpoint_filters(params: Any) -> tuple[QuerySet[Checkpoint], dict[str, str]]:
    """Checkpoints matching every given filter (AND): workflow, run (an id or a prefix), step,
    input/output event type (`output_event_type=None`: steps that returned no event), the code
    version of their run (`code_version`, a digest or its first 6+ hex digits), and `q`, words
    inside their events and store values (runs/search.py)."""
    qs = Checkpoint.listing().defer("input_event", "output_event", "state")
    active: dict[str, str] = {}
    if run := params.get("run", "").strip():
        qs = qs.filter(run_id=resolve_id(Run.objects.all(), run, "run", "run"))
        active["run"] = run
    if version := params.get("code_version", "").strip():
        # The runs' ids first (by the run_code_version_idx index), then their checkpoints.
        qs = qs.filter(run_id__in=Run.objects.filter(code_version_id=code_version(version)).values("id"))
        active["code_version"] = version
    for param, field in CHECKPOINT_FILTERS.items():
        if value := params.get(param, "").strip():
            name(value, param)
            stored = "" if param == "output_event_type" and value == NO_OUTPUT else value
            qs = qs.filter(**{field: stored})
            active[param] = value
    if since := params.get("since", "").strip():
        qs = qs.filter(created_at__gte=parse_since(since))
        active["since"] = since
    # Words inside events and store values (runs/search.py): last, as it may query the index.
    from . import search

    if found := search.parse(params.get("q")):
        qs = search.matching(qs, found)
        active["q"] = found.text
    return qs, active


# Counts per step and event type read at most this many of the newest matching checkpoints:
# a GROUP BY over a million-row table on every page load would take seconds.
COUNT_CAP = 10_000


@dataclass
class Counts:
    steps: list[tuple[str, int]]
    input_types: list[tuple[str, int]]
    output_types: list[tuple[str, int]]
    total: int
    capped: bool  # True: counted over the newest COUNT_CAP matches only


def checkpoint_counts(qs: QuerySet[Checkpoint], cap: int = COUNT_CAP) -> Counts:
    """Matches per step, input type and output type (no output as NO_OUTPUT), over at most
    `cap` of the newest rows of `qs`: one bounded query, grouped by the database."""
    columns = ("last_completed_step", "input_event_type", "output_event_type")
    newest = qs.order_by("-created_at", "-id").values_list(*columns)[:cap]
    inner, params = newest.query.sql_with_params()
    with connections[qs.db].cursor() as cursor:
        outer = ", ".join(columns)
        cursor.execute(f"SELECT {outer}, COUNT(*) FROM ({inner}) newest GROUP BY {outer}", params)  # noqa: S608
        groups = cursor.fetchall()
    tallies: list[Counter[str]] = [Counter(), Counter(), Counter()]
    for *values, n in groups:
        for tally, value in zip(tallies, values, strict=True):
            tally[value or NO_OUTPUT] += n
    total = sum(n for *_, n in groups)

    def ranked(tally: Counter[str]) -> list[tuple[str, int]]:
        return sorted(tally.items(), key=lambda item: (-item[1], item[0]))

    steps, input_types, output_types = (ranked(t) for t in tallies)
    return Counts(steps, input_types, output_types, total=total, capped=total >= cap)


@dataclass
class Suggestions:
    workflows: list[str]
    steps: list[str]
    event_types: list[str]


def suggestions() -> Suggestions:
    """What the explorer's boxes autocomplete: names the registered workflows know (no DISTINCT
    over the table), with NO_OUTPUT among the event types."""
    from . import registry

    steps: set[str] = set()
    types: set[str] = set()
    for workflow_name in registry.names():
        try:
            workflow = registry.get_workflow(workflow_name)
        except Exception:  # a misconfigured entry must not break the page
            continue
        steps.update(workflow.steps)
        types.update(workflow.event_registry.names())
    return Suggestions(registry.names(), sorted(steps), [*sorted(types), NO_OUTPUT])
