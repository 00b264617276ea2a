"""The fork experience in Chromium at 1280 and 390 px: compare, lineage, graph, Gantt, narrow screens.

Most runs are written straight to the database (tests/runs/factories.py), so only the Gantt's
live test needs a worker. Every page is screenshot at both widths under the test output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)

NARROW = {"width": 390, "height": 844}
WIDE = {"width": 1280, "height": 800}


# -- ORM helpers (always called through the `orm` fixture) -------------------------


def _family() -> dict[str, str]:
    """A chain run, a fork of it with an edit (and another result), a fork of that fork, and a
    failed flaky run whose fetch needed a retry."""
    from tests.runs.factories import make_run

    ticks = [("begin", {"n": 1}, {"steps": 16})] + [("tick", {"n": k}, {"steps": 16}) for k in range(2, 17)]
    root = make_run(ticks, result={"ticks": 16})
    fork_rows = [r for r in ticks[2:14]] + [("tick", {"n": 99}, {"steps": 16, "fixed": True})]
    fork = make_run(
        fork_rows,
        parent=root.checkpoints.get(seq=2),
        result={"ticks": 99},
        fork_edits={"output_event": {"type": "Tick", "data": {"n": 3}}, "store": {"fixed": True}},
    )
    grandchild = make_run(ticks[3:5], parent=fork.checkpoints.get(seq=1), status="running")
    failed = [{"attempt": 1, "error": "ConnectionError: upstream unavailable (attempt 1)", "duration_ms": 8.0}]
    flaky = make_run(
        [("prepare", {"attempts": 0}, {"failures": 9}), ("fetch", {"attempts": 0}, {"failures": 9})],
        workflow="flaky",
        status="failed",
        error="step 'fetch' failed: ConnectionError: upstream unavailable (attempt 4)",
        retries={2: failed},
    )
    return {
        "root": str(root.id),
        "fork": str(fork.id),
        "grandchild": str(grandchild.id),
        "flaky": str(flaky.id),
        "checkpoint": str(root.checkpoints.get(seq=2).id),
    }


def _many_runs(n: int) -> list[str]:
    """n finished runs created within one second, oldest first."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Run

    now = timezone.now()
    runs = [
        Run(workflow="chain", status="succeeded", created_at=now - timedelta(milliseconds=900 - 10 * i))
        for i in range(n)
    ]
    Run.objects.bulk_create(runs)
    return [str(r.id) for r in runs]


def _touch(run_id: str) -> None:
    """A change to an old run, as a worker's would be (the list hears of it by its poll)."""
    from django.utils import timezone

    from runs.models import Run

    Run.objects.filter(pk=run_id).update(status="failed", updated_at=timezone.now())


def _start(workflow: str, fields: dict[str, Any]) -> str:
    from runs.models import start_run

    return str(start_run(workflow, fields).id)


def _status(run_id: str) -> str:
    from runs.models import Run

    return Run.objects.get(pk=run_id).status


@pytest.fixture
def family(orm: Any) -> dict[str, str]:
    return orm(_family)


@pytest.fixture
def narrow(page: Any, session_cookie: dict[str, Any], server: str) -> Iterator[Any]:
    """A second signed-in page, 390 px wide (a phone); JavaScript errors fail the test."""
    context = page.context.browser.new_context(base_url=server, viewport=NARROW, device_scale_factor=1)
    context.add_cookies([session_cookie])
    narrow_page = context.new_page()
    errors: list[str] = []
    narrow_page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield narrow_page
    context.close()
    assert not errors, f"uncaught JavaScript errors at 390 px: {errors}"


def _fits(page: Any) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url}: the page scrolls sideways ({width[0]} > {width[1]} px)"


def _pages(f: dict[str, str]) -> dict[str, str]:
    return {
        "runs-list": "/",
        "run": f"/runs/{f['fork']}/",
        "run-failed": f"/runs/{f['flaky']}/",
        "run-step-filter": f"/runs/{f['root']}/?step=tick",
        "compare": f"/runs/{f['fork']}/compare/",
        "compare-choose": f"/runs/{f['root']}/compare/",
        "checkpoint": f"/checkpoints/{f['checkpoint']}/",
        "edit-fork": f"/checkpoints/{f['checkpoint']}/edit/",
        "explorer": "/checkpoints/",
        "new-run": "/runs/new/?workflow=chain",
    }


