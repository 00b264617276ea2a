from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.inputs import InputError, parse_json_object
from runs.models import start_run

from ._follow import report
from ._ids import one_line


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Queue a run; print its id, and with --wait its result as JSON (exit 1 if it fails)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workflow", help="registered workflow name")
        parser.add_argument("--input", default="{}", help="start event fields as a JSON object")
        parser.add_argument("--wait", action="store_true", help="follow the run until it ends")
        parser.add_argument("--timeout", type=float, default=None, help="with --wait: give up after N seconds")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            run = start_run(opts["workflow"], parse_json_object(opts["input"], "--input"))
        except InputError as exc:
            raise CommandError(one_line(str(exc))) from None
        report(self, run, opts["wait"], opts["timeout"])
