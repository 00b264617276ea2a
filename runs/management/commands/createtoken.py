from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import ApiToken


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Create an API token for USERNAME and print it (shown once; only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the token is for")

    def handle(self, *args: Any, **opts: Any) -> None:
        User = get_user_model()  # noqa: N806
        try:
            user = User.objects.get(username=opts["username"])
        except User.DoesNotExist:
            raise CommandError(f"unknown user {opts['username']!r}") from None
        _, raw = ApiToken.issue(user, opts["name"])
        self.stdout.write(raw)
