"""Sweeps through the API: K variants of one checkpoint, run by a real worker, read as a matrix;
refusals name the variant and the field, and write nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs.executor import Worker
from runs.models import Activity, ApiToken, Checkpoint, Experiment, Run, start_run
from tests.runs import factories

pytestmark = pytest.mark.django_db


def _user(name: str, *perms: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="runs"))
    return user


def _client(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'tests')[1]}")


@pytest.fixture
def api() -> Client:
    return _client(_user("owner", "view_run", "add_run", "change_run"))


def _post(client: Client, url: str, body: Any) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(url, data, content_type="application/json")


def _work() -> None:
    asyncio.run(Worker(poll_interval=0.02).run(exit_when_idle=True, install_signals=False))


@pytest.fixture
def chain() -> Run:
    """A finished three-tick chain run, executed by a real worker: #1 begin -> Tick(n=1).
    (Tests using it need `transaction=True`: the worker commits from its own thread.)"""
    run = start_run("chain", {"steps": 3})
    _work()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result == {"ticks": 3}
    return run


@pytest.fixture
def begin() -> Checkpoint:
    """A chain run's first checkpoint (begin -> Tick(n=1)), written as a worker would."""
    run = start_run("chain", {"steps": 3})
    Run.objects.filter(pk=run.pk).update(status="succeeded", result={"ticks": 3})
    return factories.checkpoint(run, state=factories.state_with({"steps": 3, "sleep": 0.0}))


def _counts() -> tuple[int, int, int, int]:
    return Experiment.objects.count(), Run.objects.count(), Checkpoint.objects.count(), Activity.objects.count()


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    if code:
        assert body["error"]["code"] == code
    return dict(body["error"])


FIVE = [
    {"output_event": {"n": 1}},
    {"output_event": {"n": 5}},
    {"output_event": {"n": 7}},
    {"store": {"steps": 4}},
    {"output_event": {"n": 2}, "store": {"steps": 6}},
]


@pytest.mark.django_db(transaction=True)
def test_it_runs_a_sweep_of_five_variants_to_a_correct_matrix(api: Client, chain: Run) -> None:
    begin = chain.checkpoints.get(seq=1)
    response = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": FIVE, "name": "ticks"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["runs"]) == 5
    _work()

    matrix = api.get(f"/api/experiments/{body['experiment']}/").json()
    assert matrix["id"] == body["experiment"] and matrix["name"] == "ticks"
    assert matrix["checkpoint"] == str(begin.id) and matrix["base_run"] == str(chain.id)
    assert matrix["finished"] is True and matrix["counts"] == {"succeeded": 5}
    rows = matrix["runs"]
    assert [r["id"] for r in rows] == body["runs"] and [r["variant"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in rows] == ["succeeded"] * 5
    assert [r["result"] for r in rows] == [{"ticks": 3}, {"ticks": 5}, {"ticks": 7}, {"ticks": 4}, {"ticks": 6}]
    assert [r["edits"] for r in rows] == FIVE
    assert rows[1]["fork_edits"] == {"output_event": {"type": "Tick", "data": {"n": 5}}}
    assert rows[3]["fork_edits"] == {"store": {"steps": 4}}
    assert all(r["duration_ms"] is not None and r["duration_ms"] >= 0 and r["tokens"] == 0 for r in rows)
    assert rows[0]["changes"] == []  # the same result as the base run
    assert rows[1]["changes"] == [{"path": "result.ticks", "kind": "changed", "base": "3", "variant": "5"}]


def test_each_variant_is_a_fork_of_the_checkpoint_in_the_experiment(api: Client, begin: Checkpoint) -> None:
    body = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": FIVE[:2]}).json()
    experiment = Experiment.objects.get(pk=body["experiment"])
    runs = list(experiment.runs.order_by("variant"))
    assert [str(r.id) for r in runs] == body["runs"]
    assert all(r.parent_checkpoint_id == begin.id and r.status == "queued" for r in runs)
    assert experiment.base_run_id == begin.run_id and experiment.variants == FIVE[:2]
    assert [r.fork_edits for r in runs] == [{"output_event": {"type": "Tick", "data": {"n": k}}} for k in (1, 5)]
    assert experiment.created_by is not None and experiment.created_by.username == "owner"


def test_it_records_the_sweep_on_the_base_run_and_a_fork_on_each_variant(api: Client, begin: Checkpoint) -> None:
    body = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": FIVE[:3]}).json()
    swept = Activity.objects.get(run=begin.run, action="swept")
    assert swept.username == "owner"
    assert swept.detail == {"checkpoint": str(begin.id), "seq": 1, "experiment": body["experiment"], "variants": 3}
    forked = Activity.objects.get(run_id=body["runs"][2], action="forked")
    assert forked.detail["variant"] == 2 and forked.detail["experiment"] == body["experiment"]


def test_it_expands_a_grid_into_every_combination(api: Client, begin: Checkpoint) -> None:
    grid = {"output_event.n": [1, 2, 3], "store.steps": [4, 9]}
    body = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"grid": grid}).json()
    runs = Run.objects.filter(experiment_id=body["experiment"]).order_by("variant")
    assert [(r.fork_edits["output_event"]["data"]["n"], r.fork_edits["store"]["steps"]) for r in runs] == [
        (1, 4),
        (1, 9),
        (2, 4),
        (2, 9),
        (3, 4),
        (3, 9),
    ]
    assert Experiment.objects.get(pk=body["experiment"]).grid == grid
    rows = api.get(f"/api/experiments/{body['experiment']}/").json()["runs"]
    assert rows[1]["edits"] == {"output_event": {"n": 1}, "store": {"steps": 9}}


