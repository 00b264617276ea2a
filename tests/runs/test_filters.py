"""Ids typed by prefix, "no output" and counts per step in the explorer and the runs list."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from runs import filters
from runs.models import Checkpoint, Run

pytestmark = pytest.mark.django_db

TWIN_A = uuid.UUID("abcdef01-0000-4000-8000-000000000001")
TWIN_B = uuid.UUID("abcdef02-0000-4000-8000-000000000002")


@pytest.fixture
def client_in(client: Client) -> Client:
    user = get_user_model().objects.create_user("alice", password="pw-alice-123")
    user.user_permissions.add(Permission.objects.get(codename="view_run", content_type__app_label="runs"))
    client.force_login(user)
    return client


def make_run(pk: uuid.UUID | None = None, **fields: Any) -> Run:
    return Run.objects.create(**({"id": pk} if pk else {}), **{"workflow": "map", **fields})


def make_checkpoint(run: Run, seq: int, step: str, input_type: str, output_type: str) -> Checkpoint:
    return Checkpoint.objects.create(
        run=run,
        workflow=run.workflow,
        seq=seq,
        snapshot_seq=seq,
        last_completed_step=step,
        input_event_type=input_type,
        output_event_type=output_type,
        input_event={"type": input_type, "data": {}},
        output_event={"type": output_type, "data": {}} if output_type else None,
        state={},
    )


@pytest.fixture
def map_run() -> Run:
    """A map run: `spread` returned no event (fan-out through send_event), then work, reduce."""
    run = make_run(TWIN_A)
    make_checkpoint(run, 1, "spread", "MapStart", "")
    make_checkpoint(run, 2, "work", "Item", "Mapped")
    make_checkpoint(run, 3, "work", "Item", "Mapped")
    make_checkpoint(run, 4, "reduce", "Mapped", "")
    make_checkpoint(run, 5, "reduce", "Mapped", "StopEvent")
    return run


def _rows(response: Any) -> list[int]:
    return [c["seq"] for c in response.context["checkpoints"]]


# -- resolving a prefix ------------------------------------------------------------


def test_it_resolves_a_prefix_of_six_hex_digits_to_the_one_run() -> None:
    make_run(TWIN_A)
    assert filters.resolve_id(Run.objects.all(), "abcdef01", "run", "run") == TWIN_A


def test_it_resolves_a_prefix_typed_with_dashes_and_capitals() -> None:
    make_run(TWIN_A)
    assert filters.resolve_id(Run.objects.all(), "ABCDEF01-0000", "run", "run") == TWIN_A


def test_it_names_how_many_runs_an_ambiguous_prefix_matches() -> None:
    make_run(TWIN_A)
    make_run(TWIN_B)
    with pytest.raises(filters.FilterError, match=r"run id prefix 'abcdef' matches 2 runs; type more characters"):
        filters.resolve_id(Run.objects.all(), "abcdef", "run", "run")


def test_it_says_when_no_run_starts_with_a_prefix() -> None:
    make_run(TWIN_A)
    with pytest.raises(filters.FilterError, match="no run has an id starting with '123456'"):
        filters.resolve_id(Run.objects.all(), "123456", "run", "run")


@pytest.mark.parametrize("value", ["abcde", "abcdefg!", "zzzzzzzz", "a" * 33])
def test_it_refuses_prefixes_shorter_than_six_or_not_hex(value: str) -> None:
    with pytest.raises(filters.FilterError, match="must be a UUID or an id prefix of at least 6 hex digits"):
        filters.resolve_id(Run.objects.all(), value, "run", "run")


def test_it_finds_a_prefix_with_one_indexed_range_query() -> None:
    make_run(TWIN_A)
    with CaptureQueriesContext(connection) as queries:
        filters.resolve_id(Run.objects.all(), "abcdef01", "run", "run")
    [query] = queries.captured_queries
    assert ">=" in query["sql"] and "<=" in query["sql"] and "LIMIT 11" in query["sql"]
    assert "LIKE" not in query["sql"].upper()


def test_a_whole_id_needs_no_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert filters.resolve_id(Run.objects.all(), str(TWIN_A), "run", "run") == TWIN_A
    assert not queries.captured_queries


# -- the explorer and the runs list --------------------------------------------------


def test_the_explorer_filters_by_a_run_id_prefix(client_in: Client, map_run: Run) -> None:
    make_checkpoint(make_run(TWIN_B), 1, "spread", "MapStart", "")
    response = client_in.get("/checkpoints/", {"run": "abcdef01"})
    assert response.status_code == 200
    assert _rows(response) == [5, 4, 3, 2, 1]
    assert {c["run_id"] for c in response.context["checkpoints"]} == {str(TWIN_A)}


def test_the_explorer_explains_an_ambiguous_run_prefix(client_in: Client, map_run: Run) -> None:
    make_run(TWIN_B)
    response = client_in.get("/checkpoints/", {"run": "abcdef"})
    assert response.status_code == 400
    assert "run id prefix &#x27;abcdef&#x27; matches 2 runs" in response.content.decode()


def test_the_explorer_explains_an_unknown_run_prefix(client_in: Client, map_run: Run) -> None:
    response = client_in.get("/checkpoints/", {"run": "0123456"})
    assert response.status_code == 400
    assert "no run has an id starting with" in response.content.decode()


def test_the_runs_list_filters_forks_by_a_parent_prefix(client_in: Client, map_run: Run) -> None:
    fork = make_run(parent_checkpoint=map_run.checkpoints.get(seq=2))
    make_run()
    response = client_in.get("/", {"parent": "abcdef01"})
    assert response.status_code == 200
    assert [r["run_id"] for r in response.context["runs"]] == [str(fork.id)]


def test_the_explorer_matches_checkpoints_without_an_output_event(client_in: Client, map_run: Run) -> None:
    response = client_in.get("/checkpoints/", {"output_event_type": "None"})
    assert _rows(response) == [4, 1]


def test_the_explorer_shows_no_output_as_none(client_in: Client, map_run: Run) -> None:
    page = client_in.get("/checkpoints/", {"step": "spread"}).content.decode()
    row = page.split('data-seq="1"')[1].split("</tr>")[0]
    assert 'data-output="None"' in row
    assert 'MapStart → <span class="muted">None</span>' in row


def test_the_explorer_shows_one_dense_row_per_checkpoint(client_in: Client, map_run: Run) -> None:
    page = client_in.get("/checkpoints/").content.decode()
    assert page.count('<tr class="ckpt"') == 5
    row = page.split('data-seq="5"')[1].split("</tr>")[0]
    assert f'href="/runs/{TWIN_A}/"' in row and ">abcdef01</a>" in row
    assert "reduce" in row and "Mapped → StopEvent" in row and "#5" in row
    assert " ms</td>" in row or " µs</td>" in row


def test_the_explorer_counts_per_step_and_event_type(client_in: Client, map_run: Run) -> None:
    counts = client_in.get("/checkpoints/", {"workflow": "map"}).context["counts"]
    assert counts.steps == [("reduce", 2), ("work", 2), ("spread", 1)]
    assert counts.input_types == [("Item", 2), ("Mapped", 2), ("MapStart", 1)]
    assert counts.output_types == [("Mapped", 2), ("None", 2), ("StopEvent", 1)]
    assert counts.total == 5 and not counts.capped


def test_the_explorer_counts_only_the_current_filter(client_in: Client, map_run: Run) -> None:
    counts = client_in.get("/checkpoints/", {"step": "reduce"}).context["counts"]
    assert counts.steps == [("reduce", 2)]
    assert counts.output_types == [("None", 1), ("StopEvent", 1)]


def test_counts_read_at_most_the_cap_of_newest_rows(map_run: Run) -> None:
    counts = filters.checkpoint_counts(Checkpoint.objects.all(), cap=3)
    assert counts.total == 3 and counts.capped
    assert dict(counts.steps) == {"reduce": 2, "work": 1}


def test_counts_are_one_query_with_a_limit(map_run: Run) -> None:
    with CaptureQueriesContext(connection) as queries:
        filters.checkpoint_counts(Checkpoint.objects.all())
    [query] = queries.captured_queries
    assert f"LIMIT {filters.COUNT_CAP}" in query["sql"] and "GROUP BY" in query["sql"]


def test_the_explorer_links_each_count_to_its_filter(client_in: Client, map_run: Run) -> None:
    page = client_in.get("/checkpoints/", {"workflow": "map"}).content.decode()
    assert 'href="?workflow=map&amp;output_event_type=None"' in page
    assert 'href="?workflow=map&amp;step=work"' in page


def test_the_explorer_autocompletes_steps_and_event_types_of_registered_workflows(client_in: Client) -> None:
    page = client_in.get("/checkpoints/").content.decode()
    steps = page.split('<datalist id="known-steps">')[1].split("</datalist>")[0]
    types = page.split('<datalist id="known-event-types">')[1].split("</datalist>")[0]
    for step in ("spread", "work", "reduce", "tick", "generate_joke"):
        assert f'<option value="{step}">' in steps
    for event_type in ("MapStart", "Tick", "StopEvent", "ApprovalStart"):
        assert f'<option value="{event_type}">' in types
    assert '<option value="None">no output event</option>' in types
    assert 'name="step" value="" placeholder="last completed step" list="known-steps"' in page
