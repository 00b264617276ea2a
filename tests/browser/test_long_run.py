"""A 20,000-checkpoint run in a real browser: a small page showing one window, paged by seq.

The run is bulk-inserted before the browser starts; daphne serves it from the test database.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.runs import factories

pytestmark = pytest.mark.django_db(transaction=True)

N = 20_000


def _long_run(n: int) -> str:
    from datetime import timedelta

    from django.utils import timezone

    from runs.models import Checkpoint, Run, RunStatus

    run = Run.objects.create(workflow="chain", status=RunStatus.SUCCEEDED, checkpoint_count=n, result={"ticks": n})
    t0 = timezone.now() - timedelta(hours=1)
    state = factories.EMPTY_STATE
    Checkpoint.objects.bulk_create(
        (
            Checkpoint(
                run=run,
                workflow="chain",
                seq=seq,
                snapshot_seq=seq,
                last_completed_step="begin" if seq == 1 else "tick",
                input_event_type="ChainStart" if seq == 1 else "Tick",
                output_event_type="Tick",
                input_event={"type": "Tick", "data": {"n": seq}},
                output_event={"type": "Tick", "data": {"n": seq + 1}},
                state=state,
                created_at=t0 + timedelta(milliseconds=20 * seq),
                duration_ms=5.0,
            )
            for seq in range(1, n + 1)
        ),
        batch_size=2000,
    )
    return str(run.id)


def _shown(page: Any) -> list[int]:
    return [int(s) for s in page.locator("#timeline .ckpt").evaluate_all("els => els.map(e => e.dataset.seq)")]


@pytest.fixture
def long_run(orm: Any) -> str:
    return orm(_long_run, N)


def test_a_long_run_opens_as_a_small_page_of_its_newest_checkpoints(page: Any, long_run: str, shots_dir: Path) -> None:
    response = page.goto(f"/runs/{long_run}/")
    assert response is not None and response.status == 200
    assert len(response.body()) < 300_000
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    assert _shown(page) == list(range(N, N - 100, -1))
    expect(page.locator("#window-caption")).to_contain_text(f"of {N} checkpoints")
    expect(page.locator("#step-counts li[data-step=tick] .count")).to_have_text(str(N - 1))
    bars = page.locator("#gantt .bar")
    expect(bars.first).to_be_visible()
    assert 1 < bars.count() <= 2 * 200  # two lanes, binned
    expect(page.locator("#newer-link")).to_have_count(0)
    page.screenshot(path=shots_dir / "20-long-run.png", full_page=True)


def test_a_long_run_pages_older_and_newer(page: Any, long_run: str) -> None:
    page.goto(f"/runs/{long_run}/")
    page.locator("#older-link").click()
    expect(page).to_have_url(re.compile(rf"before_seq={N - 99}$"))
    assert _shown(page) == list(range(N - 100, N - 200, -1))
    page.locator("#older-link").click()
    expect(page).to_have_url(re.compile(rf"before_seq={N - 199}$"))  # the new page, not the old one
    assert _shown(page) == list(range(N - 200, N - 300, -1))
    page.locator("#newer-link").click()
    expect(page).to_have_url(re.compile(rf"after_seq={N - 200}$"))
    assert _shown(page) == list(range(N - 100, N - 200, -1))
    page.locator("#newest-link").click()
    expect(page).not_to_have_url(re.compile(r"_seq="))
    assert _shown(page) == list(range(N, N - 100, -1))


def test_a_long_run_jumps_to_a_seq(page: Any, long_run: str, shots_dir: Path) -> None:
    page.goto(f"/runs/{long_run}/")
    page.fill("#jump-seq input[name=seq]", "12345")
    page.locator("#jump-seq button").click()
    expect(page).to_have_url(re.compile(r"\?seq=12345$"))
    assert _shown(page) == list(range(12395, 12295, -1))
    target = page.locator("#timeline .ckpt.target")
    expect(target).to_have_attribute("data-seq", "12345")
    expect(target.locator(".seq")).to_have_text("#12345")
    expect(page.locator("#new-checkpoints")).to_be_hidden()
    page.screenshot(path=shots_dir / "21-long-run-jump.png", full_page=True)


def test_a_long_run_shows_one_step_from_its_menu(page: Any, long_run: str) -> None:
    page.goto(f"/runs/{long_run}/")
    page.select_option("#jump-step select[name=step]", "begin")
    page.locator("#jump-step button").click()
    expect(page).to_have_url(re.compile(r"\?step=begin$"))
    assert _shown(page) == [1]
    expect(page.locator("#older-link")).to_be_hidden()


def _append(run_id: str, seqs: range) -> None:
    from runs.models import Checkpoint

    last = Checkpoint.objects.filter(run_id=run_id).order_by("-seq").first()
    assert last is not None
    Checkpoint.objects.bulk_create(
        Checkpoint(
            run_id=run_id,
            workflow="chain",
            seq=seq,
            snapshot_seq=seq,
            last_completed_step="tick",
            input_event_type="Tick",
            output_event_type="Tick",
            input_event={"type": "Tick", "data": {"n": seq}},
            output_event={"type": "Tick", "data": {"n": seq + 1}},
            state=last.state,
            duration_ms=5.0,
        )
        for seq in seqs
    )


def test_live_checkpoints_go_on_top_of_the_newest_window(page: Any, long_run: str, orm: Any) -> None:
    page.goto(f"/runs/{long_run}/")
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    orm(_append, long_run, range(N + 1, N + 4))
    expect(page.locator("#timeline .ckpt").first).to_have_attribute("data-seq", str(N + 3), timeout=10_000)
    assert _shown(page) == list(range(N + 3, N - 97, -1))  # still one window: the oldest fell off
    expect(page.locator("#older-link")).to_have_attribute("href", f"?before_seq={N - 96}")
    expect(page.locator("#step-counts li[data-step=tick] .count")).to_have_text(str(N + 2))
    expect(page.locator("#new-checkpoints")).to_be_hidden()


def test_live_checkpoints_are_only_counted_on_an_older_window(page: Any, long_run: str, orm: Any) -> None:
    page.goto(f"/runs/{long_run}/?before_seq=5000")
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    orm(_append, long_run, range(N + 1, N + 4))
    notice = page.locator("#new-checkpoints")
    expect(notice).to_be_visible(timeout=10_000)
    expect(notice.locator("#new-count")).to_have_text("3")
    assert _shown(page) == list(range(4999, 4899, -1))
    notice.get_by_role("link", name="show newest").click()
    expect(page.locator("#timeline .ckpt").first).to_have_attribute("data-seq", str(N + 3))
