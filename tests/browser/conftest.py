"""Real-browser fixtures: daphne and a worker as subprocesses, Chromium driven by Playwright.

Playwright's sync API keeps an event loop running in this thread, so the Django ORM
refuses to run here while a page is open (SynchronousOnlyOperation). Every ORM call
in these tests therefore goes through the `orm` fixture, which runs it in one
dedicated thread with its own database connection.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, subprocess_db_env

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


USERNAME = "alice"
PASSWORD = "correct horse battery staple"


def _output_dir() -> Path:
    return Path(os.environ.get("WFDASH_TEST_OUTPUT", str(ROOT / "test-output")))


@pytest.fixture
def shots_dir() -> Path:
    path = _output_dir() / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def orm(spawn: Any) -> Iterator[Callable[..., Any]]:
    """`orm(fn, *args)` runs fn in a dedicated thread (no event loop there) and returns its result.

    Depends on `spawn` so that this thread's connection is closed before spawn's teardown
    terminates leftover PostgreSQL sessions and the test database is flushed.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orm")

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return pool.submit(fn, *args, **kwargs).result(timeout=60)

    yield call

    from django.db import connections

    pool.submit(connections.close_all).result(timeout=30)
    pool.shutdown(wait=True)


def orm_wait(orm: Callable[..., Any], predicate: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll `predicate` (run through `orm`) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = orm(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def worker(spawn: Callable[..., subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """One `wfworker` process polling every 50 ms (killed at teardown by `spawn`)."""
    return spawn("wfworker", "--poll-interval", "0.05")


@pytest.fixture(scope="module")
def server_env(django_db_setup: None, django_db_blocker: Any) -> dict[str, str]:
    """daphne's environment, computed once per module (the test database lives for the session).

    `server` checks per test that it names the same database as `subprocess_env`.
    """
    with django_db_blocker.unblock():
        return subprocess_db_env()


@pytest.fixture(scope="module")
def daphne(server_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[str]:
    """daphne serving wfdash.asgi on a free port against the test database; yields its base URL.

    One per module: starting it takes seconds. It keeps no state of its own between tests
    (sessions and runs live in the database, which each test empties).
    """
    port = _free_port()
    logs = _output_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"daphne-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wfdash.asgi:application"],
        env=server_env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daphne exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/accounts/login/", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not answer within 30 s:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def server(daphne: str, server_env: dict[str, str], subprocess_env: dict[str, str]) -> str:
    assert server_env["DATABASE_URL"] == subprocess_env["DATABASE_URL"]
    return daphne


@pytest.fixture
def user(transactional_db: None) -> Any:
    """The signed-in user, with the runs permissions (view, add, change), created before the
    browser starts (ORM in this thread is safe here)."""
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user(USERNAME, password=PASSWORD)
    codenames = ["view_run", "add_run", "change_run"]
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=codenames))
    return user


@pytest.fixture
def session_cookie(user: Any, server: str) -> dict[str, Any]:
    """A signed-in session for `user`, made with Django's test client (quicker than the login form)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {
        "name": settings.SESSION_COOKIE_NAME,
        "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "url": server,
    }


@pytest.fixture
def browser_page(user: Any, server: str, spawn: Any) -> Iterator[Any]:
    """A fresh Chromium page (not signed in) whose relative URLs go to `server`.

    It is closed before the fixtures it depends on are torn down: `spawn`'s teardown and the
    test database flush use the ORM in this thread, which needs Playwright stopped.
    Uncaught JavaScript errors on any page fail the test at teardown.
    """
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
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


def login(page: Any) -> None:
    """Sign in through the login form."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


@pytest.fixture
def page(session_cookie: dict[str, Any], browser_page: Any) -> Any:
    """A signed-in page (test_login covers the login form itself)."""
    browser_page.context.add_cookies([session_cookie])
    return browser_page