def test_a_grid_over_a_store_key_sets_only_that_key(api: Client, begin: Checkpoint) -> None:
    body = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"grid": {"store.sleep": [0.0, 0.5]}}).json()
    assert [r.fork_edits for r in Run.objects.filter(experiment_id=body["experiment"]).order_by("variant")] == [
        {"store": {"sleep": 0.0}},
        {"store": {"sleep": 0.5}},
    ]


BAD_VARIANTS = {
    "a wrong type": ({"output_event": {"n": "many"}}, "variants[3].output_event.n"),
    "an unknown field": ({"output_event": {"n": 2, "colour": "red"}}, "variants[3].output_event.colour"),
    "a missing field": ({"output_event": {}}, "variants[3].output_event.n"),
    "an unknown event type": ({"output_event": {"type": "os.system", "data": {}}}, "variants[3].output_event.type"),
    "another workflow's event type": (
        {"output_event": {"type": "JokeEvent", "data": {"joke": "x"}}},
        "variants[3].output_event.type",
    ),
    "wrong data for a named type": (
        {"output_event": {"type": "Tick", "data": {"n": []}}},
        "variants[3].output_event.data.n",
    ),
    "a store value naming an import path": (
        {"store": {"x": {"__event__": {"type": "subprocess.Popen", "data": {}}}}},
        "variants[3].store.x",
    ),
    "store edits that are no object": ({"store": [1, 2]}, "variants[3].store"),
    "an output event that is no object": ({"output_event": "n=2"}, "variants[3].output_event"),
    "an unknown key": ({"output_events": {"n": 2}}, "variants[3].output_events"),
    "a variant that is no object": ("n=2", "variants[3]"),
    "a NUL character": ({"store": {"k": "a\u0000b"}}, "variants[3].store"),
    "a lone surrogate": ({"output_event": {"n": 2, "x": "\ud800"}}, "variants[3].output_event"),
}


@pytest.mark.parametrize("case", list(BAD_VARIANTS))
def test_one_bad_variant_is_refused_naming_it_and_nothing_is_written(api: Client, begin: Checkpoint, case: str) -> None:
    bad, field = BAD_VARIANTS[case]
    before = _counts()
    variants = [*FIVE[:3], bad, FIVE[4]]
    # json.dumps writes a lone surrogate as the escape \ud800, which JSON allows.
    err = _error(_post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": variants}), 422, "invalid_variant")
    assert err["field"] == field
    assert "variant 3" in err["message"]
    assert _counts() == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"variants": []}, "variants"),
        ({"variants": [{}] * 101}, "variants"),
        ({}, "variants"),
        ({"variants": [{}], "grid": {"store.steps": [1]}}, "variants"),
        ({"grid": {}}, "grid"),
        ({"grid": {"store.a": [1], "store.b": [2], "store.c": [3]}}, "grid"),
        ({"grid": {"output_event.n": list(range(11)), "store.steps": list(range(10))}}, "grid"),
        ({"grid": {"topic": ["cats"]}}, "grid.topic"),
        ({"grid": {"store.steps": []}}, "grid.store.steps"),
        ({"grid": {"store.steps": 3}}, "grid.store.steps"),
        ({"grid": ["store.steps"]}, "grid"),
        ({"variants": {"0": {}}}, "variants"),
        ({"variants": [{}], "name": "x" * 201}, "name"),
    ],
)
def test_it_refuses_bad_sweeps_naming_the_field(api: Client, begin: Checkpoint, body: Any, field: str) -> None:
    before = _counts()
    err = _error(_post(api, f"/api/checkpoints/{begin.id}/sweep/", body), 422)
    assert err["field"] == field, err
    assert _counts() == before


