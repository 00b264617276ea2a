"""System checks for risky deployments."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.compatibility)
def in_memory_layer_in_production(app_configs: Any, **kwargs: Any) -> list[Warning]:
    backend = str(settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", ""))
    if not settings.DEBUG and backend.endswith("InMemoryChannelLayer"):
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
def development_secret_key(app_configs: Any, **kwargs: Any) -> list[Warning]:
    from wfdash.settings import DEV_SECRET_KEY

    if settings.SECRET_KEY == DEV_SECRET_KEY:
        return [Warning("SECRET_KEY is the development default.", hint="Set SECRET_KEY.", id="runs.W002")]
    return []
