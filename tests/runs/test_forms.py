"""Hostile form input: a form error (400), never a server error, nothing written."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from runs.executor import Worker
from runs.forms import EditForkForm, StartRunForm
from runs.models import Activity, Checkpoint, Run, start_run
from runs.registry import get_workflow

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000
HOSTILE_JSON = {
    "100,000 levels deep": (DEEP, "nested too deeply"),
    "65 levels deep": ('{"a": ' * 65 + "1" + "}" * 65, "nested too deeply"),
    "a lone surrogate": ('{"text": "\\ud800"}', "lone surrogates"),
    "a NUL": ('{"text": "a\\u0000b"}', "NUL"),
    "not JSON": ("{nope", "not valid JSON"),
    "not an object": ("[1, 2]", "must be a JSON object"),
}


@pytest.fixture
def client_in(client: Client) -> Client:
    user = get_user_model().objects.create_superuser("root", "", "pw-root-123")
    client.force_login(user)
    return client


def _counts() -> tuple[int, int, int]:
    return Run.objects.count(), Checkpoint.objects.count(), Activity.objects.count()


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_the_start_form_refuses_hostile_json(case: str) -> None:
    text, message = HOSTILE_JSON[case]
    form = StartRunForm(get_workflow("approval"), {"input": text})
    assert not form.is_valid()
    assert message in str(form.errors["input"])


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_the_edit_and_fork_form_refuses_hostile_json(case: str) -> None:
    text, message = HOSTILE_JSON[case]
    form = EditForkForm({"output_event": "{}", "store": text})
    assert not form.is_valid()
    assert message in str(form.errors["store"])


def test_the_start_page_answers_deep_json_with_the_form_again(client_in: Client) -> None:
    before = _counts()
    response = client_in.post("/runs/new/?workflow=approval", {"workflow": "approval", "input": DEEP})
    assert response.status_code == 400
    assert "nested too deeply" in response.content.decode()
    assert _counts() == before


@pytest.mark.django_db(transaction=True)
def test_the_edit_and_fork_page_answers_a_store_edit_naming_an_import_path(client_in: Client) -> None:
    import asyncio

    run = start_run("chain", {"steps": 2})
    asyncio.run(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False))
    ckpt = Checkpoint.objects.get(run=run, seq=2)
    before = _counts()
    forged: dict[str, Any] = {"x": {"__event__": {"type": "os.system", "data": {}}}}
    import json

    response = client_in.post(f"/checkpoints/{ckpt.id}/edit/", {"output_event": "", "store": json.dumps(forged)})
    assert response.status_code == 400
    assert "unknown event type" in response.content.decode()
    assert _counts() == before