# -- tests -------------------------------------------------------------------------


def test_every_page_fits_a_390_px_screen(narrow: Any, family: dict[str, str], shots_dir: Path) -> None:
    for name, url in _pages(family).items():
        narrow.goto(url)
        expect(narrow.locator("header .logout button")).to_be_visible()
        _fits(narrow)
        narrow.screenshot(path=shots_dir / f"fork-390-{name}.png", full_page=True)


def test_the_header_and_fork_buttons_stay_inside_390_px(narrow: Any, family: dict[str, str]) -> None:
    narrow.goto(f"/runs/{family['fork']}/")
    inside = "el => { const r = el.getBoundingClientRect(); return r.left >= 0 && r.right <= window.innerWidth; }"
    assert narrow.locator("header .logout button").evaluate(inside), "Log out is cut off"
    for el in narrow.locator("#timeline .ckpt .actions button, #timeline .ckpt time").all():
        card = el.evaluate("e => { const c = e.closest('.ckpt').getBoundingClientRect(); return [c.left, c.right]; }")
        box = el.bounding_box()
        assert box and card[0] <= box["x"] and box["x"] + box["width"] <= card[1] + 0.5


def test_every_page_at_1280_px(page: Any, family: dict[str, str], shots_dir: Path) -> None:
    page.set_viewport_size(WIDE)
    for name, url in _pages(family).items():
        page.goto(url)
        _fits(page)
        page.screenshot(path=shots_dir / f"fork-1280-{name}.png", full_page=True)


@pytest.mark.parametrize("viewport", [WIDE, NARROW], ids=["1280", "390"])
def test_graph_text_is_at_least_12_px(page: Any, family: dict[str, str], viewport: dict[str, int]) -> None:
    page.set_viewport_size(viewport)
    page.goto(f"/runs/{family['root']}/")
    smallest = page.evaluate(
        """() => {
          const svg = document.querySelector('#graph svg');
          const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
          const sizes = [...svg.querySelectorAll('text')].map(t => parseFloat(t.getAttribute('font-size')));
          return Math.min(...sizes) * scale;
        }"""
    )
    assert smallest >= 12
    _fits(page)


def test_a_click_on_a_graph_step_filters_the_timeline(page: Any, family: dict[str, str], shots_dir: Path) -> None:
    page.set_viewport_size(WIDE)
    page.goto(f"/runs/{family['root']}/")
    expect(page.locator("#step-begin")).to_have_class(re.compile(r"\bdone\b"))
    page.locator("#step-begin a").click()
    expect(page).to_have_url(re.compile(r"\?step=begin#checkpoints$"))
    steps = page.locator("#timeline .ckpt").evaluate_all("els => els.map(e => e.dataset.step)")
    assert steps == ["begin"]
    expect(page.locator("#step-begin")).to_have_class(re.compile(r"\bselected\b"))
    expect(page.locator("#explorer-link")).to_have_attribute("href", "/checkpoints/?workflow=chain&step=begin")
    page.screenshot(path=shots_dir / "fork-graph-step-filter.png", full_page=True)


def test_a_failed_step_is_red_and_its_retries_show(page: Any, family: dict[str, str]) -> None:
    page.goto(f"/runs/{family['flaky']}/")
    expect(page.locator("#step-fetch")).to_have_class(re.compile(r"\bfailed\b"))
    fill = page.locator("#step-fetch path").first.evaluate("el => getComputedStyle(el).fill")
    assert fill == "rgb(251, 222, 222)"
    expect(page.locator("#ckpt-2 .retries summary")).to_contain_text("1 failed attempt")
    expect(page.locator("#gantt .bar.retry")).to_have_count(1)
    expect(page.locator("#gantt .bar.retry")).to_have_attribute(
        "title", re.compile(r"fetch #2 · failed attempt 1 of 2")
    )
    expect(page.locator("#step-retries")).to_have_text("1 checkpoint needed more than one attempt")


