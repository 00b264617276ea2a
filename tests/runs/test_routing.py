"""WebSocket paths nobody routes: a 4404 close, never a server error."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from wfdash.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/ws/runs", "/ws/other/", "/", "/ws/runs/x/y/"])
async def test_it_closes_unrouted_paths_with_4404(path: str, caplog: pytest.LogCaptureFixture) -> None:
    ws = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://localhost")])
    connected, _ = await ws.connect()
    assert connected
    assert await ws.receive_output(timeout=2) == {"type": "websocket.close", "code": 4404}
    await ws.disconnect()
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
