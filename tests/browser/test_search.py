"""Search in the explorer, in Chromium: typed words narrow the table and each row shows where they matched."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def joke_runs(transactional_db: None) -> None:
    """Two runs written before the browser starts: one word is in an output event, another deep in a store value."""
    from runs.models import Checkpoint, Run

    for n, (joke, notes) in enumerate(
        [("A zebra walks into a <b>bar</b>", ["plain"]), ("An atom walks into a bar", ["quite", "deep quasar"])]
    ):
        run = Run.objects.create(workflow="joke", status="succeeded")
        Checkpoint.objects.create(
            run=run, workflow="joke", seq=1, snapshot_seq=1, last_completed_step="generate_joke",
            input_event_type="StartEvent", output_event_type="JokeEvent",
            input_event={"type": "StartEvent", "data": {"topic": f"topic {n}"}},
            output_event={"type": "JokeEvent", "data": {"joke": joke}},
            state={"version": 2, "full": True, "store": {"notes": {"v": {"list": notes}}}, "entries": [],
                   "collectors": {}, "waiters": [], "awaiting_input": False},
        )  # fmt: skip


@pytest.mark.parametrize("width", [1280, 390])
def test_typing_words_narrows_the_explorer_and_marks_where_they_matched(
    joke_runs: None, page: Any, shots_dir: Path, width: int
) -> None:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/checkpoints/")
    rows = page.locator("#explorer-results tr.ckpt")
    expect(rows).to_have_count(2)

    page.locator("#explorer-filters input[name=q]").press_sequentially("zebr")
    expect(rows).to_have_count(1)
    expect(page).to_have_url(re.compile(r"[?&]q=zebr(&|$)"))
    match = page.locator("#explorer-results tr.ckpt-matches .match")
    expect(match).to_have_count(1)
    expect(match.locator(".match-field")).to_have_text("output event joke")
    expect(match.locator("mark")).to_have_text("zebr")
    # The stored HTML is shown as text, not markup.
    expect(match.locator(".snippet")).to_have_text("A zebra walks into a <b>bar</b>")
    expect(match.locator("b")).to_have_count(0)

    page.locator("#explorer-filters input[name=q]").fill("quasar bar")
    page.locator("#explorer-filters input[name=q]").press("Enter")
    expect(rows).to_have_count(1)
    expect(page.locator("#explorer-results tr.ckpt-matches .match-field")).to_have_text(
        ["output event joke", "store key notes.list[1]"]
    )
    expect(page.locator("#explorer-results tr.ckpt-matches mark")).to_have_text(["bar", "quasar"])
    page.screenshot(path=shots_dir / f"explorer-search-{width}.png", full_page=True)
    assert not errors, errors
