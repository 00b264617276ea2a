"""The fork preview in Chromium: the changed step's diff on the edit-and-fork page, and a
quick fork refused for an incompatible event change landing on the errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def _checkpoint(change: str) -> dict[str, str]:
    """A chain checkpoint after `begin` whose run recorded an older chain: `tick` ticked by two
    (change="step"), or Tick had a required `label` field (change="schema")."""
    from runs.models import Run, RunStatus
    from tests.runs import factories
    from tests.runs.test_fork_preview import _older_tick, _record, _tick_had_a_label

    run = Run.objects.create(workflow="chain", status=RunStatus.FAILED, error="step 'tick' failed")
    c = factories.checkpoint(run, state=factories.state_with({"steps": 3, "sleep": 0.0}))
    digest = _record(run, _older_tick if change == "step" else _tick_had_a_label)
    return {"checkpoint": str(c.id), "run": str(run.id), "digest": digest}


def _runs() -> int:
    from runs.models import Run

    return Run.objects.count()


def test_the_edit_fork_page_shows_the_changed_step_with_a_coloured_diff(page: Any, orm: Any, shots_dir: Path) -> None:
    ids = orm(_checkpoint, "step")
    page.goto(f"/checkpoints/{ids['checkpoint']}/edit/")
    preview = page.locator("#fork-preview")
    expect(preview.locator("#checkpoint-code-version")).to_have_text(ids["digest"][:12])
    expect(preview.locator("#current-code-version")).to_contain_text("changed")
    expect(preview.locator("#will-run")).to_have_text("tick")
    diff = preview.locator('details.step-diff[data-step="tick"]')
    expect(diff).to_have_attribute("open", "")
    added = diff.locator(".d-add", has_text="return Tick(n=ev.n + 1)")
    removed = diff.locator(".d-del", has_text="return Tick(n=ev.n + 2)")
    expect(added).to_be_visible()
    expect(removed).to_be_visible()
    # Coloured by the page's own stylesheet (the CSP would refuse inline styles).
    assert added.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(230, 255, 236)"
    assert removed.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 235, 233)"
    expect(page.locator("#fork-errors")).to_have_count(0)
    page.screenshot(path=str(shots_dir / "fork-preview-diff.png"), full_page=True)

    diff.locator("summary").click()  # collapsible
    expect(added).to_be_hidden()


def test_a_quick_fork_refused_for_an_incompatible_change_shows_the_errors(page: Any, orm: Any, shots_dir: Path) -> None:
    ids = orm(_checkpoint, "schema")
    before = orm(_runs)
    page.goto(f"/checkpoints/{ids['checkpoint']}/")
    expect(page.locator("#fork-errors")).to_contain_text("Tick field 'label' removed")
    page.get_by_role("button", name="Fork from here").click()
    page.wait_for_url(f"**/checkpoints/{ids['checkpoint']}/edit/")
    expect(page.locator(".flash.error").first).to_contain_text("fork was refused")
    expect(page.locator("#fork-errors")).to_be_visible()
    page.screenshot(path=str(shots_dir / "fork-preview-refused.png"), full_page=True)
    assert orm(_runs) == before
