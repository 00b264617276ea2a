"""The hostile inputs a review found, each answered with a clear 4xx and nothing written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from runs.models import Activity, ApiToken, Checkpoint, Run, RunStatus
from tests.runs import factories

pytestmark = pytest.mark.django_db

IMPOSSIBLE_TIMES = ["2026-02-30T00:00:00", "2026-01-01T00:00:00+24:00", "0001-01-01T00:00:00+01:00"]


@pytest.fixture
def user() -> Any:
    return get_user_model().objects.create_superuser("root", "", "pw-root-123")


@pytest.fixture
def page(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def api(user: Any) -> Client:
    return Client(headers={"Authorization": f"Bearer {ApiToken.issue(user)[1]}"})


@pytest.fixture
def checkpoint() -> Checkpoint:
    return factories.checkpoint(state=factories.state_with({"steps": 2, "sleep": 0}))


def _counts() -> tuple[int, int, int]:
    return Run.objects.count(), Checkpoint.objects.count(), Activity.objects.count()


def _post(api: Client, url: str, body: Any) -> Any:
    return api.post(url, json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("when", IMPOSSIBLE_TIMES)
@pytest.mark.parametrize("param", ["before", "since"])
def test_impossible_times_are_a_400_on_every_list(page: Client, api: Client, param: str, when: str) -> None:
    value = f"{when}_00000000-0000-0000-0000-000000000000" if param == "before" else when
    for client, url in ((page, "/"), (page, "/checkpoints/"), (api, "/api/runs/"), (api, "/api/checkpoints/")):
        response = client.get(url, {param: value})
        assert response.status_code == 400, (url, param, when)
        if url.startswith("/api/"):
            assert response.json()["error"]["code"] == "bad_filter"


def test_a_list_as_event_type_in_a_fork_is_a_422(api: Client, checkpoint: Checkpoint) -> None:
    before = _counts()
    response = _post(api, f"/api/checkpoints/{checkpoint.id}/fork/", {"output_event": {"type": ["Tick"], "data": {}}})
    assert response.status_code == 422
    assert "unknown event type" in response.json()["error"]["message"]
    assert _counts() == before


def test_a_store_edit_naming_an_import_path_is_refused_before_writing(api: Client, checkpoint: Checkpoint) -> None:
    before = _counts()
    forged = {"store": {"x": {"__event__": {"type": "os.system", "data": {}}}}}
    response = _post(api, f"/api/checkpoints/{checkpoint.id}/fork/", forged)
    assert response.status_code == 422
    assert "unknown event type 'os.system'" in response.json()["error"]["message"]
    assert _counts() == before


DEEP = json.loads('{"a": ' * 70 + "1" + "}" * 70)


@pytest.mark.parametrize("value", ["\ud800", "a\x00b", {"deep": DEEP}], ids=["surrogate", "nul", "deep"])
def test_unstorable_start_inputs_are_refused(api: Client, value: Any) -> None:
    before = _counts()
    body = json.dumps({"workflow": "approval", "input": {"subject": value}}, ensure_ascii=True)
    response = api.post("/api/runs/", body, content_type="application/json")
    assert response.status_code == 422, response.content
    assert _counts() == before


def test_a_surrogate_in_a_store_edit_is_refused(api: Client, checkpoint: Checkpoint) -> None:
    before = _counts()
    body = json.dumps({"store": {"note": "\ud800"}}, ensure_ascii=True)
    response = api.post(f"/api/checkpoints/{checkpoint.id}/fork/", body, content_type="application/json")
    assert response.status_code == 422
    assert "lone surrogates" in response.json()["error"]["message"]
    assert _counts() == before


@pytest.mark.django_db(transaction=True)
async def test_a_frame_that_is_not_json_closes_the_socket_quietly(caplog: pytest.LogCaptureFixture) -> None:
    from asgiref.sync import sync_to_async

    from wfdash.asgi import application

    def session() -> bytes:
        client = Client()
        client.force_login(get_user_model().objects.create_superuser("ws", "", "pw-ws-12345"))
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    cookie = await sync_to_async(session)()
    run = await Run.objects.acreate(workflow="chain", status=RunStatus.QUEUED)
    headers = [(b"origin", b"http://localhost"), (b"cookie", cookie)]
    for path in ("/ws/runs/", f"/ws/runs/{run.id}/"):
        ws = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await ws.connect()
        assert connected
        await ws.send_to(text_data="this is not json {")
        while (message := await ws.receive_output(timeout=3))["type"] != "websocket.close":
            pass
        assert message["code"] == 4400
        await ws.disconnect()
    assert not [r for r in caplog.records if r.levelno >= 40]  # nothing above WARNING
