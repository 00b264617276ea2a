"""The compare page: any two runs of a workflow, aligned by step, diffed field by field."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from runs.models import Run
from tests.runs.factories import make_run, viewer

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_in(client: Client) -> Client:
    client.force_login(viewer())
    return client


def _ticks(n: int, *, store: dict | None = None) -> list[tuple[str, dict, dict]]:
    return [("tick", {"n": k + 1}, {"steps": n, **(store or {})}) for k in range(n)]


def _fork(parent: Run, seq: int, rows: list, **kwargs) -> Run:
    return make_run(rows, parent=parent.checkpoints.get(seq=seq), **kwargs)


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_it_lists_only_the_fields_that_differ_with_both_values(client_in: Client) -> None:
    parent = make_run([("begin", {"n": 1}, {"steps": 3}), ("tick", {"n": 2}, {"steps": 3})])
    child = _fork(parent, 1, [("tick", {"n": 5}, {"steps": 3, "fixed": True})], fork_edits={"store": {"fixed": True}})
    html = _html(client_in.get(f"/runs/{child.id}/compare/"))
    paths = re.findall(r'<tr class="change (\w+)" data-path="([^"]+)"', html)
    assert paths == [("changed", "output.n"), ("added", "store.fixed")]
    assert '<del class="mono">2</del>' in html and '<ins class="mono">5</ins>' in html


def test_it_diffs_the_store_in_user_form_not_the_storage_format(client_in: Client) -> None:
    parent = make_run([("begin", {"n": 1}, {"steps": 3}), ("tick", {"n": 2}, {"steps": 3})])
    child = _fork(parent, 1, [("tick", {"n": 2}, {"steps": 4})])
    html = _html(client_in.get(f"/runs/{child.id}/compare/"))
    assert 'data-path="store.steps"' in html and 'data-path="store.steps.v"' not in html


def test_it_folds_identical_checkpoints_into_one_expandable_stretch(client_in: Client) -> None:
    parent = make_run(_ticks(16))
    child = _fork(parent, 1, _ticks(16)[1:13] + [("tick", {"n": 99}, {"steps": 16})])
    html = _html(client_in.get(f"/runs/{child.id}/compare/"))
    assert re.search(r'<details class="cmp-stretch">\s*<summary>12 identical checkpoints', html)
    assert html.count('class="cmp-pair same"') == 12  # inside the stretch, shown when expanded
    assert html.count('class="cmp-pair differs"') == 3  # #13 differs; the parent's #15, #16 have no counterpart


def test_it_summarises_how_many_checkpoints_differ(client_in: Client) -> None:
    parent = make_run(_ticks(5), result={"ticks": 5})
    child = _fork(parent, 1, _ticks(5)[1:4] + [("tick", {"n": 7}, {"steps": 5})], result={"ticks": 7})
    html = _html(client_in.get(f"/runs/{child.id}/compare/"))
    count = re.search(r'<p id="compare-count">(.*?)</p>', html, re.S)
    assert count and re.sub(r"<[^>]+>", "", count.group(1)).startswith("1 of 4 checkpoints differ")


def test_it_shows_both_results_and_their_diff(client_in: Client) -> None:
    parent = make_run(_ticks(2), result={"ticks": 2})
    child = _fork(parent, 1, _ticks(2)[1:], result={"ticks": 9})
    html = _html(client_in.get(f"/runs/{child.id}/compare/"))
    results = re.search(r'<table class="grid changes" id="result-changes">(.*?)</table>', html, re.S)
    assert results and 'data-path="result.ticks"' in results.group(1)
    assert '<del class="mono">2</del>' in results.group(1) and '<ins class="mono">9</ins>' in results.group(1)


def test_it_aligns_by_step_leaving_a_gap_for_a_step_only_one_run_took(client_in: Client) -> None:
    a = make_run([("begin", {}, {}), ("tick", {}, {}), ("tick", {}, {})])
    b = make_run([("begin", {}, {}), ("retry", {}, {}), ("tick", {}, {}), ("tick", {}, {})])
    page = client_in.get(f"/runs/{a.id}/compare/{b.id}/").context["page"]
    pairs = [(p.left and p.left.seq, p.right and p.right.seq) for p in page.pairs]
    assert pairs == [(1, 1), (None, 2), (2, 3), (3, 4)]


def test_it_finds_the_other_run_by_its_first_8_characters(client_in: Client) -> None:
    a, b = make_run(_ticks(2)), make_run(_ticks(2))
    response = client_in.get(f"/runs/{a.id}/compare/", {"other": str(b.id)[:8]})
    assert response.status_code == 302 and response.url == f"/runs/{a.id}/compare/{b.id}/"


def test_it_offers_a_form_to_choose_a_run_when_the_run_is_no_fork(client_in: Client) -> None:
    a, b = make_run(_ticks(2)), make_run(_ticks(2))
    html = _html(client_in.get(f"/runs/{a.id}/compare/"))
    assert 'id="compare-form"' in html and 'name="other"' in html
    assert f'href="/runs/{a.id}/compare/{b.id}/"' in html  # a recent run of the workflow


def test_it_explains_an_unknown_prefix(client_in: Client) -> None:
    a = make_run(_ticks(2))
    response = client_in.get(f"/runs/{a.id}/compare/", {"other": "ffffffff"})
    assert response.status_code == 404
    assert "No chain run has an id starting with &#x27;ffffffff&#x27;" in response.content.decode()


def test_it_refuses_to_compare_runs_of_two_workflows(client_in: Client) -> None:
    a, b = make_run(_ticks(2)), make_run(_ticks(2), workflow="wordcount")
    response = client_in.get(f"/runs/{a.id}/compare/{b.id}/")
    assert response.status_code == 400 and "compare runs of one workflow" in response.content.decode()


def test_it_needs_the_view_permission(client: Client) -> None:
    from django.contrib.auth import get_user_model

    a, b = make_run(_ticks(2)), make_run(_ticks(2))
    client.force_login(get_user_model().objects.create_user("mallory", password="pw-mallory-123"))
    assert client.get(f"/runs/{a.id}/compare/{b.id}/").status_code == 403
