"""Who started, forked, cancelled and answered a run, and when: recorded once, shown on the
run page, in the API and in the admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from runs.models import Activity, ApiToken, Run, RunStatus
from tests.runs import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice() -> Any:
    return get_user_model().objects.create_superuser("alice", "", "pw-alice-123")


@pytest.fixture
def page(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def test_it_records_who_started_a_run_from_the_page(page: Client) -> None:
    response = page.post("/runs/new/?workflow=chain", {"workflow": "chain", "steps": "2"})
    run = Run.objects.get()
    assert response.status_code == 302
    [activity] = Activity.objects.filter(run=run)
    assert (activity.action, activity.username) == ("started", "alice")


def test_it_records_who_answered_and_shows_it_on_the_run_page(page: Client) -> None:
    run = Run.objects.create(workflow="approval", status=RunStatus.WAITING)
    page.post(f"/runs/{run.id}/respond/", {"response": "yes, ship it"})
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    [activity] = Activity.objects.filter(run=run)
    assert activity.action == "answered" and activity.detail == {"answer": {"response": "yes, ship it"}}
    content = page.get(f"/runs/{run.id}/").content.decode()
    assert "<strong>alice</strong> answered" in content and "yes, ship it" in content


def test_it_records_who_cancelled_through_the_api_and_lists_it(alice: Any) -> None:
    api = Client(headers={"Authorization": f"Bearer {ApiToken.issue(alice)[1]}"})
    run = Run.objects.create(workflow="chain", status=RunStatus.QUEUED)
    assert api.post(f"/api/runs/{run.id}/cancel/").status_code == 200
    activity = api.get(f"/api/runs/{run.id}/").json()["activity"]
    assert [(a["action"], a["username"]) for a in activity] == [("cancelled", "alice")]


def test_it_records_a_fork_with_its_point_and_edits(alice: Any) -> None:
    api = Client(headers={"Authorization": f"Bearer {ApiToken.issue(alice)[1]}"})
    ckpt = factories.checkpoint(state=factories.state_with({"steps": 2, "sleep": 0}))
    body = {"output_event": {"n": 2}}
    response = api.post(f"/api/checkpoints/{ckpt.id}/fork/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201
    [activity] = Activity.objects.filter(run_id=response.json()["id"])
    assert activity.action == "forked" and activity.username == "alice"
    assert activity.detail["seq"] == 1 and activity.detail["output_event"] == {"type": "Tick", "data": {"n": 2}}


def test_the_admin_shows_a_runs_activity(page: Client) -> None:
    run = Run.objects.create(workflow="chain", status=RunStatus.QUEUED)
    run.request_cancel(get_user_model().objects.get(username="alice"))
    content = page.get(f"/admin/runs/run/{run.id}/change/").content.decode()
    assert "cancelled" in content and "alice" in content
