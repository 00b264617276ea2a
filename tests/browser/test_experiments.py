"""Sweeps in Chromium: the Sweep button and form, and the experiment's matrix updating live
while a real worker runs the variants; both pages at 390 px."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import orm_wait

pytestmark = pytest.mark.django_db(transaction=True)

NARROW = {"width": 390, "height": 844}


def _finished_chain() -> str | None:
    from runs.models import Run

    run = Run.objects.filter(workflow="chain").first()
    return str(run.checkpoints.get(seq=1).id) if run and run.status == "succeeded" else None


@pytest.fixture
def begin(orm: Any, spawn: Any) -> str:
    """The first checkpoint of a chain run a real worker finished; that worker is stopped after,
    so the variants stay queued until a test starts another."""
    from runs.models import start_run

    orm(start_run, "chain", {"steps": 3})
    worker = spawn("wfworker", "--poll-interval", "0.05")
    checkpoint_id = orm_wait(orm, _finished_chain)
    worker.terminate()
    worker.wait(timeout=30)
    return str(checkpoint_id)


def _sweep(checkpoint_id: str, n: int) -> tuple[str, list[str]]:
    from runs.experiments import create_sweep

    variants = [{"output_event": {"n": k}, "store": {"sleep": 0.05}} for k in range(1, n + 1)]
    experiment = create_sweep(checkpoint_id, variants=variants, name="live")
    return str(experiment.id), [str(i) for i in experiment.runs.order_by("variant").values_list("id", flat=True)]


def _fits(page: Any) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url}: the page scrolls sideways ({width[0]} > {width[1]} px)"


def test_the_matrix_shows_statuses_change_while_a_worker_runs_the_variants(
    page: Any, orm: Any, spawn: Any, begin: str, shots_dir: Path
) -> None:
    experiment_id, run_ids = orm(_sweep, begin, 5)
    page.goto(f"/experiments/{experiment_id}/")
    expect(page.locator("#experiment-counts")).to_contain_text("5 queued")
    page.evaluate("window.__samePage = true")  # a reload would lose it

    spawn("wfworker", "--poll-interval", "0.05")
    expect(page.locator("#matrix")).to_have_attribute("data-finished", "1", timeout=60_000)
    expect(page.locator("#experiment-counts")).to_contain_text("5 succeeded")
    assert page.evaluate("window.__samePage") is True
    for variant in range(5):
        row = page.locator(f"#variant-{variant}")
        expect(row.locator(".badge")).to_have_text("succeeded")
        expect(row.locator("td.result")).to_have_text(f'{{"ticks": {max(3, variant + 1)}}}')
    expect(page.locator("#variant-4 .diff-cell summary")).to_have_text("1 change")
    page.screenshot(path=shots_dir / "experiment-1280.png", full_page=True)

    page.locator("#variant-4 td.num a").click()
    expect(page.locator("#experiment-link")).to_contain_text("variant 4 of experiment")
    assert page.url.endswith(f"/runs/{run_ids[4]}/")


def test_the_sweep_button_leads_to_a_form_that_opens_the_experiment(page: Any, begin: str, shots_dir: Path) -> None:
    from urllib.parse import urlparse

    page.goto(f"/checkpoints/{begin}/")
    page.get_by_role("link", name="Sweep", exact=True).click()
    page.fill("#id_variants", '{"output_event": {"n": 2}}\n{"output_event": {"n": "two"}}')
    page.click("#sweep-form button[type=submit]")
    expect(page.locator("#sweep-form .errorlist")).to_contain_text("Line 2, variant 1: invalid Tick")
    page.fill("#id_variants", "")
    page.fill("#id_field_1", "output_event.n")
    page.fill("#id_values_1", "2\n4\n6")
    page.screenshot(path=shots_dir / "sweep-form-1280.png", full_page=True)
    page.click("#sweep-form button[type=submit]")
    page.wait_for_url("**/experiments/**")
    expect(page.locator("#experiment-counts")).to_contain_text("3 variants")
    assert urlparse(page.url).path.startswith("/experiments/")


def test_the_experiment_and_sweep_pages_fit_390_px(page: Any, orm: Any, begin: str, shots_dir: Path) -> None:
    experiment_id, _ = orm(_sweep, begin, 12)
    page.set_viewport_size(NARROW)
    for name, url in {"experiment": f"/experiments/{experiment_id}/", "sweep": f"/checkpoints/{begin}/sweep/"}.items():
        page.goto(url)
        expect(page.locator("header .logout button")).to_be_visible()
        _fits(page)
        page.screenshot(path=shots_dir / f"{name}-390.png", full_page=True)
