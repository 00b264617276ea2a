from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs import fork_preview
from runs.inputs import InputError, parse_json_object, workflow_named
from runs.models import Checkpoint, fork_run

from ._follow import report
from ._ids import one_line, resolve
from ._sweep import read_variants, sweep


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = (
        "Queue a new run from a checkpoint, optionally with an edited output event or store values. "
        "Refused when the workflow's events changed incompatibly since the checkpoint's run; "
        "--preview shows what the fork would run (changed steps, schema changes) and writes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("checkpoint", help="checkpoint id, or its first 6+ hex digits")
        parser.add_argument("--output-event", default=None, help='JSON: the event\'s fields, or {"type", "data"}')
        parser.add_argument("--store", default=None, help="JSON object of store values to override")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=None)
        parser.add_argument(
            "--variants",
            default=None,
            metavar="FILE",
            help="a sweep: JSON Lines, one edit object per line ({output_event?, store?}), '-' for stdin; "
            "prints the experiment id and its runs' ids (with --wait, the matrix)",
        )
        parser.add_argument("--name", default="", help="with --variants: the experiment's name")
        parser.add_argument(
            "--preview", action="store_true", help="print what the fork would run with this code; fork nothing"
        )
        parser.add_argument("--json", action="store_true", help="with --preview: the API's JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["json"] and not opts["preview"]:
            raise CommandError("--json goes with --preview (a fork prints the new run's id)")
        if opts["preview"]:
            if opts["variants"] is not None:
                raise CommandError("--preview shows one fork: drop --variants")
            self._preview(opts)
            return
        if opts["variants"] is not None:
            if opts["output_event"] or opts["store"]:
                raise CommandError("--variants takes the edits from its file: drop --output-event and --store")
            checkpoint_id = resolve(Checkpoint.objects.all(), opts["checkpoint"], "checkpoint", "checkpoint")
            sweep(self, checkpoint_id, read_variants(opts["variants"]), opts)
            return
        try:
            edit = parse_json_object(opts["output_event"], "--output-event") if opts["output_event"] else None
            store = parse_json_object(opts["store"], "--store") if opts["store"] else None
            checkpoint_id = resolve(Checkpoint.objects.all(), opts["checkpoint"], "checkpoint", "checkpoint")
            run = fork_run(checkpoint_id, output_event=edit, store=store)
        except InputError as exc:
            raise CommandError(one_line(str(exc))) from None
        except json.JSONDecodeError as exc:  # pragma: no cover - parse_json_object covers it
            raise CommandError(str(exc)) from None
        report(self, run, opts["wait"], opts["timeout"])

    def _preview(self, opts: dict[str, Any]) -> None:
        checkpoint_id = resolve(Checkpoint.objects.all(), opts["checkpoint"], "checkpoint", "checkpoint")
        row = Checkpoint.objects.select_related("run").get(pk=checkpoint_id)
        try:
            found = fork_preview.preview(row, workflow_named(row.workflow))
        except InputError as exc:
            raise CommandError(one_line(str(exc))) from None
        if opts["json"]:
            self.stdout.write(json.dumps(found.as_json(), indent=2))
            return
        self.stdout.write(render_text(found))


def render_text(p: fork_preview.ForkPreview) -> str:
    """The preview for a terminal: versions, what will run, errors first, then each diff."""
    lines = [f"fork of checkpoint {p.checkpoint_id} ({p.workflow})"]
    old = p.checkpoint_code_version
    lines.append(f"  code of the checkpoint's run: {old[:12] if old else 'not recorded (changed steps unknown)'}")
    changed = " (changed)" if p.code_changed else " (the same)" if p.code_changed is False else ""
    lines.append(f"  code now:                     {p.code_version[:12]}{changed}")
    lines.append(f"  will run next:                {', '.join(p.will_run) or 'no step (the run ends)'}")
    if not p.compatible:
        lines.append("REFUSED: the checkpoint's events may not load with the code now:")
        lines.extend(f"  error: {c.event}: {c.change}" for c in p.errors)
        if p.load_error:
            lines.append(f"  error: {p.load_error}")
    lines.extend(f"  note: {c.event}: {c.change}" for c in p.notes)
    if p.changed_steps is not None:
        lines.append(f"changed steps: {', '.join(s.step for s in p.changed_steps) or 'none'}")
        for s in p.changed_steps:
            lines.append(f"--- step {s.step} ({s.status})")
            lines.append(s.diff.rstrip("\n") or "(same source; the schemas of its events changed)")
    return "\n".join(lines)
