"""GET /metrics: who may read it, the run queue read from the database, and the counters of
real worker and daphne processes added up through prometheus-client's multiprocess mode."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from runs.models import Run, RunStatus, start_run
from tests.conftest import ROOT, wait_until
from tests.fake_openai import fake_openai_server
from wfdash.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "s3cret-metrics-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _get(addr: str = "127.0.0.1", **headers: str) -> object:
    return Client().get("/metrics", REMOTE_ADDR=addr, **headers)


def _scrape() -> Samples:
    response = _get()
    assert response.status_code == 200  # type: ignore[attr-defined]
    return _samples(response.content.decode())  # type: ignore[attr-defined]


# -- access ------------------------------------------------------------------------


def test_it_serves_metrics_to_loopback_clients_without_a_token() -> None:
    response = _get("127.0.0.1")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "# TYPE wfdash_runs_queued gauge" in response.content.decode()


def test_it_serves_metrics_to_ipv6_loopback_clients() -> None:
    assert _get("::1").status_code == 200


def test_it_refuses_other_addresses_when_no_token_is_configured() -> None:
    response = _get("10.1.2.3", HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 403
    assert "WFDASH_METRICS_TOKEN" in response.content.decode()


@override_settings(WFDASH_METRICS_TOKEN=TOKEN)
def test_it_asks_other_addresses_for_the_bearer_token() -> None:
    response = _get("10.1.2.3")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="wfdash metrics"'
    assert b"wfdash_" not in response.content


@override_settings(WFDASH_METRICS_TOKEN=TOKEN)
def test_it_refuses_a_wrong_token() -> None:
    assert _get("10.1.2.3", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert _get("10.1.2.3", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401


@override_settings(WFDASH_METRICS_TOKEN=TOKEN)
def test_it_serves_other_addresses_with_the_right_token() -> None:
    response = _get("10.1.2.3", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert "wfdash_runs_running" in response.content.decode()


@override_settings(WFDASH_METRICS_LOOPBACK_OPEN=False, WFDASH_METRICS_TOKEN=TOKEN)
def test_it_asks_loopback_for_the_token_too_when_told_to() -> None:
    # A proxy on the same machine makes every client look local.
    assert _get("127.0.0.1").status_code == 401
    assert _get("127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_it_only_answers_get() -> None:
    assert Client().post("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 405


# -- the run queue, from the database ---------------------------------------------------


def test_it_counts_queued_running_and_waiting_runs_from_the_database() -> None:
    runs = [start_run("chain", {"steps": 1}) for _ in range(5)]
    Run.objects.filter(pk__in=[runs[0].pk, runs[1].pk]).update(status=RunStatus.RUNNING)
    Run.objects.filter(pk=runs[2].pk).update(status=RunStatus.WAITING)
    Run.objects.filter(pk=runs[3].pk).update(created_at=timezone.now() - timedelta(minutes=10))
    samples = _scrape()
    assert samples[("wfdash_runs_queued", frozenset())] == 2
    assert samples[("wfdash_runs_running", frozenset())] == 2
    assert samples[("wfdash_runs_waiting", frozenset())] == 1
    assert 600 <= samples[("wfdash_oldest_queued_run_age_seconds", frozenset())] < 700


def test_it_reports_an_empty_queue_as_zero() -> None:
    samples = _scrape()
    assert samples[("wfdash_runs_queued", frozenset())] == 0
    assert samples[("wfdash_oldest_queued_run_age_seconds", frozenset())] == 0


# -- live connections (this process) ------------------------------------------------------


def _viewer_cookie() -> str:
    user = get_user_model().objects.create_user("bob", password="pw-bob-12345")
    user.user_permissions.add(Permission.objects.get(codename="view_run"))
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def _live_connections() -> float:
    return _scrape()[("wfdash_live_connections", frozenset())]


async def test_it_counts_open_live_sockets() -> None:
    cookie = await sync_to_async(_viewer_cookie)()
    before = await sync_to_async(_live_connections)()
    ws = WebsocketCommunicator(
        application, "/ws/runs/", headers=[(b"origin", b"http://localhost"), (b"cookie", cookie.encode())]
    )
    connected, _ = await ws.connect()
    assert connected
    assert await sync_to_async(_live_connections)() == before + 1
    await ws.disconnect()
    assert await sync_to_async(_live_connections)() == before


# -- real processes sharing PROMETHEUS_MULTIPROC_DIR ------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(url: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def daphne(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A daphne on 127.0.0.1 and the environment its workers share metrics through."""
    env = {**subprocess_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wfdash.asgi:application"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _fetch(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}", env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_it_adds_up_the_counters_of_every_worker_process(spawn, daphne: tuple[str, dict[str, str]]) -> None:
    base, env = daphne
    shared = {"PROMETHEUS_MULTIPROC_DIR": env["PROMETHEUS_MULTIPROC_DIR"]}
    first = start_run("chain", {"steps": 2})
    assert spawn("wfworker", "--exit-when-idle", env=shared).wait(timeout=60) == 0
    second = start_run("chain", {"steps": 2})
    assert spawn("wfworker", "--exit-when-idle", env=shared).wait(timeout=60) == 0
    assert {r.status for r in Run.objects.filter(pk__in=[first.pk, second.pk])} == {RunStatus.SUCCEEDED}

    samples = _samples(_fetch(f"{base}/metrics"))
    chain = ("workflow", "chain")
    assert samples[("wfdash_runs_started_total", frozenset({chain}))] == 2
    assert samples[("wfdash_runs_finished_total", frozenset({chain, ("status", "succeeded")}))] == 2
    assert samples[("wfdash_step_duration_seconds_count", frozenset({chain, ("step", "begin")}))] == 2
    assert samples[("wfdash_step_duration_seconds_count", frozenset({chain, ("step", "tick")}))] == 4
    assert samples[("wfdash_checkpoint_write_seconds_count", frozenset())] == 6
    assert samples[("wfdash_worker_heartbeat_timestamp_seconds", frozenset())] > time.time() - 120
    assert samples[("wfdash_runs_queued", frozenset())] == 0


def test_it_counts_llm_tokens_by_kind(spawn, daphne: tuple[str, dict[str, str]], monkeypatch) -> None:
    base, env = daphne
    with fake_openai_server() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        run = start_run("joke", {"topic": "chemistry"})
        worker_env = {"PROMETHEUS_MULTIPROC_DIR": env["PROMETHEUS_MULTIPROC_DIR"], "OPENAI_BASE_URL": fake.base_url}
        assert spawn("wfworker", "--exit-when-idle", env=worker_env).wait(timeout=60) == 0
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    samples = _samples(_fetch(f"{base}/metrics"))
    joke = ("workflow", "joke")
    assert samples[("wfdash_llm_tokens_total", frozenset({joke, ("kind", "input")}))] == run.prompt_tokens
    assert samples[("wfdash_llm_tokens_total", frozenset({joke, ("kind", "output")}))] == run.completion_tokens
    assert run.prompt_tokens > 0 and run.completion_tokens > 0


def test_it_counts_live_sockets_open_on_daphne(daphne: tuple[str, dict[str, str]]) -> None:
    base, _ = daphne
    cookie = _viewer_cookie()

    def connections() -> float:
        return _samples(_fetch(f"{base}/metrics"))[("wfdash_live_connections", frozenset())]

    async def watch() -> None:
        url = base.replace("http://", "ws://") + "/ws/runs/"
        headers = {"Cookie": cookie}
        async with websockets.connect(url, origin="http://127.0.0.1", additional_headers=headers):
            assert await asyncio.to_thread(wait_until, lambda: connections() == 1, 30)
        assert await asyncio.to_thread(wait_until, lambda: connections() == 0, 30)

    assert connections() == 0
    asyncio.run(watch())


def test_a_worker_serves_its_own_metrics_on_its_port(spawn) -> None:
    port = _free_port()
    spawn("wfworker", "--metrics-port", str(port))
    text = _fetch(f"http://127.0.0.1:{port}/metrics")
    samples = _samples(text)
    assert samples[("wfdash_worker_heartbeat_timestamp_seconds", frozenset())] > time.time() - 120
    # The queue gauges come from /metrics on the web processes only, never twice.
    assert "wfdash_runs_queued" not in text
