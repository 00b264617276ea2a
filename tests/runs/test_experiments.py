"""Sweeps on pages, in the admin and on the command line: the sweep form, the experiment's
matrix, the links between runs and experiments, and refusals that write nothing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from runs.experiments import create_sweep, expand_grid, parse_edit_lines, summarize_edits
from runs.inputs import InputError
from runs.models import Activity, Checkpoint, Experiment, Run, start_run
from tests.runs import factories

pytestmark = pytest.mark.django_db


def _user(name: str, *perms: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="runs"))
    return user


@pytest.fixture
def owner(client: Client) -> Client:
    client.force_login(_user("owner", "view_run", "add_run", "change_run"))
    return client


@pytest.fixture
def begin() -> Checkpoint:
    """A finished chain run's first checkpoint (begin -> Tick(n=1)), written as a worker would."""
    run = start_run("chain", {"steps": 3})
    Run.objects.filter(pk=run.pk).update(status="succeeded", result={"ticks": 3})
    return factories.checkpoint(run, state=factories.state_with({"steps": 3, "sleep": 0.0}))


def _counts() -> tuple[int, int, int]:
    return Experiment.objects.count(), Run.objects.count(), Activity.objects.count()


def _text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


# -- the grid and the edit list ------------------------------------------------------


def test_a_grid_over_an_event_field_keeps_the_events_other_fields() -> None:
    variants = expand_grid({"output_event.topic": ["cats", "tax"]}, {"topic": "atoms", "tone": "dry"})
    assert variants == [
        {"output_event": {"topic": "cats", "tone": "dry"}},
        {"output_event": {"topic": "tax", "tone": "dry"}},
    ]


def test_a_grid_over_two_fields_varies_the_last_fastest() -> None:
    variants = expand_grid({"output_event.topic": ["a", "b"], "store.t": [0.1, 0.9]}, {"topic": "x"})
    assert [(v["output_event"]["topic"], v["store"]["t"]) for v in variants] == [
        ("a", 0.1),
        ("a", 0.9),
        ("b", 0.1),
        ("b", 0.9),
    ]


def test_a_grid_cannot_vary_the_event_of_a_checkpoint_without_one() -> None:
    with pytest.raises(InputError) as caught:
        expand_grid({"output_event.n": [1]}, None)
    assert caught.value.field == "grid.output_event.n"


def test_edit_lines_name_the_line_of_bad_json() -> None:
    with pytest.raises(InputError, match="line 3: not valid JSON"):
        parse_edit_lines('{"store": {}}\n\n{nope}\n')
    assert parse_edit_lines('{"a": 1}\n\n{"b": 2}\n') == [("line 1", {"a": 1}), ("line 3", {"b": 2})]
    assert parse_edit_lines('[{"a": 1}, {}]') == [("item 1", {"a": 1}), ("item 2", {})]


def test_edits_are_summarized_as_what_changed() -> None:
    base = {"type": "Tick", "data": {"n": 1, "label": "x"}}
    edits = {"output_event": {"type": "Tick", "data": {"n": 5, "label": "x"}}, "store": {"steps": 4}}
    assert summarize_edits(edits, base) == "n=5, store.steps=4"
    assert summarize_edits({}, base) == "no edits"
    assert summarize_edits({"output_event": {"type": "StopEvent", "data": {}}}, base) == "type=StopEvent"


# -- the sweep form ------------------------------------------------------------------


def test_the_checkpoint_row_offers_a_sweep_beside_edit_and_fork(owner: Client, begin: Checkpoint) -> None:
    page = _text(owner.get(f"/runs/{begin.run_id}/"))
    assert f'href="/checkpoints/{begin.id}/edit/">Edit and fork</a>' in page
    assert f'href="/checkpoints/{begin.id}/sweep/"' in page


def test_the_sweep_form_offers_the_events_fields_and_store_keys(owner: Client, begin: Checkpoint) -> None:
    page = _text(owner.get(f"/checkpoints/{begin.id}/sweep/"))
    assert 'name="csrfmiddlewaretoken"' in page
    for field in ("output_event.n", "store.steps", "store.sleep"):
        assert f'<option value="{field}">' in page


def test_a_list_of_edits_creates_the_experiment_and_opens_it(owner: Client, begin: Checkpoint) -> None:
    lines = '{"output_event": {"n": 2}}\n{"store": {"steps": 5}}\n'
    response = owner.post(f"/checkpoints/{begin.id}/sweep/", {"variants": lines, "name": "two"})
    experiment = Experiment.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/experiments/{experiment.id}/"
    assert experiment.name == "two" and experiment.runs.count() == 2


