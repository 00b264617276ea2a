from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from runs import embedded


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Serve the app with daphne and execute runs on its event loop, in one process (what `serve` runs)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--concurrency", type=int, default=None, help="runs executed at once (default 50)")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["concurrency"] is not None and opts["concurrency"] < 1:
            self.stderr.write("--concurrency must be at least 1")
            raise SystemExit(1)
        connections.close_all()  # this thread serves no queries from here on
        status = embedded.serve(opts["host"], opts["port"], concurrency=opts["concurrency"])
        if status:
            raise SystemExit(status)
