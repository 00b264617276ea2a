"""/healthz and the deployment system checks."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_it_reports_database_and_channel_layer_reachable(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "channel_layer": "ok"}


@override_settings(
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": 1}]},
        }
    }
)
def test_it_reports_an_unreachable_channel_layer_with_503(client: Client) -> None:
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        response = client.get("/healthz")
    finally:
        channel_layers.backends.clear()
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "ok", "channel_layer": "error"}


SHARED_DATABASE = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}}
EMBEDDED_DATABASE = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "x"}}


# The checks only read these settings; no connection is made with them.
quiet_database_override = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


@quiet_database_override
def test_it_warns_about_the_in_memory_layer_with_a_shared_database() -> None:
    with override_settings(DATABASES=SHARED_DATABASE):
        assert "runs.W001" in [m.id for m in run_checks()]


@quiet_database_override
def test_it_accepts_the_in_memory_layer_in_the_embedded_default() -> None:
    with override_settings(DATABASES=EMBEDDED_DATABASE):
        assert "runs.W001" not in [m.id for m in run_checks()]


@quiet_database_override
def test_it_warns_that_machines_sharing_a_database_need_one_secret_key() -> None:
    with override_settings(DATABASES=SHARED_DATABASE, SECRET_KEY_GENERATED=True):
        assert "runs.W002" in [m.id for m in run_checks()]
    with override_settings(DATABASES=SHARED_DATABASE, SECRET_KEY_GENERATED=False):
        assert "runs.W002" not in [m.id for m in run_checks()]
