"""`Client` against a live daphne and a real worker: each call, each error, over real HTTP."""

from __future__ import annotations

import re
import uuid

import pytest

from runs.models import Activity, Run
from tests.client.proxy import free_port
from tests.conftest import ROOT
from wfdash.client import (
    Client,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
    WaitTimeout,
)
from wfdash.client.models import CheckpointOut, RunOut

TIMEOUT = 60


def _chain(client: Client, steps: int, **extra: object) -> RunOut:
    return client.wait(client.start("chain", steps=steps, **extra).id, TIMEOUT)


@pytest.mark.usefixtures("worker")
def test_it_starts_a_run_and_waits_for_its_result(client: Client) -> None:
    started = client.start("chain", steps=3)
    assert isinstance(started, RunOut) and started.workflow == "chain" and started.status == "queued"

    done = client.wait(started.id, TIMEOUT)

    assert done.status == "succeeded" and done.result == {"ticks": 3}
    assert done.checkpoint_count == Run.objects.get(pk=started.id).checkpoints.count() == 4
    assert [a.action for a in done.activity] == ["started"]


@pytest.mark.usefixtures("worker")
def test_it_gets_a_run_as_the_api_describes_it(client: Client) -> None:
    run = _chain(client, 2)

    got = client.get(str(run.id))

    assert got == run and got.start_event == {"type": "ChainStart", "data": {"steps": 2, "sleep": 0.0, "payload": ""}}


@pytest.mark.usefixtures("worker")
def test_it_pages_through_the_explorer_with_its_filters(client: Client) -> None:
    run = _chain(client, 60)  # 61 checkpoints: 60 ticks, more than one page of 50
    _chain(client, 2)  # another run's ticks, filtered out

    ticks = list(client.checkpoints(run=str(run.id)[:8], step="tick"))

    assert all(isinstance(c, CheckpointOut) and c.run_id == run.id for c in ticks)
    assert [c.seq for c in ticks] == list(range(61, 1, -1))  # newest first, none twice, none missing
    begins = list(client.checkpoints(workflow="chain", step="begin", output_event_type="Tick"))
    assert len(begins) == 2


@pytest.mark.usefixtures("worker")
def test_it_lists_runs_with_filters(client: Client) -> None:
    run = _chain(client, 1)
    client.start("approval")

    assert [r.id for r in client.runs(workflow="chain", status="succeeded")] == [run.id]


@pytest.mark.usefixtures("worker")
def test_it_reads_one_runs_checkpoints_after_a_seq(client: Client) -> None:
    run = _chain(client, 5)

    assert [c.seq for c in client.run_checkpoints(run.id, after=2)] == [3, 4, 5, 6]


@pytest.mark.usefixtures("worker")
def test_it_forks_a_checkpoint_with_an_edited_output_event(client: Client) -> None:
    run = _chain(client, 3)
    begin = next(client.checkpoints(run=str(run.id), step="begin"))

    fork = client.fork(begin.id, output_event={"n": 3})
    done = client.wait(fork.id, TIMEOUT)

    assert fork.parent_checkpoint_id == begin.id and fork.fork_edits == {
        "output_event": {"type": "Tick", "data": {"n": 3}}
    }
    assert done.status == "succeeded" and done.result == {"ticks": 3}
    assert [c.last_completed_step for c in client.run_checkpoints(fork.id)] == ["tick"]


@pytest.mark.usefixtures("worker")
def test_it_reads_a_checkpoint_with_its_state(client: Client) -> None:
    run = _chain(client, 2)
    begin = next(client.checkpoints(run=str(run.id), step="begin"))

    detail = client.checkpoint(begin.id)

    assert detail.output_event == {"type": "Tick", "data": {"n": 1}}
    assert detail.ctx_state["store"]["steps"] == 2


@pytest.mark.usefixtures("worker")
def test_it_answers_a_run_waiting_for_a_human(client: Client) -> None:
    run = client.start("approval", subject="the launch plan")
    waiting = client.wait(run.id, TIMEOUT, until={"waiting"})

    answered = client.respond(run.id, "yes")
    done = client.wait(run.id, TIMEOUT)

    assert waiting.status == "waiting" and answered.status == "queued"
    assert done.result == {"approved": True, "message": "Hello team, please find the launch plan attached."}


@pytest.mark.usefixtures("worker")
def test_it_cancels_a_running_run(client: Client) -> None:
    run = client.start("chain", steps=100_000, sleep=0.05)
    client.wait(run.id, TIMEOUT, until={"running"})

    client.cancel(run.id)
    done = client.wait(run.id, TIMEOUT)

    assert done.status == "cancelled"
    assert Activity.objects.filter(run_id=run.id, action="cancelled", username="owner").exists()


