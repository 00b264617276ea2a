"""Forks and sweeps on every surface: checkpoint pages need the view permission too, NaN and
Infinity are refused with a 4xx naming the field (never a 500, nothing written), and typed
errors (unknown or corrupt checkpoint) choose the API's answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from runs import inputs, live
from runs.experiments import create_sweep, parse_edit_lines
from runs.models import Activity, ApiToken, Checkpoint, Experiment, Run, fork_point, fork_run, start_run
from tests.runs import factories

pytestmark = pytest.mark.django_db


def _user(name: str, *perms: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="runs"))
    return user


def _api(*perms: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(_user('api', *perms), 'tests')[1]}")


@pytest.fixture
def owner(client: Client) -> Client:
    client.force_login(_user("owner", "view_run", "add_run"))
    return client


@pytest.fixture
def begin() -> Checkpoint:
    """A chain run's first checkpoint (begin -> Tick(n=1)), written as a worker would."""
    run = start_run("chain", {"steps": 3})
    Run.objects.filter(pk=run.pk).update(status="succeeded", result={"ticks": 3})
    return factories.checkpoint(run, state=factories.state_with({"steps": 3, "sleep": 0.0}))


def _counts() -> tuple[int, int, int, int]:
    return Experiment.objects.count(), Run.objects.count(), Checkpoint.objects.count(), Activity.objects.count()


def _post_json(client: Client, url: str, text: str) -> Any:
    # Python's json reads NaN and Infinity, and so does the API's parser: the body is sent as text.
    return client.post(url, text, content_type="application/json")


# -- 1. checkpoint pages show checkpoint data: they need view_run as well -----------------------


@pytest.mark.parametrize("page", ["sweep", "edit"])
def test_an_add_only_user_may_not_open_or_post_a_checkpoints_pages(
    client: Client, begin: Checkpoint, page: str
) -> None:
    client.force_login(_user("adder", "add_run"))
    before = _counts()
    url = f"/checkpoints/{begin.id}/{page}/"
    assert client.get(f"/checkpoints/{begin.id}/").status_code == 403
    got = client.get(url)
    assert got.status_code == 403 and b"Tick" not in got.content and b"steps" not in got.content
    posted = client.post(url, {"variants": '{"output_event": {"n": 2}}', "output_event": '{"n": 2}', "store": ""})
    assert posted.status_code == 403
    assert client.post(f"/checkpoints/{begin.id}/fork/").status_code == 403
    assert _counts() == before


@pytest.mark.parametrize("page", ["sweep", "edit"])
def test_a_view_only_user_may_not_fork_from_the_pages(client: Client, begin: Checkpoint, page: str) -> None:
    client.force_login(_user("viewer", "view_run"))
    assert client.get(f"/checkpoints/{begin.id}/{page}/").status_code == 403


@pytest.mark.parametrize("page", ["sweep", "edit"])
def test_a_user_who_may_view_and_add_opens_both_pages(owner: Client, begin: Checkpoint, page: str) -> None:
    assert owner.get(f"/checkpoints/{begin.id}/{page}/").status_code == 200


# -- 2. NaN and Infinity: refused on every surface, naming the field ----------------------------


def test_reject_nul_names_where_a_non_finite_number_is() -> None:
    with pytest.raises(inputs.InputError) as found:
        inputs.reject_nul({"a": [1, {"b": float("inf")}]}, "the store edits")
    assert "Infinity" in str(found.value) and found.value.field == "a.1.b"
    with pytest.raises(inputs.InputError, match="NaN"):
        inputs.reject_nul(float("nan"), "the input")
    inputs.reject_nul({"a": [1.5, -2.0, 1e308]}, "the input")


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a": [NaN]}'])
def test_json_text_with_nan_or_infinity_is_not_json(text: str) -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        inputs.loads(text)
    with pytest.raises(inputs.InputError, match="not valid JSON"):
        inputs.parse_json_object('{"x": ' + text + "}", "--store")
    with pytest.raises(inputs.InputError, match="not a JSON number"):
        parse_edit_lines('{"store": {"a": ' + text + "}}")
    with pytest.raises(inputs.InputError, match="not a JSON number"):
        parse_edit_lines('[{"store": {"a": ' + text + "}}]")