def test_the_compare_page_marks_only_changed_fields(page: Any, family: dict[str, str], shots_dir: Path) -> None:
    page.set_viewport_size(WIDE)
    page.goto(f"/runs/{family['root']}/")
    page.locator(f"#outcome-wrap a[href='/runs/{family['root']}/compare/{family['fork']}/']").click()
    expect(page.locator("h1")).to_have_text("Compare chain runs")
    changed = page.locator("#compare-pairs tr.change")
    expect(changed).to_have_count(2)
    expect(page.locator('#compare-pairs tr.change[data-path="output.n"] del')).to_have_text("15")
    expect(page.locator('#compare-pairs tr.change[data-path="output.n"] ins')).to_have_text("99")
    expect(page.locator('#compare-pairs tr.change.added[data-path="store.fixed"] ins')).to_have_text("true")
    expect(page.locator("#compare-count")).to_contain_text("of 14 checkpoints differ")
    expect(page.locator("#result-changes tr.change[data-path='result.ticks'] ins")).to_have_text("99")
    stretch = page.locator("#compare-pairs details.cmp-stretch").first
    expect(stretch.locator("summary")).to_contain_text("12 identical checkpoints")
    expect(stretch.locator(".cmp-pair").first).to_be_hidden()
    stretch.locator("summary").click()
    expect(stretch.locator(".cmp-pair")).to_have_count(12)
    expect(stretch.locator(".cmp-pair").first).to_be_visible()
    page.screenshot(path=shots_dir / "fork-compare.png", full_page=True)


def test_the_lineage_tree_shows_the_family(page: Any, family: dict[str, str], shots_dir: Path) -> None:
    page.goto(f"/runs/{family['root']}/")
    tree = page.locator("#lineage .tree")
    expect(tree.locator(".tree-node")).to_have_count(3)
    grandchild = tree.locator(f".tree-node[data-run='{family['grandchild']}']")
    expect(grandchild.locator(".fork-point").first).to_contain_text("from #1 tick")
    expect(tree.locator(".tree-node.current")).to_have_attribute("data-run", family["root"])
    grandchild.locator("a").first.click()
    expect(page.locator("#lineage .tree-node.current")).to_have_attribute("data-run", family["grandchild"])
    page.locator("#lineage").screenshot(path=shots_dir / "fork-lineage.png")


def test_the_runs_list_inserts_only_truly_new_runs(page: Any, orm: Any) -> None:
    ids = orm(_many_runs, 55)
    page.goto("/")
    expect(page.locator("#runs-body tr.run-row")).to_have_count(50)
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    orm(_touch, ids[0])  # on page 2
    new = orm(_start, "chain", {"steps": 1})
    expect(page.locator(f"#run-{new}")).to_have_count(1, timeout=20_000)
    expect(page.locator(f"#run-{ids[0]}")).to_have_count(0)
    assert page.locator("#runs-body tr.run-row").first.get_attribute("id") == f"run-{new}"


def test_the_gantt_gives_each_concurrent_worker_a_row_live(page: Any, orm: Any, spawn: Any, shots_dir: Path) -> None:
    run_id = orm(_start, "wordcount", {"text": "one two three four five six", "chunks": 3})
    page.goto(f"/runs/{run_id}/")
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    spawn("wfworker", "--poll-interval", "0.05")
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=20_000)
    expect(page.locator("#gantt .lane[data-step=count] .bar")).to_have_count(3)
    expect(page.locator("#gantt .lane[data-step=count] .track")).to_have_attribute("data-rows", "3")
    expect(page.locator("#gantt .axis .tick")).not_to_have_count(0)
    title = page.locator("#gantt .lane[data-step=count] .bar").first.get_attribute("title") or ""
    assert re.match(r"count #\d+ · [\d.]+ ms · 1 attempt$", title), title
    expect(page.locator("#step-total")).to_have_class(re.compile(r"\bdone\b"))
    page.locator(".columns").screenshot(path=shots_dir / "fork-gantt-lanes.png")
