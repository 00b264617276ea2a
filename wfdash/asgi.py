"""ASGI entry point: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfdash.settings")
# Must run before importing anything that touches models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from runs.routing import websocket_urlpatterns  # noqa: E402
from runs.socket_auth import socket_auth_stack  # noqa: E402


def _tune_for_many_sockets() -> None:
    """Per-frame costs that add up with hundreds of live pages (measured by bench/live.py)."""
    try:
        import autobahn.util

        # autobahn colours the arguments of its debug log lines with click, when click is
        # installed, for every frame sent, even with debug logging off.
        autobahn.util._HAS_CLICK = False  # type: ignore[attr-defined]
    except (ImportError, AttributeError):
        pass
    # What is loaded now lives as long as the process: keep it out of the collector's
    # scans, and collect young objects less often (each frame allocates many).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


_tune_for_many_sockets()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(socket_auth_stack(URLRouter(websocket_urlpatterns))),
    }
)
