from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import Run
from runs.transfer import export_run


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Print a run and all its checkpoints as one JSON document (for importrun)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", help="run id")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            run = Run.objects.get(pk=uuid.UUID(opts["run"]))
        except (ValueError, Run.DoesNotExist):
            raise CommandError(f"unknown run {opts['run']!r}") from None
        self.stdout.write(json.dumps(export_run(run), ensure_ascii=False))
