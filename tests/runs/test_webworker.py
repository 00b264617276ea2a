"""`manage.py webworker` (what `serve` runs): daphne with a worker on its loop, as a real process."""

from __future__ import annotations

import signal
import socket
import urllib.request

import pytest

from runs.models import Checkpoint, Run, RunStatus, start_run
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_it_serves_pages_and_executes_runs_in_one_process(spawn) -> None:
    port = _free_port()
    spawn("webworker", "--port", str(port))
    wait_until(lambda: _answers(f"http://127.0.0.1:{port}/healthz"), timeout=60)
    run = start_run("chain", {"steps": 3})
    wait_until(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.result == {"ticks": 3}


def test_it_drains_on_sigterm_losing_no_checkpoint_and_a_worker_finishes_the_run(spawn) -> None:
    port = _free_port()
    server = spawn("webworker", "--port", str(port))
    run = start_run("chain", {"steps": 30, "sleep": 0.1})
    wait_until(lambda: Checkpoint.objects.filter(run=run).count() >= 3, timeout=60)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=30) == 0, server.stdout.read() if server.stdout else ""
    run.refresh_from_db()
    # The running step finished to its checkpoint; the run went back to the queue.
    assert run.status == RunStatus.QUEUED and run.worker_id == ""
    drained_at = list(Checkpoint.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert drained_at == list(range(1, len(drained_at) + 1)) and len(drained_at) < 31

    spawn("wfworker", "--exit-when-idle").wait(timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.result == {"ticks": 30}
    assert Checkpoint.objects.filter(run=run).count() == 31
