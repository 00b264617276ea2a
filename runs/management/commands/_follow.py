"""Shared by startrun and fork: print the run id, optionally wait and print the outcome."""

from __future__ import annotations

import json
import time

from django.core.management.base import BaseCommand, CommandError

from runs.models import Run, RunStatus

from ._ids import one_line


def report(command: BaseCommand, run: Run, wait: bool, timeout: float | None) -> None:
    command.stdout.write(str(run.id))
    command.stdout.flush()
    if not wait:
        return
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if run.is_terminal:
            break
        if deadline is not None and time.monotonic() > deadline:
            raise CommandError(f"run {run.id} is still {run.status} after {timeout} s")
        time.sleep(0.05)
    if run.status == RunStatus.SUCCEEDED:
        command.stdout.write(json.dumps(run.result))
        return
    raise CommandError(one_line(f"run {run.id} {run.status}: {run.error}"))