def test_a_grid_from_the_form_reads_plain_text_and_json_values(owner: Client, begin: Checkpoint) -> None:
    form = {"field_1": "store.label", "values_1": "cats\natoms\n\ntax", "field_2": "output_event.n", "values_2": "1\n2"}
    owner.post(f"/checkpoints/{begin.id}/sweep/", form)
    runs = Experiment.objects.get().runs.order_by("variant")
    assert [(r.fork_edits["store"]["label"], r.fork_edits["output_event"]["data"]["n"]) for r in runs] == [
        ("cats", 1),
        ("cats", 2),
        ("atoms", 1),
        ("atoms", 2),
        ("tax", 1),
        ("tax", 2),
    ]


FORM_REFUSALS = {
    "a bad variant, named with its line": (
        {"variants": '{"output_event": {"n": 2}}\n\n{"output_event": {"n": "x"}}'},
        "Line 3, variant 1: invalid Tick",
    ),
    "bad JSON": ({"variants": '{"store": {}}\n{nope'}, "line 2: not valid JSON"),
    "a bad grid value": ({"field_1": "output_event.n", "values_1": "1\nmany"}, "variant 1: invalid Tick"),
    "an unknown grid field": ({"field_1": "topic", "values_1": "a"}, "must be output_event.&lt;field&gt; or store"),
    "a grid field without values": ({"field_1": "store.x", "values_1": "\n"}, "List at least one value."),
    "the same field twice": (
        {"field_1": "store.x", "values_1": "1", "field_2": "store.x", "values_2": "2"},
        "Vary two different fields.",
    ),
    "both forms at once": ({"variants": "{}", "field_1": "store.x", "values_1": "1"}, "not both"),
    "nothing": ({}, "Give a list of edits, or a field and its values."),
    "too many variants": ({"variants": "{}\n" * 101}, "at most 100 variants"),
    "a grid of too many": (
        {"field_1": "store.a", "values_1": "1\n" * 11, "field_2": "store.b", "values_2": "1\n" * 10},
        "the grid makes 110 variants",
    ),
    "a NUL character": ({"variants": '{"store": {"k": "a\\u0000b"}}'}, "NUL"),
    "a lone surrogate in a key": ({"variants": '{"\\ud800": 1}'}, "unknown key &#x27;\\ud800&#x27;"),
    "deep JSON": ({"variants": "[" * 100_000 + "]" * 100_000}, "nested too deeply"),
    "a forged event type": (
        {"variants": json.dumps({"store": {"x": {"__event__": {"type": "os.system", "data": {}}}}})},
        "unknown event type",
    ),
}


@pytest.mark.parametrize("case", list(FORM_REFUSALS))
def test_the_form_refuses_bad_sweeps_inline_and_writes_nothing(owner: Client, begin: Checkpoint, case: str) -> None:
    data, message = FORM_REFUSALS[case]
    before = _counts()
    response = owner.post(f"/checkpoints/{begin.id}/sweep/", data)
    assert response.status_code == 400
    assert message in _text(response)
    assert _counts() == before


def test_sweeping_on_a_page_needs_the_add_permission(client: Client, begin: Checkpoint) -> None:
    client.force_login(_user("reader", "view_run"))
    assert client.get(f"/checkpoints/{begin.id}/sweep/").status_code == 403
    assert client.post(f"/checkpoints/{begin.id}/sweep/", {"variants": "{}"}).status_code == 403
    assert Experiment.objects.count() == 0


def test_the_sweep_form_needs_csrf(begin: Checkpoint) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(_user("owner", "view_run", "add_run"))
    assert client.post(f"/checkpoints/{begin.id}/sweep/", {"variants": "{}"}).status_code == 403
    assert Experiment.objects.count() == 0


def test_an_unknown_checkpoint_has_no_sweep_form(owner: Client) -> None:
    assert owner.get("/checkpoints/00000000-0000-0000-0000-000000000000/sweep/").status_code == 404


# -- the experiment page -------------------------------------------------------------


