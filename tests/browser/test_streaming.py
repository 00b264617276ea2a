"""A streamed JokeFlow watched in Chromium: its answer grows on the run page before the step
completes, then stays under the step's checkpoint.

The app runs as `bash .ci/start` runs it (`manage.py webworker`: daphne with the worker on its
loop, the in-memory layer) against the test database, and asks the fake OpenAI server in
this process, which holds each stream after a few words until the test lets it go: nothing
here depends on timing.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port
from tests.fake_openai import FakeOpenAI, fake_openai_server

pytestmark = pytest.mark.django_db(transaction=True)

LIVE = 20_000  # ms: a worker claiming the run and a stream starting
HELD_AFTER = 4  # words
JOKE = FakeOpenAI.answer("Write your best joke about owls.")
SHOWN = " ".join(JOKE.split()[:HELD_AFTER]) + " "


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with fake_openai_server() as server:
        # Here too: starting a run that calls an LLM is refused when none is configured.
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-browser")
        yield server


@pytest.fixture
def app(spawn: Callable[..., subprocess.Popen[str]], fake: FakeOpenAI) -> str:
    """`manage.py webworker` on a free port, asking `fake` for completions; its base URL."""
    port = _free_port()
    env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test-browser", "WFDASH_LLM_MODEL": "fake-model"}
    proc = spawn("webworker", "--port", str(port), env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"webworker exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return base
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("webworker did not answer within 30 s")
        time.sleep(0.1)


@pytest.fixture
def page(user: Any, app: str, orm: Callable[..., Any]) -> Iterator[Any]:
    """A signed-in Chromium page on `app`; uncaught JavaScript errors fail the test."""
    from django.conf import settings
    from django.test import Client
    from playwright.sync_api import sync_playwright

    client = Client()
    client.force_login(user)
    cookie = {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value}
    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(base_url=app, viewport={"width": 390, "height": 844})
    context.set_default_timeout(15_000)
    context.add_cookies([{**cookie, "url": app}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
        browser.close()
        pw.stop()
    assert not errors, f"uncaught JavaScript errors: {errors}"


def _held_joke() -> str:
    """A joke run no worker claims yet (waiting), so the page is open before it starts."""
    from runs import inputs
    from runs.models import Run, RunStatus

    start = inputs.start_event(inputs.workflow_named("joke"), {"topic": "owls"})
    return str(Run.objects.create(workflow="joke", start_event=start, status=RunStatus.WAITING).id)


def _queue(run_id: str) -> None:
    from runs.models import Run, RunStatus

    Run.objects.filter(pk=run_id).update(status=RunStatus.QUEUED)


def _start_joke() -> str:
    from runs.models import start_run

    return str(start_run("joke", {"topic": "owls"}).id)


def _checkpoints(run_id: str) -> int:
    from runs.models import Checkpoint

    return Checkpoint.objects.filter(run_id=run_id).count()


def _snapshot_length(run_id: str) -> int:
    from runs.models import StreamSnapshot

    return sum(StreamSnapshot.objects.filter(run_id=run_id).values_list("length", flat=True))


def _wait(predicate: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return value


def test_it_shows_the_answer_growing_before_the_step_completes(
    page: Any, fake: FakeOpenAI, orm: Callable[..., Any], shots_dir: Path
) -> None:
    release = fake.hold_after(HELD_AFTER)
    run_id = orm(_held_joke)
    page.goto(f"/runs/{run_id}/")
    expect(page.locator("body")).to_have_attribute("data-live", "connected")
    orm(_queue, run_id)

    block = page.locator('#streams .stream-block[data-step="generate_joke"]')
    expect(block.locator(".text")).to_have_text(SHOWN, timeout=LIVE)
    expect(block.locator(".badge")).to_have_text("streaming")
    # The step is still running: held mid-answer, no checkpoint anywhere yet.
    expect(page.locator("#run-status")).to_have_text("running")
    expect(page.locator("#timeline .ckpt")).to_have_count(0)
    assert orm(_checkpoints, run_id) == 0
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    block.scroll_into_view_if_needed()
    page.screenshot(path=str(shots_dir / "run-page-streaming-390px.png"))

    release.set()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=LIVE)
    expect(page.locator("#ckpt-1 .streamed-text")).to_have_text(JOKE)
    expect(page.locator("#ckpt-2 .streamed-text")).to_contain_text("Analysis:")
    expect(page.locator("#streams .stream-block")).to_have_count(0)
    expect(page.locator("#outcome-wrap")).to_contain_text("Analysis:")


def test_a_page_opened_mid_step_gets_the_text_so_far(page: Any, fake: FakeOpenAI, orm: Callable[..., Any]) -> None:
    release = fake.hold_after(HELD_AFTER)
    run_id = orm(_start_joke)
    # Held after four words, and the worker's snapshot of them written.
    _wait(lambda: orm(_snapshot_length, run_id) == len(SHOWN))
    page.goto(f"/runs/{run_id}/")

    block = page.locator('#streams .stream-block[data-step="generate_joke"]')
    expect(block.locator(".text")).to_have_text(SHOWN)
    expect(page.locator("#timeline .ckpt")).to_have_count(0)

    release.set()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=LIVE)
    expect(page.locator("#ckpt-1 .streamed-text")).to_have_text(JOKE)
    expect(page.locator("#streams .stream-block")).to_have_count(0)
