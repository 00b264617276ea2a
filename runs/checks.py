"""System checks for risky deployments."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.compatibility)
def in_memory_layer_in_production(app_configs: Any, **kwargs: Any) -> list[Warning]:
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    # The embedded default (SQLite, one machine) is fine with it; a shared database means
    # processes on several machines.
    shared_database = settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
    if shared_database and backend.endswith("InMemoryChannelLayer"):
        return [
            Warning(
                "The in-memory channel layer delivers messages inside one process only.",
                hint="Set REDIS_URL so live pages hear workers and other daphne processes at once; "
                "without it they fall back to polling the database.",
                id="runs.W001",
            )
        ]
    return []


@register(Tags.security)
def generated_secret_key(app_configs: Any, **kwargs: Any) -> list[Warning]:
    shared_database = settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
    if getattr(settings, "SECRET_KEY_GENERATED", False) and shared_database:
        return [
            Warning(
                f"SECRET_KEY is not set: this machine generated its own in {settings.SECRET_KEY_FILE}.",
                hint="Set the same SECRET_KEY on every machine that shares the database, "
                "or sessions and tokens signed on one are refused by the others.",
                id="runs.W002",
            )
        ]
    return []