@pytest.fixture
def experiment(begin: Checkpoint) -> Experiment:
    variants = [{"output_event": {"n": 1}}, {"output_event": {"n": 5}}, {"store": {"steps": 4}}]
    experiment = create_sweep(begin.id, variants=variants, name="ticks")
    runs = list(experiment.runs.order_by("variant"))
    Run.objects.filter(pk=runs[0].pk).update(status="succeeded", result={"ticks": 3})
    Run.objects.filter(pk=runs[1].pk).update(status="failed", error="step 'tick' failed: boom")
    return experiment


def test_the_experiment_page_shows_a_row_per_variant(owner: Client, experiment: Experiment) -> None:
    page = _text(owner.get(f"/experiments/{experiment.id}/"))
    runs = list(experiment.runs.order_by("variant"))
    assert "ticks" in page and f'href="/runs/{experiment.base_run_id}/"' in page
    for run in runs:
        assert f'href="/runs/{run.id}/"' in page
    assert '<tr id="variant-0" data-status="succeeded">' in page
    assert "n=5" in page and "store.steps=4" in page
    assert "same as base" in page  # variant 0 has the base run's result
    assert "step &#x27;tick&#x27; failed: boom" in page


def test_the_matrix_diffs_a_result_against_the_base_runs(owner: Client, experiment: Experiment) -> None:
    run = experiment.runs.get(variant=2)
    Run.objects.filter(pk=run.pk).update(status="succeeded", result={"ticks": 4})
    page = _text(owner.get(f"/experiments/{experiment.id}/"))
    assert "1 change</summary>" in page
    assert '<span class="mono">result.ticks</span> <span class="muted">changed</span>' in page
    assert f'href="/runs/{experiment.base_run_id}/compare/{run.id}/"' in page


def test_the_matrix_polls_until_every_run_ended(owner: Client, experiment: Experiment) -> None:
    url = f"/experiments/{experiment.id}/"
    assert 'hx-trigger="every 1s"' in _text(owner.get(url))
    experiment.runs.filter(variant=2).update(status="cancelled")
    fragment = _text(owner.get(url, {"fragment": "matrix"}))
    assert fragment.startswith('<section id="matrix" data-finished="1"') and "hx-trigger" not in fragment


def test_a_poll_that_finds_nothing_changed_is_answered_204(owner: Client, experiment: Experiment) -> None:
    url = f"/experiments/{experiment.id}/"
    since = re.search(r"since=([^\"&]+)", _text(owner.get(url))).group(1)  # type: ignore[union-attr]
    from urllib.parse import unquote

    assert owner.get(url, {"fragment": "matrix", "since": unquote(since)}).status_code == 204
    experiment.runs.filter(variant=2).update(status="running", updated_at=timezone.now())
    changed = owner.get(url, {"fragment": "matrix", "since": unquote(since)})
    assert changed.status_code == 200 and '<tr id="variant-2" data-status="running">' in _text(changed)


def test_an_experiment_run_links_back_to_its_experiment(owner: Client, experiment: Experiment) -> None:
    run = experiment.runs.get(variant=1)
    page = _text(owner.get(f"/runs/{run.id}/"))
    assert f'<a href="/experiments/{experiment.id}/" id="experiment-link">variant 1 of experiment' in page


def test_the_base_run_lists_the_sweep_in_its_activity(owner: Client, experiment: Experiment) -> None:
    page = _text(owner.get(f"/runs/{experiment.base_run_id}/"))
    assert f'into <a href="/experiments/{experiment.id}/">3 variants</a>' in page


def test_the_experiment_page_needs_the_view_permission(client: Client, experiment: Experiment) -> None:
    url = f"/experiments/{experiment.id}/"
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(_user("nobody"))
    assert client.get(url).status_code == 403
    assert client.get(url, {"fragment": "matrix"}).status_code == 403


