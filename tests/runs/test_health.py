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


def test_it_warns_about_the_in_memory_layer_without_debug() -> None:
    with override_settings(DEBUG=False):
        ids = [m.id for m in run_checks()]
    assert "runs.W001" in ids
    with override_settings(DEBUG=True):
        assert "runs.W001" not in [m.id for m in run_checks()]
