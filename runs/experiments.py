"""Sweeps: K variants of one checkpoint forked in one action, and the experiment's matrix.

A variant is exactly what one fork takes (`output_event` and/or `store` edits). Every
variant is validated through the fork's own path (`inputs.fork_edits`, the workflow's
registry) before anything is written; then the experiment, its K runs and their
activity are inserted in one transaction. A grid (one or two fields, each with a list of
values) expands to the cartesian product of its values, each applied to the
checkpoint's own output event, so unchanged fields keep their values.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Max, TextField
from django.db.models.functions import Cast, Length

from wfdash.api_schemas import MAX_VARIANTS

from . import inputs
from .compare import MAX_CHANGES, Change, changes
from .inputs import InputError
from .models import TERMINAL, Checkpoint, Experiment, Run, RunStatus, fork_point, fork_runs

MAX_GRID_FIELDS = 2
EDIT_KEYS = ("output_event", "store")
# A result whose JSON is longer than this is neither sent whole in the matrix nor diffed there
# (the run's own page and API have it): a poll of 100 variants stays a few megabytes at most.
RESULT_INLINE = 64 * 1024
PREVIEW_CHARS = 160


class VariantError(InputError):
    """One variant is wrong: `index` is which (0-based); `field` is where, e.g.
    `variants[3].output_event.topic`."""

    def __init__(self, message: str, index: int, field: str) -> None:
        super().__init__(message, field)
        self.index = index


# -- input: a list of edits, or a grid ------------------------------------------


def parse_edit_lines(text: str, what: str = "the variants") -> list[tuple[str, Any]]:
    """(where, value) for each edit in `text`, where is "line 3" (JSON Lines: one object a line,
    blank lines skipped) or "item 3" (a JSON array). Unreadable JSON is refused naming its line."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            values = inputs.loads(stripped)
        except ValueError as exc:  # JSONDecodeError, or NaN/Infinity
            raise InputError(f"{what}: not a valid JSON array: {exc}", "variants") from None
        except RecursionError:
            raise InputError(f"{what} are nested too deeply", "variants") from None
        if not isinstance(values, list):
            raise InputError(f"{what} must be a JSON array or JSON Lines", "variants")
        return [(f"item {i + 1}", v) for i, v in enumerate(values)]
    found: list[tuple[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            found.append((f"line {number}", inputs.loads(line)))
        except ValueError as exc:
            raise InputError(f"line {number}: not valid JSON: {exc}", "variants") from None
        except RecursionError:
            raise InputError(f"line {number}: nested too deeply", "variants") from None
        if len(found) > MAX_VARIANTS:
            raise InputError(f"at most {MAX_VARIANTS} variants (line {number} is one too many)", "variants")
    return found


def expand_grid(grid: Any, base_output: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The variants of a grid `{"output_event.topic": [...], "store.temperature": [...]}`: one or
    two fields, every combination of their values, in order (the last field varies fastest).
    `output_event.<field>` values replace that field of the checkpoint's output event
    (`base_output`, its data); `store.<key>` values override that store key."""
    if not isinstance(grid, dict) or not 1 <= len(grid) <= MAX_GRID_FIELDS:
        raise InputError('a grid varies one or two fields, e.g. {"output_event.topic": ["cats", "atoms"]}', "grid")
    axes: list[tuple[str, str, list[Any]]] = []
    for path, values in grid.items():
        section, _, name = str(path).partition(".")
        where = f"grid.{path}"
        if section not in EDIT_KEYS or not name:
            raise InputError(f"grid field {str(path)[:100]!r} must be output_event.<field> or store.<key>", where)
        if section == "output_event" and base_output is None:
            raise InputError("this checkpoint has no output event to vary; vary store keys", where)
        if not isinstance(values, list) or not values:
            raise InputError(f"the values of {str(path)[:100]!r} must be a non-empty list", where)
        axes.append((section, name, values))
    total = math.prod(len(values) for _, _, values in axes)
    if total > MAX_VARIANTS:
        raise InputError(f"the grid makes {total} variants; at most {MAX_VARIANTS}", "grid")
    variants: list[dict[str, Any]] = []
    for combination in itertools.product(*(values for _, _, values in axes)):
        variant: dict[str, Any] = {}
        for (section, name, _), value in zip(axes, combination, strict=True):
            if section == "output_event" and section not in variant:
                variant[section] = dict(base_output or {})
            variant.setdefault(section, {})[name] = value
        variants.append(variant)
    return variants


def validate_variants(workflow: Any, checkpoint: Any, variants: Any) -> list[dict[str, Any]]:
    """Each variant's validated edits, as `fork_run` would store them; the first bad variant
    raises VariantError naming its index and field."""
    if not isinstance(variants, list):
        raise InputError("variants must be a list of edit objects", "variants")
    if not 1 <= len(variants) <= MAX_VARIANTS:
        raise InputError(f"a sweep has 1 to {MAX_VARIANTS} variants, not {len(variants)}", "variants")
    validated = []
    for index, variant in enumerate(variants):
        at = f"variants[{index}]"
        if not isinstance(variant, dict):
            raise VariantError(f"variant {index}: must be an object with output_event and/or store", index, at)
        unknown = sorted(str(k) for k in variant if k not in EDIT_KEYS)
        if unknown:
            message = f"variant {index}: unknown key {unknown[0][:100]!r} (a variant has output_event and/or store)"
            raise VariantError(message, index, f"{at}.{unknown[0][:100]}")
        try:
            validated.append(inputs.fork_edits(workflow, checkpoint, variant.get("output_event"), variant.get("store")))
        except InputError as exc:
            raise VariantError(f"variant {index}: {exc}", index, f"{at}.{exc.field or 'output_event'}") from None
    return validated


def create_sweep(
    checkpoint_id: Any,
    *,
    variants: Any = None,
    grid: Any = None,
    user: Any = None,
    name: str = "",
) -> Experiment:
    """An experiment of K forks of one checkpoint, from a list of edits or a grid: all of them
    validated first, then written in one transaction (all or nothing)."""
    if (variants is None) == (grid is None):
        raise InputError('give either "variants" (a list of edits) or "grid"', "variants")
    if len(name) > 200:
        raise InputError("the name is longer than 200 characters", "name")
    inputs.reject_nul(name, "the name")
    row, workflow, decoded = fork_point(checkpoint_id)
    if grid is not None:
        inputs.reject_nul(grid, "the grid")
        base = row.output_event.get("data") if isinstance(row.output_event, dict) else None
        variants = expand_grid(grid, base if isinstance(base, dict) else None)
    edits = validate_variants(workflow, decoded, variants)
    who = user if user is not None and getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        experiment = Experiment.objects.create(
            name=name,
            checkpoint=row,
            base_run=row.run,
            variants=variants,
            grid=grid,
            created_by=who,
            variant_count=len(edits),
        )
        fork_runs(row, edits, who, experiment=experiment)
    return experiment


# -- output: the matrix ----------------------------------------------------------


@dataclass
class VariantRow:
    run: Run
    edits_summary: str
    result: Any = None
    result_loaded: bool = False
    """False when the run has no result yet, or its JSON is over RESULT_INLINE characters."""
    result_size: int = 0
    changes: list[Change] | None = None
    """Against the base run's outcome, once the variant finished (None before, or if too large)."""
    more_changes: int = 0

    @property
    def duration_ms(self) -> float | None:
        duration = self.run.duration
        return None if duration is None else round(duration.total_seconds() * 1000, 1)

    @property
    def tokens(self) -> int:
        return self.run.total_tokens

    @property
    def result_preview(self) -> str:
        if self.run.status == RunStatus.FAILED:
            return self.run.error[:PREVIEW_CHARS]
        if not self.result_loaded:
            return f"({self.result_size:,} characters)" if self.result_size else ""
        text = json.dumps(self.result, ensure_ascii=False, sort_keys=True)
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


@dataclass
class Matrix:
    experiment: Experiment
    base_run: Run
    rows: list[VariantRow]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return all(r.run.status in TERMINAL for r in self.rows)

    @property
    def version(self) -> str:
        """Changes whenever a variant or the base run changes (see `version`)."""
        return _version(max((r.run.updated_at for r in self.rows), default=None), self.base_run.updated_at)


def version(experiment: Experiment) -> str:
    """The matrix's version, in one query: a poll that finds it unchanged need not read the rows."""
    found = Run.objects.filter(experiment=experiment).aggregate(last=Max("updated_at"))
    base = Run.objects.filter(pk=experiment.base_run_id).values_list("updated_at", flat=True).first()
    return _version(found["last"], base)


def _version(*changed: Any) -> str:
    """Microseconds since the epoch of each time, joined: safe in a URL as it is."""
    return "-".join(str(round(t.timestamp() * 1_000_000)) if t else "0" for t in changed)


def _with_sizes(qs: Any) -> Any:
    """Runs with `result_size` (the result's JSON length, measured by the database) and without
    their heavy columns: a large result never leaves the database for the matrix."""
    return qs.defer("start_event", "result", "pending_input", "error_traceback").annotate(
        result_size=Length(Cast("result", output_field=TextField()))
    )


def _results(runs: list[Run]) -> dict[Any, Any]:
    small = [r.pk for r in runs if r.result_size is not None and r.result_size <= RESULT_INLINE]  # type: ignore[attr-defined]
    return dict(Run.objects.filter(pk__in=small).values_list("pk", "result")) if small else {}


# A finished variant's diff is computed once per process: the page polls every second or two,
# and DeepDiff of 100 rows is most of a poll's cost. Keyed by both runs' last change.
_DIFFS: OrderedDict[tuple[Any, ...], list[Change]] = OrderedDict()
DIFFS_KEPT = 5000


def _changes(base: Run, base_outcome: Any, run: Run, outcome: Any) -> list[Change]:
    if outcome == base_outcome:
        return []
    key = (base.pk, base.updated_at, run.pk, run.updated_at)
    found = _DIFFS.get(key)
    if found is None:
        found = _DIFFS[key] = changes(base_outcome, outcome)
        if len(_DIFFS) > DIFFS_KEPT:
            _DIFFS.popitem(last=False)
    return found


def _diffable(run: Run, results: dict[Any, Any]) -> bool:
    """Its result is loaded, or it has none (a result too large to send is not diffed either)."""
    return run.pk in results or run.result_size is None  # type: ignore[attr-defined]


def _outcome(run: Run, result: Any) -> dict[str, Any]:
    if run.status == RunStatus.FAILED:
        return {"status": run.status, "error": run.error}
    return {"status": run.status, "result": result}


def matrix(experiment: Experiment) -> Matrix:
    """The experiment's variants in order with status, result, duration, tokens and each result's
    diff against the base run's (K <= MAX_VARIANTS rows: three queries, whatever the results' sizes)."""
    runs = list(_with_sizes(experiment.runs.all()).order_by("variant"))
    base = _with_sizes(Run.objects.filter(pk=experiment.base_run_id)).get()
    results = _results([*runs, base])
    base_outcome = _outcome(base, results.get(base.pk))
    base_output = Checkpoint.objects.filter(pk=experiment.checkpoint_id).values_list("output_event", flat=True).first()
    rows: list[VariantRow] = []
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.status] = counts.get(run.status, 0) + 1
        row = VariantRow(
            run=run,
            edits_summary=summarize_edits(run.fork_edits, base_output),
            result=results.get(run.pk),
            result_loaded=run.pk in results,
            result_size=run.result_size or 0,  # type: ignore[attr-defined]
        )
        if run.status in TERMINAL and _diffable(run, results) and _diffable(base, results):
            found = _changes(base, base_outcome, run, _outcome(run, row.result))
            row.changes, row.more_changes = found[:MAX_CHANGES], max(0, len(found) - MAX_CHANGES)
        rows.append(row)
    return Matrix(experiment=experiment, base_run=base, rows=rows, counts=counts)


def summarize_edits(edits: dict[str, Any] | None, base_output: dict[str, Any] | None) -> str:
    """A variant's edits in a line: the output event's fields that differ from the checkpoint's
    (`topic="cats"`), another event type if any, and the store keys set (`store.t=0.9`)."""
    parts: list[str] = []
    edits = edits or {}
    event = edits.get("output_event")
    if isinstance(event, dict):
        data = event.get("data")
        if not isinstance(data, dict):
            data = {}
        same_type = base_output is not None and event.get("type") == base_output.get("type")
        base_data = (base_output or {}).get("data") if same_type else None
        if not same_type:
            parts.append(f"type={event.get('type')}")
        for key, value in data.items():
            if not isinstance(base_data, dict) or base_data.get(key, _MISSING) != value:
                parts.append(f"{key}={_compact(value)}")
        if isinstance(base_data, dict):
            parts.extend(f"-{key}" for key in base_data if key not in data)
        if not parts:
            parts.append("output event unchanged")
    for key, value in (edits.get("store") or {}).items():
        parts.append(f"store.{key}={_compact(value)}")
    return ", ".join(parts) or "no edits"


_MISSING = object()


def _compact(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= 60 else text[:59] + "…"