def test_an_unknown_experiment_is_404(owner: Client) -> None:
    assert owner.get("/experiments/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert owner.get("/experiments/nope/").status_code == 404


def test_the_experiment_page_answers_get_only(owner: Client, experiment: Experiment) -> None:
    assert owner.post(f"/experiments/{experiment.id}/").status_code == 405


def test_the_matrix_reads_a_bounded_number_of_queries(
    owner: Client, begin: Checkpoint, django_assert_max_num_queries: Any
) -> None:
    experiment = create_sweep(begin.id, variants=[{"output_event": {"n": k}} for k in range(1, 41)])
    experiment.runs.update(status="succeeded", result={"ticks": 9})
    with django_assert_max_num_queries(12):
        assert owner.get(f"/experiments/{experiment.id}/", {"fragment": "matrix"}).status_code == 200


def test_prune_removes_an_old_experiment_with_its_runs_and_base(experiment: Experiment) -> None:
    from datetime import timedelta

    from runs.retention import prune

    old = timezone.now() - timedelta(days=60)
    Run.objects.update(status="succeeded", created_at=old, finished_at=old)
    assert prune(timezone.now() - timedelta(days=30)) == 4  # the three variants, then the base run
    assert Run.objects.count() == 0 and Experiment.objects.count() == 0


# -- the admin -----------------------------------------------------------------------


def test_the_admin_lists_and_shows_experiments_read_only(admin_client: Client, experiment: Experiment) -> None:
    listing = _text(admin_client.get("/admin/runs/experiment/"))
    assert str(experiment.id)[:8] in listing
    page = _text(admin_client.get(f"/admin/runs/experiment/{experiment.id}/change/"))
    assert f'href="/experiments/{experiment.id}/"' in page and "&quot;n&quot;: 5" in page
    assert admin_client.get("/admin/runs/experiment/add/").status_code == 403
    response = admin_client.post(f"/admin/runs/experiment/{experiment.id}/delete/", {"post": "yes"})
    assert response.status_code == 403 and Experiment.objects.count() == 1
    runs = _text(admin_client.get(f"/admin/runs/run/?experiment__id__exact={experiment.id}"))
    for run in experiment.runs.all():
        assert f'title="{run.id}"' in runs


# -- the command line ----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_fork_variants_from_a_jsonl_file_waits_and_prints_the_matrix(
    begin: Checkpoint, spawn: Any, manage: Any, tmp_path: Path
) -> None:
    spawn("wfworker", "--poll-interval", "0.05")
    path = tmp_path / "variants.jsonl"
    path.write_text('{"output_event": {"n": 1}}\n\n{"output_event": {"n": 6}}\n{"store": {"steps": 4}}\n')
    done = manage("fork", str(begin.id)[:8], "--variants", str(path), "--wait", "--timeout", "60")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    experiment = Experiment.objects.get()
    assert lines[0] == f"experiment {experiment.id}"
    assert lines[1:4] == [str(r.id) for r in experiment.runs.order_by("variant")]
    rows = [line.split("\t") for line in lines[5:]]
    assert [(r[0], r[1], r[4], r[5], r[6]) for r in rows] == [
        ("0", "succeeded", "output event unchanged", '{"ticks": 3}', "same"),
        ("1", "succeeded", "n=6", '{"ticks": 6}', "1 changes"),
        ("2", "succeeded", "store.steps=4", '{"ticks": 4}', "1 changes"),
    ]


@pytest.mark.django_db(transaction=True)
def test_fork_variants_names_the_line_of_a_bad_variant_and_writes_nothing(
    begin: Checkpoint, manage: Any, tmp_path: Path
) -> None:
    path = tmp_path / "variants.jsonl"
    path.write_text('{"output_event": {"n": 1}}\n\n{"output_event": {"n": "x"}}\n')
    before = _counts()
    done = manage("fork", str(begin.id), "--variants", str(path))
    assert done.returncode == 1
    assert "line 3: variant 1: invalid Tick" in done.stderr and "variants[1].output_event.n" in done.stderr
    assert "Traceback" not in done.stderr
    assert _counts() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{nope}\n", "line 1: not valid JSON"),
        ("\n\n", "holds no edits"),
        ("{}\n" * 101, "at most 100 variants"),
        ('{"store": {"k": "\\u0000"}}\n', "NUL"),
    ],
)
def test_fork_variants_refuses_unreadable_files(
    begin: Checkpoint, manage: Any, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "variants.jsonl"
    path.write_text(content)
    done = manage("fork", str(begin.id), "--variants", str(path))
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr
    assert Experiment.objects.count() == 0


def test_fork_variants_reads_stdin(begin: Checkpoint, capsys: Any, monkeypatch: Any) -> None:
    import io

    from django.core.management import call_command

    monkeypatch.setattr("sys.stdin", io.StringIO('{"store": {"steps": 2}}\n{"store": {"steps": 7}}\n'))
    call_command("fork", str(begin.id), "--variants", "-", "--name", "from stdin")
    out = capsys.readouterr().out.splitlines()
    experiment = Experiment.objects.get()
    assert out[0] == f"experiment {experiment.id}" and len(out) == 3 and experiment.name == "from stdin"
