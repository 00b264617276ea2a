from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import Run
from runs.transfer import export_run

from ._ids import quiet_broken_pipe, resolve


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Print a run and all its checkpoints as one JSON document (for importrun)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", help="run id, or its first 6+ hex digits")

    def handle(self, *args: Any, **opts: Any) -> None:
        run_id = resolve(Run.objects.all(), opts["run"], "run", "run")
        try:
            run = Run.objects.get(pk=run_id)
        except Run.DoesNotExist:
            raise CommandError(f"unknown run {opts['run']!r}") from None
        with quiet_broken_pipe():
            self.stdout.write(json.dumps(export_run(run), ensure_ascii=False))
