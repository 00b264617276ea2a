"""`fork CKPT --variants FILE [--wait]`: a sweep from the command line, and its matrix."""

from __future__ import annotations

import sys
import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from runs.experiments import VariantError, create_sweep, matrix, parse_edit_lines
from runs.inputs import InputError, reject_nul
from runs.models import RunStatus
from runs.templatetags.wfdash import format_ms

from ._ids import one_line

MAX_FILE = 1024 * 1024  # as the API's bodies


def read_variants(path: str) -> list[tuple[str, Any]]:
    """("line N", edit) for each line of `path` ('-' for stdin), refused naming the line."""
    try:
        if path == "-":
            text = sys.stdin.read(MAX_FILE + 1)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_FILE + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"--variants: cannot read {path}: {exc}") from None
    if len(text) > MAX_FILE:
        raise CommandError(f"--variants: {path} is larger than {MAX_FILE} bytes")
    try:
        lines = parse_edit_lines(text, "--variants")
        for where, value in lines:
            reject_nul(value, where)
    except InputError as exc:
        raise CommandError(one_line(str(exc))) from None
    if not lines:
        raise CommandError(f"--variants: {path} holds no edits (one JSON object per line)")
    return lines


def sweep(command: BaseCommand, checkpoint_id: uuid.UUID, lines: list[tuple[str, Any]], opts: dict[str, Any]) -> None:
    """Create the experiment; print its id and the runs' ids, or with --wait the finished matrix
    (exit 1 unless every variant succeeded)."""
    try:
        experiment = create_sweep(checkpoint_id, variants=[value for _, value in lines], name=opts["name"])
    except VariantError as exc:
        raise CommandError(one_line(f"{lines[exc.index][0]}: {exc} ({exc.field})")) from None
    except InputError as exc:
        raise CommandError(one_line(str(exc))) from None
    command.stdout.write(f"experiment {experiment.id}")
    for run_id in experiment.runs.order_by("variant").values_list("id", flat=True):
        command.stdout.write(str(run_id))
    command.stdout.flush()
    if not opts["wait"]:
        return
    deadline = None if opts["timeout"] is None else time.monotonic() + opts["timeout"]
    while True:
        m = matrix(experiment)
        if m.finished:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise CommandError(f"experiment {experiment.id}: {m.counts} after {opts['timeout']} s")
        time.sleep(0.1)
    command.stdout.write("variant\tstatus\tduration\ttokens\tedits\tresult\tvs base")
    for row in m.rows:
        diff = "same" if row.changes == [] else f"{len(row.changes or [])} changes" if row.changes else "-"
        duration = format_ms(row.duration_ms) if row.duration_ms is not None else "-"
        cells = (row.run.variant, row.run.status, duration, row.tokens, row.edits_summary, row.result_preview, diff)
        command.stdout.write("\t".join(str(c) for c in cells))
    failed = sum(n for status, n in m.counts.items() if status != RunStatus.SUCCEEDED)
    if failed:
        raise CommandError(f"{failed} of {len(m.rows)} variants did not succeed")
