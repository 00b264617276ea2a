from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks

        post_migrate.connect(_repair_search_index, sender=self)
        post_migrate.connect(_repair_webhook_trigger, sender=self)
        from .sqlite_wal import connection_created as start_wal_checkpoints

        connection_created.connect(start_wal_checkpoints)


def _repair_search_index(using: str = "default", **kwargs: Any) -> None:
    """A migration that rebuilt runs_checkpoint on SQLite dropped the search triggers: put them back."""
    from django.db import connections

    from . import search_index

    search_index.repair(connections[using])


def _repair_webhook_trigger(using: str = "default", **kwargs: Any) -> None:
    """A migration that rebuilt runs_run on SQLite dropped the webhook trigger: put it back."""
    from django.db import connections

    from . import webhook_triggers

    webhook_triggers.repair(connections[using])
