"""The JSON API: each endpoint, each refusal, JSON errors, and that no error writes anything."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client

from runs.models import ApiToken, Checkpoint, Run, RunStatus, start_run

pytestmark = pytest.mark.django_db


def _user(name: str, *perms: str):
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="runs"))
    return user


@pytest.fixture
def owner():
    return _user("owner", "view_run", "add_run", "change_run")


@pytest.fixture
def token(owner) -> str:
    return ApiToken.issue(owner, "tests")[1]


@pytest.fixture
def api(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def _post(client: Client, url: str, body, **extra):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **extra)


@pytest.fixture
def finished() -> Run:
    run = start_run("chain", {"steps": 1})
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, checkpoint_count=2, result={"ticks": 1})
    state = {
        "version": 1,
        "store": {"steps": {"v": 1}, "sleep": {"v": 0.0}, "doc": {"b": "f" * 64}},
        "queued": [],
        "in_flight": [],
        "collect": [],
        "waiters": [],
        "awaiting_input": False,
    }
    from runs.models import Blob

    Blob.objects.create(hash="f" * 64, data='"a big document"')
    Checkpoint.objects.create(
        run=run,
        workflow="chain",
        seq=1,
        last_completed_step="begin",
        input_event_type="ChainStart",
        output_event_type="Tick",
        input_event={"type": "ChainStart", "data": {"steps": 1, "sleep": 0.0, "payload": ""}},
        output_event={"type": "Tick", "data": {"n": 1}},
        state=state,
        snapshot_seq=1,
    )
    Checkpoint.objects.create(
        run=run,
        workflow="chain",
        seq=2,
        last_completed_step="tick",
        input_event_type="Tick",
        output_event_type="StopEvent",
        input_event={"type": "Tick", "data": {"n": 1}},
        output_event={"type": "StopEvent", "data": {"result": {"ticks": 1}}},
        state=state,
        snapshot_seq=2,
    )
    run.refresh_from_db()
    return run


def _error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code
    return body["error"]


def test_it_creates_lists_and_reads_runs(api: Client) -> None:
    created = _post(api, "/api/runs/", {"workflow": "chain", "input": {"steps": 2}})
    assert created.status_code == 201
    run = created.json()
    assert run["workflow"] == "chain" and run["status"] == "queued"
    assert run["start_event"] == {"type": "ChainStart", "data": {"steps": 2, "sleep": 0.0, "payload": ""}}
    assert api.get(f"/api/runs/{run['id']}/").json()["id"] == run["id"]
    listed = api.get("/api/runs/", {"workflow": "chain", "status": "queued"}).json()
    assert [r["id"] for r in listed["items"]] == [run["id"]] and listed["next_cursor"] is None


def test_it_pages_runs_with_a_cursor(api: Client) -> None:
    ids = {str(start_run("chain", {"steps": 1}).id) for _ in range(55)}
    first = api.get("/api/runs/").json()
    second = api.get("/api/runs/", {"before": first["next_cursor"]}).json()
    assert len(first["items"]) == 50 and len(second["items"]) == 5 and second["next_cursor"] is None
    assert {r["id"] for r in first["items"] + second["items"]} == ids


def test_it_lists_filters_and_reads_checkpoints(api: Client, finished: Run) -> None:
    after = api.get(f"/api/runs/{finished.id}/checkpoints/", {"after": 1}).json()
    assert [c["seq"] for c in after] == [2]
    found = api.get("/api/checkpoints/", {"workflow": "chain", "step": "tick", "output_event_type": "StopEvent"})
    assert [c["seq"] for c in found.json()["items"]] == [2]
    one = api.get(f"/api/checkpoints/{after[0]['id']}/").json()
    assert one["output_event"] == {"type": "StopEvent", "data": {"result": {"ticks": 1}}}
    assert one["ctx_state"]["store"] == {"steps": 1, "sleep": 0.0, "doc": "a big document"}


def test_it_forks_with_and_without_edits(api: Client, finished: Run) -> None:
    c = finished.checkpoints.get(seq=1)
    plain = _post(api, f"/api/checkpoints/{c.id}/fork/", {})
    assert plain.status_code == 201 and plain.json()["parent_checkpoint_id"] == str(c.id)
    edited = _post(api, f"/api/checkpoints/{c.id}/fork/", {"output_event": {"n": 1}, "store": {"steps": 3}})
    assert edited.status_code == 201
    assert edited.json()["fork_edits"] == {"output_event": {"type": "Tick", "data": {"n": 1}}, "store": {"steps": 3}}


def test_it_cancels_and_answers(api: Client) -> None:
    run = start_run("chain", {"steps": 1})
    assert _post(api, f"/api/runs/{run.id}/cancel/", {}).json()["status"] == "cancelled"
    _error(_post(api, f"/api/runs/{run.id}/cancel/", {}), 409, "conflict")
    waiting = start_run("approval", {})
    _error(_post(api, f"/api/runs/{waiting.id}/respond/", {"response": "yes"}), 409, "conflict")
    Run.objects.filter(pk=waiting.pk).update(status=RunStatus.WAITING)
    answered = _post(api, f"/api/runs/{waiting.id}/respond/", {"response": "yes"})
    assert answered.status_code == 200 and answered.json()["status"] == "queued"


def test_it_describes_workflows_with_schemas(api: Client) -> None:
    workflows = {w["name"]: w for w in api.get("/api/workflows/").json()}
    chain = workflows["chain"]
    assert chain["start_event"] == "ChainStart"
    assert {s["name"] for s in chain["steps"]} == {"begin", "tick"}
    assert chain["event_types"]["ChainStart"]["properties"]["steps"]["type"] == "integer"
    assert {"joke", "wordcount", "approval", "flaky"} <= set(workflows)


def test_it_serves_openapi_and_docs(api: Client) -> None:
    doc = api.get("/api/openapi.json").json()
    assert "/api/runs/" in doc["paths"] and "/api/checkpoints/{checkpoint_id}/fork/" in doc["paths"]
    page = api.get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn." not in html  # the bundled Swagger UI: nothing fetched from the internet
    scripts = re.findall(r'src="(/static/[^"]+)"', html)
    assert scripts and all(b"".join(api.get(src).streaming_content) for src in scripts)


def test_it_refuses_anonymous_and_bad_tokens(finished: Run, owner) -> None:
    for client in (Client(), Client(HTTP_AUTHORIZATION="Bearer wfd_nope"), Client(HTTP_AUTHORIZATION="Basic x")):
        _error(client.get("/api/runs/"), 401, "unauthenticated")
        _error(_post(client, "/api/runs/", {"workflow": "chain"}), 401)
    token, raw = ApiToken.issue(owner)
    token.revoked = True
    token.save()
    _error(Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/runs/"), 401)
    assert Run.objects.count() == 1


def test_it_requires_permissions(finished: Run) -> None:
    viewer = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(_user('viewer', 'view_run'))[1]}")
    nobody = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(_user('nobody'))[1]}")
    _error(nobody.get("/api/runs/"), 403, "forbidden")
    assert viewer.get("/api/runs/").status_code == 200
    c = finished.checkpoints.first()
    _error(_post(viewer, "/api/runs/", {"workflow": "chain"}), 403)
    _error(_post(viewer, f"/api/checkpoints/{c.id}/fork/", {}), 403)
    _error(_post(viewer, f"/api/runs/{finished.id}/cancel/", {}), 403)
    assert Run.objects.count() == 1


def test_it_accepts_the_session_but_enforces_csrf_on_writes(owner) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    assert browser.get("/api/runs/").status_code == 200
    assert _post(browser, "/api/runs/", {"workflow": "chain"}).status_code in (401, 403)
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ("{not json", 400, None),
        ('["a list"]', 422, None),
        ({"workflow": 5}, 422, "workflow"),
        ({"workflow": "chain", "input": "steps=3"}, 422, "input"),
        ({"workflow": "chain", "input": {"steps": "many"}}, 422, "input"),
        ({"workflow": "nope"}, 404, "workflow"),
        ({"workflow": "chain", "input": {"payload": "a\u0000b"}}, 422, "input"),
        ({}, 422, "workflow"),
    ],
)
def test_it_rejects_bad_run_bodies_and_writes_nothing(api: Client, body, status, field) -> None:
    err = _error(_post(api, "/api/runs/", body), status)
    if field:
        assert err.get("field") == field, err
    assert Run.objects.count() == 0


def test_it_rejects_bad_fork_bodies_and_writes_nothing(api: Client, finished: Run) -> None:
    c = finished.checkpoints.get(seq=1)
    for body in [{"output_event": {"n": "x"}}, {"output_event": {"type": "os.system", "data": {}}}, {"store": [1]}]:
        _error(_post(api, f"/api/checkpoints/{c.id}/fork/", body), 422)
    Checkpoint.objects.filter(pk=c.pk).update(output_event={"type": "subprocess.Popen", "data": {}})
    _error(_post(api, f"/api/checkpoints/{c.id}/fork/", {}), 409, "corrupt")
    assert Run.objects.count() == 1


def test_it_404s_unknown_ids_and_400s_bad_filters(api: Client) -> None:
    missing = uuid.uuid4()
    for url in (f"/api/runs/{missing}/", f"/api/checkpoints/{missing}/", f"/api/runs/{missing}/checkpoints/"):
        _error(api.get(url), 404, "not_found")
    _error(_post(api, f"/api/checkpoints/{missing}/fork/", {}), 404)
    _error(api.get("/api/runs/not-a-uuid/"), 422)
    _error(api.get("/api/runs/", {"status": "exploded"}), 400, "bad_filter")
    _error(api.get("/api/checkpoints/", {"run": "zzz"}), 400, "bad_filter")
    _error(api.get(f"/api/runs/{missing}/checkpoints/", {"after": -1}), 422)


def test_it_refuses_bodies_over_one_megabyte(api: Client) -> None:
    body = json.dumps({"workflow": "chain", "input": {"payload": "x" * (1024 * 1024 + 10)}})
    _error(_post(api, "/api/runs/", body), 413, "too_large")
    assert Run.objects.count() == 0


def test_it_creates_tokens_stored_hashed(owner, capsys) -> None:
    call_command("createtoken", "owner", "--name", "ci")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(name="ci")
    assert raw.startswith("wfd_") and raw not in (token.token_hash, token.prefix) and token.prefix == raw[:12]
    assert ApiToken.authenticate(raw) == owner


def test_it_revokes_tokens_in_the_admin(owner, token: str, api: Client) -> None:
    admin_user = get_user_model().objects.create_superuser("root", "", "pw-root-123")
    staff = Client()
    staff.force_login(admin_user)
    pk = ApiToken.objects.get(user=owner).pk
    assert staff.get("/admin/runs/apitoken/").status_code == 200
    assert token not in staff.get(f"/admin/runs/apitoken/{pk}/change/").content.decode()
    staff.post("/admin/runs/apitoken/", {"action": "revoke", "_selected_action": [pk]})
    _error(api.get("/api/runs/"), 401)


def test_it_lists_runs_with_previews_of_large_values(api: Client, finished: Run) -> None:
    Run.objects.filter(pk=finished.pk).update(result={"text": "x" * 100_000})
    item = api.get("/api/runs/").json()["items"][0]
    assert "result" not in item and "start_event" not in item
    assert item["result_truncated"] is True and len(item["result_preview"]) == 200
    assert item["result_preview"].startswith('{"text": "xxx')
    assert item["url"] == f"/api/runs/{finished.id}/"
    assert api.get(item["url"]).json()["result"] == {"text": "x" * 100_000}


def test_it_lists_small_values_whole_in_their_preview(api: Client, finished: Run) -> None:
    item = api.get("/api/runs/").json()["items"][0]
    assert json.loads(item["start_event_preview"]) == finished.start_event
    assert item["start_event_truncated"] is False and json.loads(item["result_preview"]) == {"ticks": 1}


def test_it_lists_a_missing_result_as_null(api: Client) -> None:
    start_run("chain", {"steps": 1})
    item = api.get("/api/runs/").json()["items"][0]
    assert item["result_preview"] is None and item["result_truncated"] is False


def test_it_documents_list_items_apart_from_full_runs(api: Client) -> None:
    schemas = api.get("/api/openapi.json").json()["components"]["schemas"]
    assert schemas["RunPage"]["properties"]["items"]["items"]["$ref"].endswith("/RunListItem")
    assert {"result_preview", "result_truncated", "url"} <= set(schemas["RunListItem"]["properties"])
    assert "result" not in schemas["RunListItem"]["properties"] and "result" in schemas["RunOut"]["properties"]


# -- ids by prefix, "no output", workflows that cannot run here ------------------------


def test_it_filters_checkpoints_by_a_run_id_prefix(api: Client, finished: Run) -> None:
    start_run("chain", {"steps": 1})
    response = api.get("/api/checkpoints/", {"run": finished.id.hex[:8]})
    assert response.status_code == 200
    assert {c["run_id"] for c in response.json()["items"]} == {str(finished.id)}


def test_it_explains_an_unknown_run_prefix(api: Client, finished: Run) -> None:
    prefix = "0123456" if not finished.id.hex.startswith("0123456") else "fedcba9"
    body = _error(api.get("/api/checkpoints/", {"run": prefix}), 400, "bad_filter")
    assert body["message"] == f"no run has an id starting with '{prefix}'"


def test_it_explains_an_ambiguous_parent_prefix(api: Client) -> None:
    Run.objects.create(id=uuid.UUID("abcdef01-0000-4000-8000-000000000001"), workflow="chain")
    Run.objects.create(id=uuid.UUID("abcdef02-0000-4000-8000-000000000002"), workflow="chain")
    body = _error(api.get("/api/runs/", {"parent": "abcdef"}), 400, "bad_filter")
    assert body["message"] == "parent id prefix 'abcdef' matches 2 runs; type more characters"


def test_it_lists_forks_of_a_parent_given_by_prefix(api: Client, finished: Run) -> None:
    fork = Run.objects.create(workflow="chain", parent_checkpoint=finished.checkpoints.get(seq=1))
    response = api.get("/api/runs/", {"parent": str(finished.id)[:13]})
    assert [r["id"] for r in response.json()["items"]] == [str(fork.id)]


def test_it_filters_checkpoints_without_an_output_event(api: Client, finished: Run) -> None:
    finished.checkpoints.filter(seq=1).update(output_event_type="", output_event=None)
    response = api.get("/api/checkpoints/", {"output_event_type": "None"})
    assert [c["seq"] for c in response.json()["items"]] == [1]


def test_it_refuses_to_start_joke_without_an_llm(api: Client, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    body = _error(_post(api, "/api/runs/", {"workflow": "joke", "input": {"topic": "cats"}}), 409, "unavailable")
    assert body["field"] == "workflow" and "no LLM is configured" in body["message"]
    assert Run.objects.count() == 0


def test_it_refuses_unknown_start_keys_naming_them(api: Client) -> None:
    body = _error(_post(api, "/api/runs/", {"workflow": "approval", "input": {"text": "x"}}), 422, "invalid")
    assert body["message"] == "invalid ApprovalStart: text: Extra inputs are not permitted"
    assert Run.objects.count() == 0
