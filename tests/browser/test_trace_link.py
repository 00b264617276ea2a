"""The run page in a real browser links the run's trace when WFDASH_TRACE_URL is set."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import subprocess_db_env

pytestmark = pytest.mark.django_db(transaction=True)

TRACE_URL = "https://tempo.example/trace/{trace_id}"


@pytest.fixture(scope="module")
def server_env(django_db_setup: None, django_db_blocker: Any) -> dict[str, str]:
    """This module's daphne is told where traces are viewed."""
    with django_db_blocker.unblock():
        return {**subprocess_db_env(), "WFDASH_TRACE_URL": TRACE_URL}


def _start() -> str:
    from runs.models import start_run

    return str(start_run("chain", {"steps": 1}).id)


def test_the_run_page_links_the_runs_trace(page: Any, orm: Any) -> None:
    run_id = orm(_start)
    trace_id = run_id.replace("-", "")
    page.goto(f"/runs/{run_id}/")
    link = page.locator("#run-trace a")
    expect(link).to_be_visible()
    expect(link).to_have_text(trace_id)
    expect(link).to_have_attribute("href", TRACE_URL.format(trace_id=trace_id))
