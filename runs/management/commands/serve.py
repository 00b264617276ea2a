from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import Run, start_run

DEMO_RUNS: list[tuple[str, dict[str, Any]]] = [
    ("wordcount", {}),
    ("chain", {"steps": 25, "sleep": 0.2}),
    ("flaky", {"failures": 2}),
    ("flaky_forever", {}),
    ("approval", {"subject": "the launch plan"}),
]


class Command(BaseCommand):
    help = "Migrate, create the demo user and demo runs if missing, then run daphne with a worker inside it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--no-demo", action="store_true", help="skip the demo runs")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not _loopback(opts["host"]) and not os.environ.get("ALLOWED_HOSTS"):
            raise CommandError(
                f"refusing to listen on {opts['host']}, reachable from other machines: set ALLOWED_HOSTS "
                "to the host names this server answers to (and put it behind TLS), or use 127.0.0.1"
            )
        call_command("migrate", interactive=False, verbosity=0)
        self._demo_user()
        if not opts["no_demo"] and not Run.objects.exists():
            for name, fields in DEMO_RUNS:
                start_run(name, fields)
            self.stdout.write(f"queued {len(DEMO_RUNS)} demo runs")
        # One process: daphne with the worker on its loop, so pages hear checkpoints and
        # streamed tokens at once through the in-memory layer (runs/embedded.py).
        child = subprocess.Popen(
            [sys.executable, "manage.py", "webworker", "--host", opts["host"], "--port", str(opts["port"])]
        )
        self.stdout.write(self.style.SUCCESS(f"wfdash is running at http://{opts['host']}:{opts['port']}/"))
        self.stdout.flush()

        def stop(*_: Any) -> None:
            if child.poll() is None:
                child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            child.wait()
        finally:
            stop()
            try:
                child.wait(timeout=35)
            except subprocess.TimeoutExpired:
                child.kill()
        if child.returncode not in (0, -15, None):
            self.stderr.write(f"stopped because the server exited with {child.returncode}")
            raise SystemExit(1)

    def _demo_user(self) -> None:
        User = get_user_model()  # noqa: N806 - Django's idiom
        if User.objects.filter(username="demo").exists():
            self.stdout.write("user demo exists (reset its password with: manage.py changepassword demo)")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("demo", "", password)
        self.stdout.write(self.style.WARNING(f"created user demo with password {password}  (shown only once)"))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
