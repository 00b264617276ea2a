from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.inputs import InputError
from runs.transfer import import_run, read_export


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Import a run exported by exportrun; refuses unknown workflows and event types, writes nothing then."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the JSON document")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            raw = Path(opts["file"]).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {opts['file']}: {exc.strerror}") from None
        try:
            run = import_run(read_export(raw))
        except InputError as exc:
            raise CommandError(f"{opts['file']}: {exc}") from None
        self.stdout.write(str(run.id))