@pytest.mark.parametrize(
    "body, field, at",
    [
        ('{"store": {"a": NaN}}', "store", "(at a)"),
        ('{"store": {"a": {"b": [Infinity]}}}', "store", "(at a.b.0)"),
        ('{"output_event": {"n": -Infinity}}', "output_event", "(at n)"),
    ],
)
def test_the_fork_api_refuses_non_finite_numbers(begin: Checkpoint, body: str, field: str, at: str) -> None:
    before = _counts()
    response = _post_json(_api("view_run", "add_run"), f"/api/checkpoints/{begin.id}/fork/", body)
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["field"] == field and "finite" in error["message"]
    assert error["message"].endswith(at)
    assert _counts() == before


@pytest.mark.parametrize(
    "body, code, field",
    [
        ('{"variants": [{"store": {"a": Infinity}}]}', "invalid_variant", "variants[0].store.a"),
        ('{"variants": [{"store": {"a": 1}}, {"output_event": {"n": NaN}}]}', "invalid_variant", None),
        ('{"grid": {"store.a": [1, Infinity]}}', "invalid", None),
        ('{"grid": {"output_event.n": [NaN]}}', "invalid", None),
    ],
)
def test_the_sweep_api_refuses_non_finite_numbers(begin: Checkpoint, body: str, code: str, field: str | None) -> None:
    before = _counts()
    response = _post_json(_api("view_run", "add_run"), f"/api/checkpoints/{begin.id}/sweep/", body)
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == code and ("NaN" in error["message"] or "Infinity" in error["message"])
    if field:
        assert error["field"] == field
    assert _counts() == before


def test_the_start_api_refuses_non_finite_numbers() -> None:
    before = _counts()
    body = '{"workflow": "chain", "input": {"steps": 3, "payload": {"x": NaN}}}'
    response = _post_json(_api("view_run", "add_run"), "/api/runs/", body)
    assert 400 <= response.status_code < 500, response.content
    assert response.json()["error"]["field"] == "input"
    assert _counts() == before


@pytest.mark.parametrize(
    "form",
    [
        {"field_1": "store.steps", "values_1": "2\nInfinity"},
        {"field_1": "output_event.n", "values_1": "NaN"},
        {"field_1": "store.steps", "values_1": "-Infinity"},
        {"variants": '{"store": {"steps": NaN}}'},
        {"variants": '[{"output_event": {"n": Infinity}}]'},
    ],
)
def test_the_sweep_form_refuses_non_finite_numbers(owner: Client, begin: Checkpoint, form: dict[str, str]) -> None:
    before = _counts()
    response = owner.post(f"/checkpoints/{begin.id}/sweep/", form)
    assert response.status_code == 400
    assert "not a JSON number" in response.content.decode()
    assert _counts() == before


@pytest.mark.parametrize(
    "form", [{"output_event": '{"n": NaN}', "store": ""}, {"output_event": "", "store": '{"a": Infinity}'}]
)
def test_the_edit_fork_form_refuses_non_finite_numbers(owner: Client, begin: Checkpoint, form: dict[str, str]) -> None:
    before = _counts()
    response = owner.post(f"/checkpoints/{begin.id}/edit/", form)
    assert response.status_code == 400
    assert "not a JSON number" in response.content.decode()
    assert _counts() == before


def test_the_start_form_refuses_non_finite_numbers(owner: Client) -> None:
    before = _counts()
    form = {"workflow": "chain", "steps": "", "input": '{"steps": 3, "payload": {"x": Infinity}}'}
    response = owner.post("/runs/new/?workflow=chain", form)
    assert response.status_code == 400
    assert "not a JSON number" in response.content.decode()
    assert _counts() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("text", ['{"store": {"steps": NaN}}\n', '[{"output_event": {"n": Infinity}}]'])
def test_the_cli_refuses_non_finite_numbers(begin: Checkpoint, manage: Any, tmp_path: Path, text: str) -> None:
    path = tmp_path / "variants.jsonl"
    path.write_text(text)
    before = _counts()
    done = manage("fork", str(begin.id), "--variants", str(path))
    assert done.returncode == 1 and "not a JSON number" in done.stderr and "Traceback" not in done.stderr
    done = manage("fork", str(begin.id), "--store", '{"steps": NaN}')
    assert done.returncode == 1 and "not valid JSON" in done.stderr and "Traceback" not in done.stderr
    assert _counts() == before


