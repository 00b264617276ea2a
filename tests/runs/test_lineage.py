"""The lineage tree on the run page: the whole family, bounded, the current run highlighted."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from runs import lineage
from tests.runs.factories import make_run, viewer

pytestmark = pytest.mark.django_db

ROWS = [("begin", {"n": 1}, {}), ("tick", {"n": 2}, {}), ("tick", {"n": 3}, {})]


@pytest.fixture
def client_in(client: Client) -> Client:
    client.force_login(viewer())
    return client


def _tree(html: str) -> str:
    m = re.search(r'<section class="panel" id="lineage">(.*?)</section>', html, re.S)
    assert m, "no lineage section"
    return m.group(1)


def test_it_shows_a_grandchild_on_the_roots_page(client_in: Client) -> None:
    root = make_run(ROWS)
    child = make_run(ROWS, parent=root.checkpoints.get(seq=2))
    grandchild = make_run(ROWS, parent=child.checkpoints.get(seq=1), fork_edits={"store": {"fixed": True}})
    tree = _tree(client_in.get(f"/runs/{root.id}/").content.decode())
    assert f'href="/runs/{grandchild.id}/"' in tree
    assert re.search(rf'data-run="{grandchild.id}">.*?from #1 <strong>begin</strong>', tree, re.S)
    assert "fixed" in tree  # the edits applied at the fork


def test_it_highlights_the_current_run(client_in: Client) -> None:
    root = make_run(ROWS)
    child = make_run(ROWS, parent=root.checkpoints.get(seq=2))
    tree = _tree(client_in.get(f"/runs/{child.id}/").content.decode())
    assert re.findall(r'class="tree-node current" data-run="([^"]+)"', tree) == [str(child.id)]
    assert f'href="/runs/{root.id}/"' in tree


def test_it_summarises_each_result(client_in: Client) -> None:
    root = make_run(ROWS, result={"ticks": 3})
    make_run(ROWS, parent=root.checkpoints.get(seq=2), status="failed", error="step 'tick' failed: boom")
    tree = _tree(client_in.get(f"/runs/{root.id}/").content.decode())
    assert "{&quot;ticks&quot;: 3}" in tree and "step &#x27;tick&#x27; failed: boom" in tree


def test_it_reads_at_most_the_limit_and_counts_the_rest() -> None:
    root = make_run(ROWS)
    for _ in range(5):
        make_run(ROWS, parent=root.checkpoints.get(seq=1))
    family = lineage.lineage(root, limit=3)
    assert family.size == 3 and len(family.root.children) == 2 and family.more == 3


def test_a_forks_own_checkpoints_are_not_drawn_as_inherited(client_in: Client) -> None:
    root = make_run(ROWS)
    child = make_run(ROWS[1:], parent=root.checkpoints.get(seq=1))
    html = client_in.get(f"/runs/{child.id}/").content.decode()
    timeline = re.search(r'<div id="timeline"(.*?)<p id="no-checkpoints"', html, re.S)
    assert timeline and "inherited" not in timeline.group(1)
    assert html.count('class="ckpt inherited"') == 1  # the root's #1, below, labelled
    assert '<span class="inh-label">inherited</span> #1' in html
