from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from runs.retention import collect_blobs, prune

_AGE = re.compile(r"^(\d{1,6})([hdw])$")


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Delete finished runs older than --older-than, in batches; never an unfinished run or one a fork needs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", required=True, help="age like 12h, 30d or 8w")
        parser.add_argument("--keep-failed", action="store_true", help="keep failed runs whatever their age")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        parser.add_argument("--gc-blobs", action="store_true", help="then delete blobs no checkpoint refers to")

    def handle(self, *args: Any, **opts: Any) -> None:
        m = _AGE.match(opts["older_than"])
        if not m:
            raise CommandError(f"--older-than must look like 12h, 30d or 8w, got {opts['older_than']!r}")
        if opts["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        n, unit = int(m.group(1)), m.group(2)
        age = {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
        count = prune(
            timezone.now() - age,
            keep_failed=opts["keep_failed"],
            batch_size=opts["batch_size"],
            dry_run=opts["dry_run"],
        )
        self.stdout.write(f"{'would delete' if opts['dry_run'] else 'deleted'} {count} runs")
        if opts["gc_blobs"] and not opts["dry_run"]:
            self.stdout.write(f"deleted {collect_blobs()} unreferenced blobs")
