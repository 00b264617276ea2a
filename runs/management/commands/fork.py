from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.inputs import InputError, parse_json_object
from runs.models import Checkpoint, fork_run

from ._follow import report
from ._ids import one_line, resolve
from ._sweep import read_variants, sweep


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Queue a new run from a checkpoint, optionally with an edited output event or store values."

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

    def handle(self, *args: Any, **opts: Any) -> None:
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
