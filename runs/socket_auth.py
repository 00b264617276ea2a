"""API tokens on WebSockets: `Authorization: Bearer <token>` on the handshake, as on the API.

The token's user replaces the session's in the scope, and the consumers ask the one policy
(`access.socket_close_code`) about that user as they would about a signed-in browser. A bad
token makes the user anonymous (close 4401), even beside a valid session cookie: a client
that sends a token means that identity, as the API answers 401 for a bad token.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from .models import ApiToken


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer` header, "" for another scheme, None without one."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class BearerTokenMiddleware(BaseMiddleware):
    """Sets `scope["user"]` from the handshake's bearer token, when it carries one; wraps the
    router inside the auth stack (`socket_auth_stack`), so sockets without a token keep the
    session's user."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        token = bearer_token(scope.get("headers", []))
        if token is not None:
            user = await database_sync_to_async(ApiToken.authenticate)(token) if token else None
            scope = {**scope, "user": user if user is not None else AnonymousUser()}
        return await super().__call__(scope, receive, send)


class SocketSessionMiddleware:
    """Channels' SessionMiddleware for sockets, minus its wrapper around `send`.

    The session is found the same way, from the cookie, and read only when asked for. The
    wrapper looked at every outgoing message for an HTTP response to save the session on, which
    a socket never sends: with hundreds of live pages that check was about 15 µs of the
    ~140 µs daphne spends on each frame (bench/live.py --profile-daphne)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if "session" not in scope:
            if "cookies" not in scope:
                raise ValueError("SocketSessionMiddleware needs to run inside CookieMiddleware")
            scope = {**scope, "session": self.store(scope["cookies"].get(settings.SESSION_COOKIE_NAME))}
        return await self.inner(scope, receive, send)


def socket_auth_stack(inner: Any) -> Any:
    """Channels' AuthMiddlewareStack with SocketSessionMiddleware, and bearer tokens inside."""
    return CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(BearerTokenMiddleware(inner))))
