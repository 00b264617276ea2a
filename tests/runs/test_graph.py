"""The run page's graph (Graphviz) and Gantt chart (a lane per step, a row per concurrent execution)."""

from __future__ import annotations

import re

import graphviz
import pytest
from django.test import Client

from runs import diagram
from tests.runs.factories import make_run, viewer

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_in(client: Client) -> Client:
    client.force_login(viewer())
    return client


def _svg(html: str) -> str:
    m = re.search(r"<svg .*?</svg>", html, re.S)
    assert m, "no graph"
    return m.group(0)


def test_it_draws_the_graph_with_graphviz(client_in: Client) -> None:
    run = make_run([("begin", {"n": 1}, {})])
    svg = _svg(client_in.get(f"/runs/{run.id}/").content.decode())
    assert svg.startswith('<svg class="wf-graph"') and "graph0" in svg  # dot's output
    assert 'id="step&#45;begin"' in svg and 'xlink:href="?step=tick#checkpoints"' in svg


def test_it_draws_text_of_at_least_12_px_at_natural_size(client_in: Client) -> None:
    run = make_run([("begin", {"n": 1}, {})])
    svg = _svg(client_in.get(f"/runs/{run.id}/").content.decode())
    sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
    assert sizes and min(sizes) >= 12
    width, view_width = re.search(r'width="([\d.]+)px".*?viewBox="[\d.]+ [\d.]+ ([\d.]+)', svg, re.S).groups()
    assert float(width) == float(view_width)  # one SVG unit per CSS pixel: never scaled down


def test_it_marks_the_step_a_failed_run_names(client_in: Client) -> None:
    run = make_run(
        [("prepare", {"attempts": 0}, {})],
        workflow="flaky",
        status="failed",
        error="step 'fetch' failed: ConnectionError",
    )
    svg = _svg(client_in.get(f"/runs/{run.id}/").content.decode())
    assert 'id="step&#45;fetch" class="node step failed"' in svg
    assert 'id="step&#45;prepare" class="node step done"' in svg


def test_it_explains_a_missing_dot_instead_of_failing(client_in: Client, monkeypatch) -> None:
    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(diagram, "_cache", {})
    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    run = make_run([("begin", {"n": 1}, {})])
    response = client_in.get(f"/runs/{run.id}/")
    assert response.status_code == 200
    assert "needs Graphviz&#x27;s `dot` program" in response.content.decode()


def test_it_gives_three_concurrent_workers_three_rows_in_their_lane(client_in: Client) -> None:
    rows = [("split", {}, {})] + [("count", {"words": 3}, {})] * 3 + [("total", {}, {})]
    times = [(0, 5), (6, 56), (7, 58), (8, 60), (61, 62)]  # three counts at once
    run = make_run(rows, workflow="wordcount", times=times)
    gantt = client_in.get(f"/runs/{run.id}/").context["summary"].gantt
    assert gantt["lanes"] == ["split", "count", "total"]
    assert gantt["rows"] == [1, 3, 1]
    assert [b[6] for b in gantt["bars"] if b[0] == 1] == [0, 1, 2]


def test_it_reuses_a_row_once_a_worker_is_free(client_in: Client) -> None:
    rows = [("split", {}, {})] + [("count", {"words": 3}, {})] * 3
    times = [(0, 5), (6, 20), (7, 21), (22, 30)]  # the third starts after the first ended
    run = make_run(rows, workflow="wordcount", times=times)
    gantt = client_in.get(f"/runs/{run.id}/").context["summary"].gantt
    assert gantt["rows"] == [1, 2]


def test_it_puts_failed_attempts_on_the_gantt_and_the_timeline(client_in: Client) -> None:
    failed = [{"attempt": 1, "error": "ConnectionError: upstream unavailable (attempt 1)", "duration_ms": 3.5}]
    run = make_run([("prepare", {}, {}), ("fetch", {}, {})], workflow="flaky", retries={2: failed})
    response = client_in.get(f"/runs/{run.id}/")
    fetch_bar = [b for b in response.context["summary"].gantt["bars"] if b[4] == 2][0]
    assert fetch_bar[7] == [3.5]
    html = response.content.decode()
    assert "1 failed attempt</span> before this one succeeded" in html
    assert "ConnectionError: upstream unavailable (attempt 1)" in html


def test_it_says_what_the_attempts_count(client_in: Client) -> None:
    failed = [{"attempt": 1, "error": "boom", "duration_ms": 1.0}]
    run = make_run([("prepare", {}, {}), ("fetch", {}, {})], workflow="flaky", retries={2: failed})
    html = client_in.get(f"/runs/{run.id}/").content.decode()
    assert re.search(r'<abbr title="How many times a worker claimed this run[^"]*">Worker attempts</abbr>', html)
    assert '<dd id="step-retries">1 checkpoint needed more than one attempt</dd>' in html
