from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs import filters, search
from runs.models import Checkpoint, Run

from ._ids import quiet_broken_pipe


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "List checkpoints matching every given filter (AND), oldest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--run", default=None, help="run id, or its first 6+ hex digits")
        parser.add_argument("--workflow", default=None)
        parser.add_argument("--step", default=None, help="last completed step")
        parser.add_argument("--input-event-type", default=None)
        parser.add_argument("--output-event-type", default=None, help="None: steps that returned no event")
        parser.add_argument(
            "-q", "--q", default=None, help="words inside events and store values (all of them; 3+ letters: starts)"
        )
        parser.add_argument("--limit", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="JSON Lines")

    def handle(self, *args: Any, **opts: Any) -> None:
        qs = Checkpoint.listing()
        if opts["run"]:
            try:
                qs = qs.filter(run_id=filters.resolve_id(Run.objects.all(), opts["run"], "--run", "run"))
            except filters.FilterError as exc:
                message = str(exc).replace("--run must be a UUID", "--run must be a run id (UUID)")
                raise CommandError(message) from None
        if opts["limit"] is not None and opts["limit"] < 0:
            raise CommandError("--limit must be 0 or more")
        for option, field in (
            ("workflow", "workflow"),
            ("step", "last_completed_step"),
            ("input_event_type", "input_event_type"),
            ("output_event_type", "output_event_type"),
        ):
            if value := opts[option]:
                if option == "output_event_type" and value == filters.NO_OUTPUT:
                    value = ""
                qs = qs.filter(**{field: value})
        try:
            if found := search.parse(opts["q"]):
                qs = search.matching(qs, found)
        except filters.FilterError as exc:
            raise CommandError(str(exc).replace("q ", "--q ", 1)) from None
        qs = qs.order_by("created_at", "run_id", "seq").only(
            "id",
            "run_id",
            "seq",
            "workflow",
            "last_completed_step",
            "input_event_type",
            "output_event_type",
            "created_at",
            "duration_ms",
        )
        if opts["limit"] is not None:
            qs = qs[: opts["limit"]]
        with quiet_broken_pipe():
            self._print(qs, opts["json"])

    def _print(self, qs: Any, as_json: bool) -> None:
        for c in qs.iterator(chunk_size=2000):
            row = {
                "id": str(c.id),
                "run_id": str(c.run_id),
                "seq": c.seq,
                "workflow": c.workflow,
                "last_completed_step": c.last_completed_step,
                "input_event_type": c.input_event_type,
                "output_event_type": c.output_event_type,
                "created_at": c.created_at.isoformat(),
                "duration_ms": round(c.duration_ms, 3),
            }
            if as_json:
                self.stdout.write(json.dumps(row))
            else:
                self.stdout.write(
                    f"{row['id']}  {row['run_id']}  #{c.seq:<4} {c.last_completed_step:<24} "
                    f"{c.input_event_type} -> {c.output_event_type or '-'}  {row['created_at']}"
                )