def test_model_functions_refuse_non_finite_numbers_given_as_python_floats(begin: Checkpoint) -> None:
    before = _counts()
    with pytest.raises(inputs.InputError, match="Infinity"):
        fork_run(begin.id, store={"a": float("inf")})
    with pytest.raises(inputs.InputError, match="NaN"):
        create_sweep(begin.id, grid={"store.a": [float("nan")]})
    with pytest.raises(inputs.InputError, match="NaN"):
        start_run("chain", {"steps": 3, "payload": float("nan")})
    assert _counts() == before


# -- 3. one owner for creating forks -------------------------------------------------------------


def test_a_sweep_and_a_fork_make_runs_and_activity_the_same_way(begin: Checkpoint, monkeypatch: Any) -> None:
    announced: list[list[Any]] = []
    monkeypatch.setattr(live, "announce_runs", lambda ids: announced.append(list(ids)))
    one = fork_run(begin.id, store={"steps": 5})
    experiment = create_sweep(begin.id, variants=[{"store": {"steps": 4}}, {"output_event": {"n": 2}}])
    runs = list(experiment.runs.order_by("variant"))
    assert experiment.variant_count == 2 and [r.variant for r in runs] == [0, 1]
    assert announced == [[one.id], [r.id for r in runs]]  # one batch for the sweep
    forked = Activity.objects.get(run=one)
    assert (
        forked.action == "forked" and forked.detail["checkpoint"] == str(begin.id) and "experiment" not in forked.detail
    )
    assert one.variant is None and one.experiment_id is None
    for run in runs:
        detail = Activity.objects.get(run=run).detail
        assert detail["experiment"] == str(experiment.id) and detail["variant"] == run.variant
        assert run.fork_edits and {k: detail[k] for k in run.fork_edits} == run.fork_edits
    swept = Activity.objects.get(run=begin.run, action="swept")
    assert swept.detail["variants"] == 2


# -- 4. typed errors ---------------------------------------------------------------------------------


def test_fork_point_raises_typed_errors(begin: Checkpoint) -> None:
    with pytest.raises(inputs.UnknownCheckpoint):
        fork_point("00000000-0000-0000-0000-000000000000")
    with pytest.raises(inputs.UnknownCheckpoint):
        fork_point("not-a-uuid")
    Checkpoint.objects.filter(pk=begin.pk).update(output_event={"type": "subprocess.Popen", "data": {}})
    with pytest.raises(inputs.CorruptCheckpoint):
        fork_point(begin.id)


@pytest.mark.parametrize("route, body", [("fork", {}), ("sweep", {"variants": [{}]})])
def test_the_api_answers_404_and_409_by_error_type(begin: Checkpoint, route: str, body: dict[str, Any]) -> None:
    api = _api("view_run", "add_run")
    missing = _post_json(api, f"/api/checkpoints/00000000-0000-0000-0000-000000000000/{route}/", json.dumps(body))
    assert missing.status_code == 404
    Checkpoint.objects.filter(pk=begin.pk).update(output_event={"type": "subprocess.Popen", "data": {}})
    before = _counts()
    corrupt = _post_json(api, f"/api/checkpoints/{begin.id}/{route}/", json.dumps(body))
    assert corrupt.status_code == 409 and corrupt.json()["error"]["code"] == "corrupt"
    assert _counts() == before


# -- 6. the admin's experiment list reads K, stored at creation ----------------------------------


def test_the_experiment_admin_list_shows_k_without_counting_runs(admin_client: Client, begin: Checkpoint) -> None:
    experiment = create_sweep(begin.id, grid={"store.steps": [2, 3, 4]})
    assert Experiment.objects.get(pk=experiment.pk).variant_count == 3
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/admin/runs/experiment/")
    assert page.status_code == 200
    cells = page.content.decode()
    assert '<td class="field-runs_made">3</td>' in cells
    assert not any("GROUP BY" in q["sql"].upper() for q in queries.captured_queries)
    short = str(experiment.id)[:8]
    found = admin_client.get("/admin/runs/experiment/", {"q": short})
    assert short in found.content.decode()
    refused = admin_client.get("/admin/runs/experiment/", {"q": "no such id"})
    assert "Search is by id" in refused.content.decode()
