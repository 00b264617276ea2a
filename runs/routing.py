from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from . import consumers

# Close codes: 4404 no such path or run, 4401 not signed in, 4403 no permission.
NOT_FOUND = 4404


class NoRoute(AsyncWebsocketConsumer):
    """Any other path: accepted only to say why it closes (4404), nothing logged."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=NOT_FOUND)


websocket_urlpatterns = [
    path("ws/runs/", consumers.RunsListConsumer.as_asgi()),
    path("ws/runs/<str:run_id>/", consumers.RunConsumer.as_asgi()),
    re_path(r"", NoRoute.as_asgi()),
]
