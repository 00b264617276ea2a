"""Property-based fuzzing of the pages' query strings and forms: whatever arrives, no 5xx.

The API has its own schemathesis run (tests/api/test_fuzz.py); these drive what a browser
sends: every filter parameter of the runs list and the explorer, the start form, the
edit-and-fork form and the answer form, with hostile strings (impossible dates, huge
numbers, deep JSON, surrogates, NUL, ids of every length).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs.models import Checkpoint, Run, RunStatus
from tests.runs import factories

pytestmark = pytest.mark.django_db

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "2026-02-30T00:00:00",
            "2026-01-01T00:00:00+24:00",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-23:59",
            "-1",
            "1" * 40,
            "1e308",
            "NaN",
            "\ud800",
            "a\x00b",
            "[" * 5000,
            "00000000",
            "zzzzzzzz-zzzz",
            "12345678-1234-1234-1234-123456789012",
            "None",
            "<script>",
            "%",
        ]
    ),
)
JSON_TEXT = st.one_of(
    HOSTILE_TEXT,
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=10,
    ).map(json.dumps),
    st.integers(1, 200).map(lambda n: '{"a": ' * n + "1" + "}" * n),
)
RUN_FILTERS = ["workflow", "status", "parent", "since", "before", "q", "page", "after", "code_version"]
CHECKPOINT_FILTERS = [
    "workflow",
    "run",
    "step",
    "input_event_type",
    "output_event_type",
    "before",
    "since",
    "q",
    "code_version",
]
START_FIELDS = ["input", "steps", "sleep", "payload", "items", "label", "text"]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def signed_in(client: Client) -> Client:
    client.force_login(get_user_model().objects.create_superuser("fuzzer", "", "pw-fuzzer-123"))
    return client


@pytest.fixture
def run_with_checkpoint() -> Checkpoint:
    run = Run.objects.create(workflow="approval", status=RunStatus.WAITING)
    return factories.checkpoint(
        run,
        step="ask",
        input_event={"type": "Draft", "data": {"text": "hello"}},
        output_event={"type": "InputRequiredEvent", "data": {"prefix": "ok?"}},
        state=factories.state_with({"draft": "hello"}, awaiting_input=True),
    )


def _ok(response: Any) -> None:
    assert response.status_code < 500, response.content[:500]


def _encoded(params: dict[str, str]) -> str:
    # As raw bytes on the wire: a lone surrogate travels as its (invalid) UTF-8 bytes.
    return urlencode(params, encoding="utf-8", errors="surrogatepass")


def _get(client: Client, path: str, params: dict[str, str], **kwargs: Any) -> Any:
    return client.get(f"{path}?{_encoded(params)}", **kwargs)


def _post(client: Client, path: str, params: dict[str, str]) -> Any:
    return client.post(path, _encoded(params), content_type="application/x-www-form-urlencoded")


@FUZZ
@given(params=st.dictionaries(st.sampled_from(RUN_FILTERS), HOSTILE_TEXT, max_size=4))
def test_the_runs_list_survives_any_query_string(signed_in: Client, params: dict[str, str]) -> None:
    _ok(_get(signed_in, "/", params))
    _ok(_get(signed_in, "/", params, headers={"HX-Request": "true"}))


@FUZZ
@given(params=st.dictionaries(st.sampled_from(CHECKPOINT_FILTERS), HOSTILE_TEXT, max_size=4))
def test_the_explorer_survives_any_query_string(signed_in: Client, params: dict[str, str]) -> None:
    _ok(_get(signed_in, "/checkpoints/", params))
    _ok(_get(signed_in, "/checkpoints/", params, headers={"HX-Request": "true"}))


@FUZZ
@given(
    workflow=st.sampled_from(["approval", "chain", "map", "nope", ""]),
    fields=st.dictionaries(st.sampled_from(START_FIELDS), JSON_TEXT, max_size=4),
)
def test_the_start_form_survives_any_input(signed_in: Client, workflow: str, fields: dict[str, str]) -> None:
    _ok(_post(signed_in, f"/runs/new/?workflow={workflow}", {"workflow": workflow, **fields}))


@FUZZ
@given(output_event=JSON_TEXT, store=JSON_TEXT)
def test_edit_and_fork_survives_any_input(
    signed_in: Client, run_with_checkpoint: Checkpoint, output_event: str, store: str
) -> None:
    url = f"/checkpoints/{run_with_checkpoint.id}/edit/"
    _ok(_post(signed_in, url, {"output_event": output_event, "store": store}))


@FUZZ
@given(response=HOSTILE_TEXT)
def test_the_answer_form_survives_any_input(signed_in: Client, run_with_checkpoint: Checkpoint, response: str) -> None:
    _ok(_post(signed_in, f"/runs/{run_with_checkpoint.run_id}/respond/", {"response": response}))


RUN_PAGE_PARAMS = ["before_seq", "after_seq", "seq", "step", "fragment"]
COMPARE_PARAMS = ["other", "before_seq", "after_seq"]


@FUZZ
@given(params=st.dictionaries(st.sampled_from(RUN_PAGE_PARAMS), HOSTILE_TEXT, max_size=3))
def test_the_run_page_survives_any_query_string(
    signed_in: Client, run_with_checkpoint: Checkpoint, params: dict[str, str]
) -> None:
    _ok(_get(signed_in, f"/runs/{run_with_checkpoint.run_id}/", params))


@FUZZ
@given(params=st.dictionaries(st.sampled_from(COMPARE_PARAMS), HOSTILE_TEXT, max_size=3))
def test_the_compare_pages_survive_any_query_string(
    signed_in: Client, run_with_checkpoint: Checkpoint, params: dict[str, str]
) -> None:
    run_id = run_with_checkpoint.run_id
    _ok(_get(signed_in, f"/runs/{run_id}/compare/", params))
    _ok(_get(signed_in, f"/runs/{run_id}/compare/{run_id}/", params))


@pytest.mark.parametrize("value", ["²", "١٢", "1²", "⁴²"])
def test_a_seq_in_other_digits_is_refused_not_a_500(
    signed_in: Client, run_with_checkpoint: Checkpoint, value: str
) -> None:
    """Caught by the fuzz test: "²".isdigit() is true, and int("²") raises. The page refuses it
    as it refuses any bad window parameter: back to the run's newest checkpoints, with a message."""
    for key in ("before_seq", "after_seq"):
        response = _get(signed_in, f"/runs/{run_with_checkpoint.run_id}/", {key: value})
        assert response.status_code == 302 and key not in response["Location"], (key, value)
        followed = signed_in.get(response["Location"])
        assert followed.status_code == 200 and b"must be a checkpoint number" in followed.content
