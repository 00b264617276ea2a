"""API tokens on the live sockets (`Authorization: Bearer` on the handshake), on the real ASGI
application: the token's user goes through the same access policy as a session's."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs.models import ApiToken, Run, start_run
from wfdash.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://localhost")


def _user(name: str, *codenames: str) -> object:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-12345")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))
    return user


def _token(name: str, *codenames: str) -> bytes:
    return f"Bearer {ApiToken.issue(_user(name, *codenames))[1]}".encode()


def _session_of_a_viewer() -> bytes:
    client = Client()
    client.force_login(_user("browser", "view_run"))
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def _connect(path: str, *headers: tuple[bytes, bytes]) -> tuple[bool, int | str | None]:
    ws = WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])
    try:
        connected, code = await ws.connect()
        if connected:
            assert (await ws.receive_json_from(timeout=5))["type"] == "run"
        return connected, code
    finally:
        await ws.disconnect()


@pytest.fixture
async def run() -> Run:
    return await sync_to_async(start_run)("chain", {"steps": 1})


async def test_it_accepts_the_token_of_a_user_who_may_view(run: Run) -> None:
    token = await sync_to_async(_token)("viewer", "view_run")

    connected, _ = await _connect(f"/ws/runs/{run.id}/", (b"authorization", token))

    assert connected


async def test_it_refuses_a_token_whose_user_may_not_view(run: Run) -> None:
    token = await sync_to_async(_token)("outsider")

    assert await _connect(f"/ws/runs/{run.id}/", (b"authorization", token)) == (False, 4403)
    assert await _connect("/ws/runs/", (b"authorization", token)) == (False, 4403)


@pytest.mark.parametrize("header", [b"Bearer wfd_not-a-token", b"Bearer ", b"Basic dXNlcjpwdw=="])
async def test_it_refuses_a_bad_token_even_beside_a_valid_session(run: Run, header: bytes) -> None:
    cookie = await sync_to_async(_session_of_a_viewer)()

    connected, code = await _connect(f"/ws/runs/{run.id}/", (b"cookie", cookie), (b"authorization", header))

    assert (connected, code) == (False, 4401)


async def test_it_refuses_a_revoked_token(run: Run) -> None:
    token = await sync_to_async(_token)("revoked", "view_run")
    await ApiToken.objects.aupdate(revoked=True)

    assert await _connect(f"/ws/runs/{run.id}/", (b"authorization", token)) == (False, 4401)


async def test_it_keeps_the_sessions_user_without_a_token(run: Run) -> None:
    cookie = await sync_to_async(_session_of_a_viewer)()

    connected, _ = await _connect(f"/ws/runs/{run.id}/", (b"cookie", cookie))

    assert connected


async def test_the_socket_stack_finds_the_sessions_user_and_hands_frames_to_the_server_unwrapped() -> None:
    # Channels' SessionMiddleware wrapped `send` to look at every frame for an HTTP response;
    # the sockets' stack reads the session the same way and leaves `send` alone.
    from runs.socket_auth import socket_auth_stack

    seen: dict[str, object] = {}

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.update(send=send, user=await sync_to_async(lambda: scope["user"].username)())  # type: ignore[attr-defined]

    async def server_send(message: object) -> None:
        pass

    cookie = await sync_to_async(_session_of_a_viewer)()
    scope = {"type": "websocket", "path": "/ws/runs/", "headers": [(b"cookie", cookie)]}
    await socket_auth_stack(app)(scope, None, server_send)
    assert seen == {"send": server_send, "user": "browser"}
