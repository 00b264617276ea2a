"""A Python client for wfdash's JSON API and live stream; needs neither Django nor the app.

    from wfdash.client import Client

    with Client("http://127.0.0.1:8000", token) as client:
        run = client.wait(client.start("chain", steps=5).id, timeout=60)

`AsyncClient` has the same methods for asyncio code. Answers are the API's own pydantic
schemas (`wfdash.api_schemas`); errors are `WfdashError` subclasses carrying the API's code.
"""

from __future__ import annotations

from ._async import AsyncClient
from ._sync import Client
from .errors import (
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    ServerError,
    Unauthenticated,
    ValidationFailed,
    WaitTimeout,
    WfdashError,
)

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "NotFound",
    "PermissionDenied",
    "ServerError",
    "Unauthenticated",
    "ValidationFailed",
    "WaitTimeout",
    "WfdashError",
]
