"""The one access policy, on every surface: (anonymous, no permissions, view, view+add,
all) x every page, API route, WebSocket path and admin action, each with its exact answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs.models import Activity, ApiToken, Checkpoint, Run, RunStatus
from tests.runs import factories

pytestmark = pytest.mark.django_db

ROLES = {
    "anonymous": None,
    "no permissions": [],
    "view": ["view_run"],
    "view+add": ["view_run", "add_run"],
    "all": ["view_run", "add_run", "change_run"],
}
NEEDS = {"view": "view", "add": "view+add", "change": "all"}
ORDER = ["no permissions", "view", "view+add", "all"]


def _allowed(role: str, need: str) -> bool:
    return ORDER.index(role) >= ORDER.index(NEEDS[need])


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def waiting() -> Checkpoint:
    """A waiting approval run with one checkpoint."""
    start = {"type": "StartEvent", "data": {"subject": "x"}}
    run = Run.objects.create(workflow="approval", status=RunStatus.WAITING, start_event=start)
    draft = {"type": "Draft", "data": {"text": "hello"}}
    return factories.checkpoint(run, step="draft", input_event=start, output_event=draft)


def _user(role: str) -> Any:
    perms = ROLES[role]
    if perms is None:
        return None
    user = get_user_model().objects.create_user(role.replace(" ", "_").replace("+", "_"), password="pw-12345678")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=perms))
    return user


def _client(role: str) -> Client:
    client = Client()
    user = _user(role)
    if user is not None:
        client.force_login(user)
    return client


def _pages(c: Checkpoint) -> list[tuple[str, str, str, dict[str, Any]]]:
    run = c.run_id
    return [
        ("GET", "/", "view", {}),
        ("GET", f"/runs/{run}/", "view", {}),
        ("GET", f"/runs/{run}/compare/", "view", {}),
        ("GET", "/checkpoints/", "view", {}),
        ("GET", f"/checkpoints/{c.id}/", "view", {}),
        ("GET", "/runs/new/?workflow=chain", "add", {}),
        ("POST", "/runs/new/?workflow=chain", "add", {"workflow": "chain", "steps": "1"}),
        ("POST", f"/checkpoints/{c.id}/fork/", "add", {}),
        ("GET", f"/checkpoints/{c.id}/edit/", "add", {}),
        ("POST", f"/checkpoints/{c.id}/edit/", "add", {"output_event": '{"text": "hi"}', "store": ""}),
        ("POST", f"/runs/{run}/respond/", "change", {"response": "yes"}),
        ("POST", f"/runs/{run}/cancel/", "change", {}),
    ]


@pytest.mark.parametrize("role", list(ROLES))
def test_pages_follow_the_policy(role: str, waiting: Checkpoint) -> None:
    client = _client(role)
    for method, url, need, data in _pages(waiting):
        response = client.get(url) if method == "GET" else client.post(url, data)
        where = f"{role}: {method} {url}"
        if role == "anonymous":
            assert response.status_code == 302 and "/accounts/login/" in response["Location"], where
        elif not _allowed(role, need):
            assert response.status_code == 403, where
            assert "permission" in response.content.decode(), where
        else:
            assert response.status_code in (200, 302), where


def test_a_refused_page_changes_nothing(waiting: Checkpoint) -> None:
    client = _client("view")
    before = (Run.objects.count(), Activity.objects.count(), Run.objects.get(pk=waiting.run_id).status)
    for method, url, _, data in _pages(waiting):
        if method == "POST":
            client.post(url, data)
    after = (Run.objects.count(), Activity.objects.count(), Run.objects.get(pk=waiting.run_id).status)
    assert after == before


def _api_routes(c: Checkpoint) -> list[tuple[str, str, str, dict[str, Any] | None]]:
    run = c.run_id
    return [
        ("GET", "/api/runs/", "view", None),
        ("GET", f"/api/runs/{run}/", "view", None),
        ("GET", f"/api/runs/{run}/checkpoints/", "view", None),
        ("GET", "/api/checkpoints/", "view", None),
        ("GET", f"/api/checkpoints/{c.id}/", "view", None),
        ("GET", "/api/workflows/", "view", None),
        ("POST", "/api/runs/", "add", {"workflow": "chain", "input": {"steps": 1}}),
        ("POST", f"/api/checkpoints/{c.id}/fork/", "add", {}),
        ("POST", f"/api/runs/{run}/respond/", "change", {"response": "yes"}),
        ("POST", f"/api/runs/{run}/cancel/", "change", {}),
    ]


@pytest.mark.parametrize("role", list(ROLES))
def test_api_routes_follow_the_policy(role: str, waiting: Checkpoint) -> None:
    client = Client()
    headers: dict[str, str] = {}
    user = _user(role)
    if user is not None:
        headers["Authorization"] = f"Bearer {ApiToken.issue(user)[1]}"
    for method, url, need, body in _api_routes(waiting):
        if method == "GET":
            response = client.get(url, headers=headers)
        else:
            response = client.post(url, json.dumps(body), content_type="application/json", headers=headers)
        where = f"{role}: {method} {url}"
        if role == "anonymous":
            assert response.status_code == 401, where
        elif not _allowed(role, need):
            assert response.status_code == 403, where
            assert response.json()["error"]["code"] == "forbidden", where
        else:
            assert response.status_code in (200, 201), (where, response.content[:300])


def test_a_revoked_token_is_401_on_every_method(waiting: Checkpoint) -> None:
    token, raw = ApiToken.issue(_user("all"))
    ApiToken.objects.filter(pk=token.pk).update(revoked=True)
    client = Client(enforce_csrf_checks=True)
    headers = {"Authorization": f"Bearer {raw}"}
    for method, url, _, body in _api_routes(waiting):
        if method == "GET":
            response = client.get(url, headers=headers)
        else:
            response = client.post(url, json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code == 401, f"{method} {url}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", list(ROLES))
async def test_sockets_follow_the_policy(role: str) -> None:
    from asgiref.sync import sync_to_async

    from wfdash.asgi import application

    run = await Run.objects.acreate(workflow="chain", status=RunStatus.QUEUED)
    client = await sync_to_async(_client)(role)
    headers = [(b"origin", b"http://localhost")]
    if "sessionid" in client.cookies:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    for path in ("/ws/runs/", f"/ws/runs/{run.id}/"):
        ws = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await ws.connect()
        where = f"{role}: {path}"
        if role == "anonymous":
            assert (connected, code) == (False, 4401), where
        elif not _allowed(role, "view"):
            assert (connected, code) == (False, 4403), where
        else:
            assert connected, where
        await ws.disconnect()


@pytest.mark.parametrize("role", ["no permissions", "view", "view+add", "all"])
def test_admin_actions_follow_the_policy(role: str, waiting: Checkpoint) -> None:
    user = _user(role)
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "view_checkpoint"]))
    client = Client()
    client.force_login(user)
    runs_page = client.get("/admin/runs/run/").content.decode()
    checkpoints_page = client.get("/admin/runs/checkpoint/").content.decode()
    assert ('value="cancel"' in runs_page) == _allowed(role, "change")
    assert ('value="fork"' in checkpoints_page) == _allowed(role, "add")
