"""The start form explains its workflow; typed demo start events refuse unknown keys; joke needs an LLM."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs import inputs
from runs.models import Run, start_run
from runs.registry import get_workflow

pytestmark = pytest.mark.django_db

DEMOS = ["approval", "wordcount", "flaky", "flaky_forever", "map", "chain", "joke"]


@pytest.fixture
def client_in(client: Client) -> Client:
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    codenames = ["view_run", "add_run"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def no_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def with_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")


def _page(client: Client, workflow: str) -> str:
    response = client.get("/runs/new/", {"workflow": workflow})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("workflow", DEMOS)
def test_every_demo_has_a_typed_start_event_that_refuses_unknown_keys(workflow: str, with_llm: None) -> None:
    with pytest.raises(inputs.InputError, match="Extra inputs are not permitted"):
        inputs.start_event(get_workflow(workflow), {"no_such_key": 1})


@pytest.mark.parametrize("workflow", DEMOS)
def test_every_demo_start_field_has_a_description(workflow: str) -> None:
    cls = get_workflow(workflow).start_event_class
    assert cls.__name__ != "StartEvent"
    assert cls.model_fields and all(f.description for f in cls.model_fields.values())


def test_approval_refuses_text_and_names_the_key(with_llm: None) -> None:
    with pytest.raises(inputs.InputError) as info:
        start_run("approval", {"text": "the plan"})
    assert str(info.value) == "invalid ApprovalStart: text: Extra inputs are not permitted"
    assert Run.objects.count() == 0


def test_the_form_shows_the_workflows_docstring(client_in: Client) -> None:
    page = _page(client_in, "approval")
    assert "Drafts a message about `subject`, then waits for a human" in page


def test_the_form_lists_each_start_field_with_type_default_and_description(client_in: Client) -> None:
    page = _page(client_in, "chain")
    row = page.split('<tr data-field="steps">')[1].split("</tr>")[0]
    cells = [c.split(">", 1)[1].split("</td")[0] for c in row.split("<td")[1:]]
    assert cells[:3] == ["steps", "integer", "3"]
    assert "How many ticks run, one after another." in cells[3] and "≤ 100,000" in cells[3]


def test_the_form_marks_required_fields(client_in: Client, with_llm: None) -> None:
    page = _page(client_in, "joke")
    row = page.split('<tr data-field="topic">')[1].split("</tr>")[0]
    assert "<strong>required</strong>" in row


def test_the_form_shows_an_example_input_that_starts_a_run(client_in: Client, with_llm: None) -> None:
    page = _page(client_in, "wordcount")
    assert "manage.py startrun wordcount --input" in page
    example = page.split('<details class="example"')[1].split('<pre class="mono">')[1].split("</pre>")[0]
    fields = json.loads(example.replace("&quot;", '"').replace("&#x27;", "'"))
    assert set(fields) == {"text", "chunks"}
    run = start_run("wordcount", fields)
    assert run.start_event["type"] == "WordCountStart"


def test_the_form_refuses_an_unknown_key_in_the_json_box(client_in: Client) -> None:
    response = client_in.post("/runs/new/?workflow=approval", {"workflow": "approval", "input": '{"text": "x"}'})
    assert response.status_code == 400
    assert "text: Extra inputs are not permitted" in response.content.decode()
    assert Run.objects.count() == 0


def test_the_json_box_replaces_the_fields(client_in: Client) -> None:
    response = client_in.post(
        "/runs/new/?workflow=chain", {"workflow": "chain", "steps": "", "input": '{"steps": 7, "sleep": 0.5}'}
    )
    assert response.status_code == 302
    assert Run.objects.get().start_event["data"] == {"steps": 7, "sleep": 0.5, "payload": ""}


def test_the_fields_start_approval_with_a_subject(client_in: Client) -> None:
    response = client_in.post("/runs/new/?workflow=approval", {"workflow": "approval", "subject": "the plan"})
    assert response.status_code == 302
    assert Run.objects.get().start_event == {"type": "ApprovalStart", "data": {"subject": "the plan"}}


def test_joke_start_button_is_disabled_with_the_reason_without_an_llm(client_in: Client, no_llm: None) -> None:
    page = _page(client_in, "joke")
    assert '<button type="submit" class="primary" disabled aria-describedby="start-unavailable"' in page
    note = page.split('id="start-unavailable">')[1].split("</div>")[0]
    assert "This workflow cannot start here" in note and "OPENAI_BASE_URL" in note


def test_joke_start_button_is_enabled_with_an_llm(client_in: Client, with_llm: None) -> None:
    page = _page(client_in, "joke")
    assert '<button type="submit" class="primary">Start</button>' in page
    assert 'id="start-unavailable"' not in page


def test_other_workflows_start_without_an_llm(client_in: Client, no_llm: None) -> None:
    assert '<button type="submit" class="primary">Start</button>' in _page(client_in, "chain")


def test_posting_the_joke_form_without_an_llm_creates_nothing(client_in: Client, no_llm: None) -> None:
    response = client_in.post("/runs/new/?workflow=joke", {"workflow": "joke", "topic": "cats"})
    assert response.status_code == 400
    assert "calls an LLM" in response.content.decode()
    assert Run.objects.count() == 0


def test_start_run_refuses_joke_without_an_llm(no_llm: None) -> None:
    with pytest.raises(inputs.WorkflowUnavailable, match="this workflow calls an LLM, and no LLM is configured"):
        start_run("joke", {"topic": "cats"})
    assert Run.objects.count() == 0