def test_a_bad_grid_value_names_its_variant(api: Client, begin: Checkpoint) -> None:
    body = {"grid": {"output_event.n": [1, "two", 3]}}
    err = _error(_post(api, f"/api/checkpoints/{begin.id}/sweep/", body), 422, "invalid_variant")
    assert err["field"] == "variants[1].output_event.n"
    assert Experiment.objects.count() == 0


@pytest.mark.parametrize("body", ["{not json", '["a list"]', "null", '{"variants": [' * 70 + "]" * 70 + "}"])
def test_it_refuses_malformed_bodies(api: Client, begin: Checkpoint, body: str) -> None:
    before = _counts()
    response = _post(api, f"/api/checkpoints/{begin.id}/sweep/", body)
    assert 400 <= response.status_code < 500, response.content
    assert _counts() == before


def test_it_refuses_bodies_over_one_megabyte(api: Client, begin: Checkpoint) -> None:
    body = {"variants": [{"store": {"payload": "x" * (1024 * 1024)}}]}
    _error(_post(api, f"/api/checkpoints/{begin.id}/sweep/", body), 413, "too_large")
    assert Experiment.objects.count() == 0


def test_it_answers_unknown_and_tampered_checkpoints(api: Client, begin: Checkpoint) -> None:
    _error(_post(api, f"/api/checkpoints/{uuid.uuid4()}/sweep/", {"variants": [{}]}), 404, "not_found")
    _error(_post(api, "/api/checkpoints/not-a-uuid/sweep/", {"variants": [{}]}), 422)
    Checkpoint.objects.filter(pk=begin.pk).update(output_event={"type": "subprocess.Popen", "data": {}})
    _error(_post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": [{}]}), 409, "corrupt")
    assert Experiment.objects.count() == 0


def test_it_404s_an_unknown_experiment(api: Client) -> None:
    _error(api.get(f"/api/experiments/{uuid.uuid4()}/"), 404, "not_found")
    _error(api.get("/api/experiments/nope/"), 422)


def test_sweeping_needs_the_add_permission(begin: Checkpoint) -> None:
    reader = _client(_user("reader", "view_run"))
    err = _error(_post(reader, f"/api/checkpoints/{begin.id}/sweep/", {"variants": [{}]}), 403, "forbidden")
    assert "runs.add_run" in err["message"]
    assert Experiment.objects.count() == 0


def test_reading_an_experiment_needs_the_view_permission(api: Client, begin: Checkpoint) -> None:
    body = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": [{}]}).json()
    nobody = _client(_user("nobody"))
    _error(nobody.get(f"/api/experiments/{body['experiment']}/"), 403, "forbidden")
    _error(Client().get(f"/api/experiments/{body['experiment']}/"), 401, "unauthenticated")
    _error(_post(Client(), f"/api/checkpoints/{begin.id}/sweep/", {"variants": [{}]}), 401)


def test_the_session_needs_csrf_to_sweep(begin: Checkpoint) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user("sess", "view_run", "add_run"))
    response = _post(client, f"/api/checkpoints/{begin.id}/sweep/", {"variants": [{}]})
    assert response.status_code in (401, 403)
    assert Experiment.objects.count() == 0


def test_it_leaves_a_large_result_out_of_the_matrix(api: Client, begin: Checkpoint) -> None:
    body = _post(api, f"/api/checkpoints/{begin.id}/sweep/", {"variants": [{}, {}]}).json()
    big = {"text": "y" * 100_000}
    Run.objects.filter(pk=body["runs"][0]).update(status="succeeded", result=big)
    Run.objects.filter(pk=body["runs"][1]).update(status="succeeded", result={"ticks": 3})
    rows = api.get(f"/api/experiments/{body['experiment']}/").json()["runs"]
    assert rows[0]["result"] is None and rows[0]["result_truncated"] is True and rows[0]["changes"] is None
    assert rows[0]["url"] == f"/api/runs/{body['runs'][0]}/"
    assert rows[1]["result"] == {"ticks": 3} and rows[1]["result_truncated"] is False


def test_it_documents_the_routes(api: Client) -> None:
    paths = api.get("/api/openapi.json").json()["paths"]
    assert "/api/checkpoints/{checkpoint_id}/sweep/" in paths and "/api/experiments/{experiment_id}/" in paths