def test_it_describes_the_workflows(client: Client) -> None:
    chain = {w.name: w for w in client.workflows()}["chain"]

    assert chain.start_event == "ChainStart" and [s.name for s in chain.steps] == ["begin", "tick"]


def test_it_stops_waiting_after_the_timeout(client: Client) -> None:
    run = client.start("chain", steps=100_000, sleep=0.05)

    with pytest.raises(WaitTimeout) as caught:
        client.wait(run.id, timeout=0.3)

    assert isinstance(caught.value, TimeoutError) and caught.value.run.status in ("queued", "running")
    client.cancel(run.id)


# -- errors ---------------------------------------------------------------------------------


def test_it_raises_not_found_with_the_apis_code(client: Client) -> None:
    missing = uuid.uuid4()

    with pytest.raises(NotFound) as caught:
        client.get(missing)

    assert (caught.value.status, caught.value.code) == (404, "not_found")
    assert str(missing) in caught.value.message


def test_it_raises_validation_failed_naming_the_field(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.start("chain", steps="many")

    assert (caught.value.status, caught.value.code, caught.value.field) == (422, "invalid", "input")
    assert not Run.objects.exists()


@pytest.mark.usefixtures("worker")
def test_it_raises_validation_failed_for_a_bad_fork_edit(client: Client) -> None:
    run = _chain(client, 1)
    begin = next(client.checkpoints(run=str(run.id), step="begin"))

    with pytest.raises(ValidationFailed) as caught:
        client.fork(begin.id, output_event={"n": "not a number"})

    assert (caught.value.status, caught.value.field) == (422, "output_event")
    assert Run.objects.count() == 1


def test_it_raises_validation_failed_for_a_bad_filter(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        next(client.checkpoints(since="the day before yesterday"))

    assert (caught.value.status, caught.value.code) == (400, "bad_filter")


def test_it_checks_request_bodies_with_the_apis_schemas_before_sending(client: Client) -> None:
    with pytest.raises(ValidationFailed) as caught:
        client.start("", steps=1)

    assert caught.value.status is None and caught.value.field == "workflow"


def test_it_raises_unauthenticated_for_a_bad_token(server: str) -> None:
    with Client(server, "wfd_not-a-token") as client, pytest.raises(Unauthenticated) as caught:
        client.get(uuid.uuid4())

    assert (caught.value.status, caught.value.code) == (401, "unauthenticated")


def test_it_raises_permission_denied_naming_the_missing_permission(server: str, viewer_token: str) -> None:
    with Client(server, viewer_token) as client, pytest.raises(PermissionDenied) as caught:
        client.start("chain", steps=1)

    assert (caught.value.status, caught.value.code) == (403, "forbidden")
    assert "runs.add_run" in caught.value.message
    assert not Run.objects.exists()


@pytest.mark.usefixtures("worker")
def test_it_raises_conflict_when_cancelling_a_finished_run(client: Client) -> None:
    run = _chain(client, 1)

    with pytest.raises(Conflict) as caught:
        client.cancel(run.id)

    assert (caught.value.status, caught.value.code) == (409, "conflict")


def test_it_raises_connection_failed_when_nothing_listens(transactional_db: None) -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "wfd_x") as client, pytest.raises(ConnectionFailed) as caught:
        client.get(uuid.uuid4())

    assert isinstance(caught.value, ConnectionError) and caught.value.status is None


# -- README ----------------------------------------------------------------------------------


def _readme_examples() -> list[str]:
    section = (ROOT / "README.md").read_text().split("\n## Python client\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def _run_example(code: str, server: str, token: str) -> None:
    exec(compile(code.replace("http://127.0.0.1:8000", server), "README.md", "exec"), {"token": token})


@pytest.mark.usefixtures("worker")
def test_the_readmes_sync_example_prints_what_its_comments_say(
    server: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _readme_examples()[0]
    promised = [line.split("  # ", 1)[1] for line in example.splitlines() if "print(" in line]

    _run_example(example, server, token)

    assert capsys.readouterr().out.splitlines() == promised


@pytest.mark.usefixtures("worker")
def test_the_readmes_async_example_follows_a_run_to_its_end(
    server: str, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _run_example(_readme_examples()[1], server, token)

    assert capsys.readouterr().out.splitlines() == ["1 begin", "2 tick", "3 tick", "4 tick", "done"]
