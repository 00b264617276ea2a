"""The explorer (autocomplete, "None" output filter, prefix run filter) and the start form
(docstring, field table, disabled joke), in Chromium at 1280 and 390 px wide."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

WIDTHS = [1280, 390]


@pytest.fixture
def console_errors(page: Any) -> Any:
    """Every console error of the page fails the test (uncaught exceptions fail it in conftest)."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield errors
    assert not errors, f"console errors: {errors}"


@pytest.fixture
def map_run(transactional_db: None) -> str:
    """A map run's checkpoints, written before the browser starts: `spread` returned no event."""
    from runs.models import Checkpoint, Run

    run = Run.objects.create(workflow="map", status="succeeded")
    rows = [
        ("spread", "MapStart", ""),
        ("work", "Item", "Mapped"),
        ("work", "Item", "Mapped"),
        ("reduce", "Mapped", ""),
    ]
    for seq, (step, input_type, output_type) in enumerate(rows, start=1):
        Checkpoint.objects.create(
            run=run, workflow="map", seq=seq, snapshot_seq=seq, last_completed_step=step,
            input_event_type=input_type, output_event_type=output_type, input_event={}, state={}, duration_ms=1.5,
        )  # fmt: skip
    return str(run.id)


def _no_sideways_scroll(page: Any) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )


@pytest.mark.parametrize("width", WIDTHS)
def test_the_explorer_filters_steps_without_output_as_none(
    map_run: str, page: Any, console_errors: list[str], shots_dir: Path, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/checkpoints/")
    rows = page.locator("#explorer-results tr.ckpt")
    expect(rows).to_have_count(4)
    page.locator("#explorer-filters input[name=output_event_type]").press_sequentially("None")
    expect(rows).to_have_count(2)
    assert rows.evaluate_all("els => els.map(e => e.dataset.step)") == ["reduce", "spread"]
    expect(rows.first.locator("td.types")).to_have_text("Mapped → None")
    expect(page).to_have_url(re.compile(r"[?&]output_event_type=None(&|$)"))
    expect(page.locator("#explorer-counts")).to_contain_text("2 matching checkpoints")
    _no_sideways_scroll(page)
    page.screenshot(path=shots_dir / f"explorer-none-{width}.png", full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_explorer_autocompletes_known_steps_and_event_types(
    map_run: str, page: Any, console_errors: list[str], width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/checkpoints/")
    step_box = page.locator("#explorer-filters input[name=step]")
    expect(step_box).to_have_attribute("list", "known-steps")
    options = page.locator("#known-steps option").evaluate_all("els => els.map(e => e.value)")
    assert {"spread", "work", "reduce", "tick"} <= set(options)
    types = page.locator("#known-event-types option").evaluate_all("els => els.map(e => e.value)")
    assert {"MapStart", "Mapped", "StopEvent", "None"} <= set(types)
    _no_sideways_scroll(page)


def test_the_explorer_takes_a_run_id_prefix(map_run: str, page: Any, console_errors: list[str]) -> None:
    page.goto("/checkpoints/")
    page.locator("#explorer-filters input[name=run]").press_sequentially(map_run[:8])
    expect(page.locator("#explorer-results tr.ckpt")).to_have_count(4)
    expect(page.locator("#explorer-results .explorer-run a").first).to_have_text(map_run[:8])
    expect(page.locator("#explorer-results .explorer-run a").first).to_have_attribute("title", map_run)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_start_form_explains_its_workflow(
    page: Any, console_errors: list[str], shots_dir: Path, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/runs/new/?workflow=approval")
    expect(page.locator("#workflow-doc")).to_contain_text("Drafts a message about `subject`, then waits for a human")
    subject = page.locator('#start-fields tr[data-field="subject"]')
    expect(subject).to_contain_text("the quarterly report")
    expect(subject).to_contain_text("What the drafted message announces")
    expect(page.locator("#start-example pre").first).to_contain_text('"subject": "the quarterly report"')
    expect(page.locator("#start-form button[type=submit]")).to_be_enabled()
    _no_sideways_scroll(page)
    page.screenshot(path=shots_dir / f"start-approval-{width}.png", full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_joke_start_button_is_disabled_with_the_reason(
    page: Any, console_errors: list[str], shots_dir: Path, width: int
) -> None:
    # daphne runs without OPENAI_* (the test environment sets none): no LLM is configured.
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/runs/new/?workflow=joke")
    button = page.locator("#start-form button[type=submit]")
    expect(button).to_be_disabled()
    expect(page.locator("#start-unavailable")).to_contain_text("This workflow cannot start here")
    expect(page.locator("#start-unavailable")).to_contain_text("OPENAI_API_KEY")
    expect(page.locator('#start-fields tr[data-field="topic"]')).to_contain_text("required")
    _no_sideways_scroll(page)
    page.screenshot(path=shots_dir / f"start-joke-disabled-{width}.png", full_page=True)


def test_choosing_a_workflow_shows_its_form(page: Any, console_errors: list[str]) -> None:
    page.goto("/runs/new/")
    page.select_option("select[name=workflow]", "chain")
    expect(page.locator('#start-fields tr[data-field="steps"]')).to_contain_text("How many ticks run")
    expect(page.locator("#start-form input[name=steps]")).to_have_value("3")
