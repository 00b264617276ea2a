"""The client without a server: routes (sweep, experiments, fork preview) against
httpx.MockTransport, the error mapping, lazy pages, and the watch's exactly-once bookkeeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from itertools import islice
from typing import Any

import httpx
import pytest

from tests.client.proxy import free_port
from tests.conftest import ROOT
from wfdash.client import (
    AsyncClient,
    Client,
    Conflict,
    ConnectionFailed,
    NotFound,
    PermissionDenied,
    ServerError,
    Unauthenticated,
    ValidationFailed,
    WfdashError,
)
from wfdash.client._core import Cursor, Gap
from wfdash.client.models import ForkPreviewOut, LiveCheckpoint, LiveRun, LiveSkipped, SweepOut

pytestmark = pytest.mark.engine_only  # no database: run once
CHECKPOINT = uuid.UUID("11111111-2222-4333-8444-555555555555")
RUN_A, RUN_B = uuid.uuid4(), uuid.uuid4()


class Recorder:
    """A fake server: answers with `reply(request)` and keeps every request it saw."""

    def __init__(self, reply: Callable[[httpx.Request], httpx.Response]):
        self.reply = reply
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.reply(request)

    def client(self) -> Client:
        return Client("http://wfdash.test", "wfd_token", transport=httpx.MockTransport(self))

    def async_client(self) -> AsyncClient:
        return AsyncClient("http://wfdash.test", "wfd_token", transport=httpx.MockTransport(self))


def _json(request: httpx.Request) -> Any:
    return json.loads(request.content)


# -- sweep, experiments, fork preview: the server's shapes (wfdash.api_schemas) -------------------


def _swept(experiment: uuid.UUID, runs: list[uuid.UUID]) -> dict[str, Any]:
    return {"experiment": str(experiment), "runs": [str(r) for r in runs], "url": f"/api/experiments/{experiment}/"}


def test_it_sweeps_a_checkpoint_with_variants() -> None:
    server = Recorder(lambda r: httpx.Response(201, json=_swept(RUN_A, [RUN_A, RUN_B])))

    out = server.client().sweep(CHECKPOINT, [{"output_event": {"n": 1}}, {"store": {"k": None}}], name="two")

    request = server.requests[0]
    assert (request.method, request.url.path) == ("POST", f"/api/checkpoints/{CHECKPOINT}/sweep/")
    assert request.headers["authorization"] == "Bearer wfd_token"
    assert _json(request) == {"variants": [{"output_event": {"n": 1}}, {"store": {"k": None}}], "name": "two"}
    assert out == SweepOut(experiment=RUN_A, runs=[RUN_A, RUN_B], url=f"/api/experiments/{RUN_A}/")


def test_it_sweeps_a_grid() -> None:
    server = Recorder(lambda r: httpx.Response(201, json=_swept(RUN_B, [])))

    out = server.client().sweep(CHECKPOINT, grid={"output_event.n": [1, 2]})

    assert _json(server.requests[0]) == {"grid": {"output_event.n": [1, 2]}, "name": ""}
    assert out.experiment == RUN_B


@pytest.mark.parametrize("variants, grid", [(None, None), ([{}], {"n": [1]})])
def test_it_refuses_a_sweep_with_neither_or_both_before_sending(variants: Any, grid: Any) -> None:
    server = Recorder(lambda r: httpx.Response(500))

    with pytest.raises(ValidationFailed):
        server.client().sweep(CHECKPOINT, variants, grid=grid)

    assert server.requests == []


def test_it_reads_an_experiment() -> None:
    body = {
        "id": str(RUN_A),
        "name": "two",
        "checkpoint": str(CHECKPOINT),
        "base_run": str(RUN_B),
        "created_by": "owner",
        "created_at": "2026-11-29T12:00:00Z",
        "counts": {"succeeded": 1},
        "finished": True,
        "runs": [
            {
                "id": str(RUN_B),
                "variant": 0,
                "status": "succeeded",
                "edits": {"output_event": {"n": 1}},
                "fork_edits": {"output_event": {"type": "Tick", "data": {"n": 1}}},
                "result": {"ticks": 3},
                "result_truncated": False,
                "error": "",
                "duration_ms": 12.5,
                "tokens": 0,
                "changes": [{"path": "result.ticks", "kind": "changed", "base": "3", "variant": "4"}],
                "url": f"/api/runs/{RUN_B}/",
            }
        ],
    }
    server = Recorder(lambda r: httpx.Response(200, json=body))

    out = server.client().experiment(RUN_A)

    assert server.requests[0].url.path == f"/api/experiments/{RUN_A}/"
    assert out.checkpoint == CHECKPOINT and out.runs[0].result == {"ticks": 3} and out.finished
    assert out.runs[0].changes and out.runs[0].changes[0].variant == "4"


def _preview() -> dict[str, Any]:
    return {
        "checkpoint": str(CHECKPOINT),
        "workflow": "chain",
        "code_version": "b" * 12,
        "checkpoint_code_version": "a" * 12,
        "code_changed": True,
        "changed_steps": [{"step": "tick", "status": "changed", "diff": "-a\n+b"}],
        "schema_changes": [{"event": "Tick", "change": "field n: int -> str", "severity": "error", "field": "n"}],
        "will_run": ["tick"],
        "compatible": False,
        "load_error": None,
    }


def test_it_previews_a_fork() -> None:
    body = _preview()
    server = Recorder(lambda r: httpx.Response(200, json=body))

    out = server.client().fork_preview(CHECKPOINT)

    assert server.requests[0].url.path == f"/api/checkpoints/{CHECKPOINT}/fork-preview/"
    assert out == ForkPreviewOut.model_validate(body) and out.changed_steps and out.changed_steps[0].step == "tick"


async def test_the_async_client_sweeps_and_previews() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/sweep/"):
            return httpx.Response(201, json=_swept(RUN_B, [RUN_A]))
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no checkpoint"}})

    server = Recorder(reply)
    async with server.async_client() as client:
        assert (await client.sweep(CHECKPOINT, [{}])).runs == [RUN_A]
        with pytest.raises(NotFound):
            await client.fork_preview(CHECKPOINT)


def test_it_passes_the_search_filter_on() -> None:
    server = Recorder(lambda r: httpx.Response(200, json={"items": [], "next_cursor": None}))

    assert list(server.client().checkpoints(q="timeout", step="tick")) == []

    assert dict(server.requests[0].url.params) == {"q": "timeout", "step": "tick"}


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, code, cls",
    [
        (400, "bad_filter", ValidationFailed),
        (401, "unauthenticated", Unauthenticated),
        (403, "forbidden", PermissionDenied),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (413, "too_large", ValidationFailed),
        (422, "invalid", ValidationFailed),
        (500, "error", ServerError),
        (429, "throttled", WfdashError),
    ],
)
def test_it_raises_the_class_for_each_status_with_the_apis_code(status: int, code: str, cls: type) -> None:
    body = {"error": {"code": code, "message": "why", "field": "input"}}
    server = Recorder(lambda r: httpx.Response(status, json=body))

    with pytest.raises(cls) as caught:
        server.client().get(RUN_A)

    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code, caught.value.message, caught.value.field) == (
        status,
        code,
        "why",
        "input",
    )


def test_it_raises_a_server_error_for_an_answer_not_in_the_apis_shape() -> None:
    server = Recorder(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(ServerError) as caught:
        server.client().get(RUN_A)

    assert caught.value.code == "http_502" and "Bad Gateway" in caught.value.message


def test_it_raises_bad_response_for_an_answer_that_breaks_the_schema() -> None:
    server = Recorder(lambda r: httpx.Response(200, json={"id": "not a run"}))

    with pytest.raises(WfdashError) as caught:
        server.client().get(RUN_A)

    assert caught.value.code == "bad_response"


def test_it_keeps_ids_inside_their_path_segment() -> None:
    server = Recorder(lambda r: httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}}))

    with pytest.raises(NotFound):
        server.client().cancel("../../checkpoints/x")

    assert server.requests[0].url.raw_path == b"/api/runs/..%2F..%2Fcheckpoints%2Fx/cancel/"


# -- pages -----------------------------------------------------------------------------------


def _two_pages(request: httpx.Request) -> httpx.Response:
    def item(seq: int) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "run_id": str(RUN_A),
            "seq": seq,
            "workflow": "chain",
            "last_completed_step": "tick",
            "input_event_type": "Tick",
            "output_event_type": "Tick",
            "created_at": "2026-11-29T12:00:00Z",
            "duration_ms": 1.0,
            "usage": None,
        }

    if request.url.params.get("before") == "cursor-1":
        return httpx.Response(200, json={"items": [item(1)], "next_cursor": None})
    return httpx.Response(200, json={"items": [item(3), item(2)], "next_cursor": "cursor-1"})


def test_it_follows_the_next_cursor_and_fetches_pages_only_as_they_are_read() -> None:
    server = Recorder(_two_pages)
    client = server.client()

    assert [c.seq for c in islice(client.checkpoints(workflow="chain"), 2)] == [3, 2]
    assert len(server.requests) == 1
    assert [c.seq for c in client.checkpoints(workflow="chain")] == [3, 2, 1]
    assert dict(server.requests[-1].url.params) == {"workflow": "chain", "before": "cursor-1"}


# -- the watch's bookkeeping ------------------------------------------------------------------


def _checkpoint(seq: int) -> str:
    return json.dumps(
        {
            "type": "checkpoint",
            "id": str(uuid.uuid4()),
            "run_id": str(RUN_A),
            "seq": seq,
            "last_completed_step": "tick",
            "input_event_type": "Tick",
            "output_event_type": "Tick",
            "created_at": "2026-11-29T12:00:00+00:00",
            "duration_ms": 0.1,
            "llm_calls": 0,
            "tokens": 0,
            "retries": [],
            "html": "<tr></tr>",
        }
    )


def _run(status: str, count: int) -> str:
    return json.dumps(
        {
            "type": "run",
            "run_id": str(RUN_A),
            "workflow": "chain",
            "status": status,
            "created_at": "2026-11-29T12:00:00+00:00",
            "started_at": None,
            "finished_at": None,
            "duration_ms": None,
            "checkpoint_count": count,
            "tokens": 0,
            "parent_run_id": None,
            "parent_checkpoint_id": None,
            "error": "",
            "html": "<tr></tr>",
        }
    )


def test_the_cursor_drops_checkpoints_it_already_yielded() -> None:
    cursor = Cursor(RUN_A, after=2)

    assert cursor.accept(_checkpoint(1)) is None and cursor.accept(_checkpoint(2)) is None
    assert isinstance(cursor.accept(_checkpoint(3)), LiveCheckpoint)
    assert cursor.accept(_checkpoint(3)) is None
    assert cursor.path() == f"ws/runs/{RUN_A}/?after=3"


def test_the_cursor_reports_a_gap_instead_of_skipping_a_checkpoint() -> None:
    cursor = Cursor(RUN_A, after=None)
    cursor.accept(_checkpoint(1))

    with pytest.raises(Gap):
        cursor.accept(_checkpoint(3))

    assert cursor.after == 1


def test_the_cursor_accepts_a_gap_the_server_confirms_after_reconnecting() -> None:
    cursor = Cursor(RUN_A, after=1)
    with pytest.raises(Gap):
        cursor.accept(_checkpoint(3))

    assert isinstance(cursor.accept(_checkpoint(3)), LiveCheckpoint)  # the database has no seq 2
    assert cursor.after == 3


def test_the_cursor_moves_past_what_the_server_skipped() -> None:
    cursor = Cursor(RUN_A, after=0)
    skipped = json.dumps({"type": "skipped", "after": 0, "through": 51, "count": 51})

    assert cursor.accept(skipped) == LiveSkipped(type="skipped", after=0, through=51, count=51)
    assert isinstance(cursor.accept(_checkpoint(52)), LiveCheckpoint)
    assert cursor.accept(skipped) is None


def test_the_cursor_yields_a_status_once_and_finishes_on_a_terminal_one() -> None:
    cursor = Cursor(RUN_A, after=0)

    assert isinstance(cursor.accept(_run("running", 0)), LiveRun)
    assert cursor.accept(_run("running", 0)) is None  # the same again after a reconnect
    assert not cursor.finished
    assert isinstance(cursor.accept(_run("succeeded", 0)), LiveRun) and cursor.finished


def test_the_cursor_ignores_message_types_it_does_not_know() -> None:
    assert Cursor(RUN_A, after=0).accept(json.dumps({"type": "token", "text": "hi"})) is None


def test_the_cursor_raises_for_a_frame_it_cannot_read() -> None:
    with pytest.raises(WfdashError) as caught:
        Cursor(RUN_A, after=0).accept("not json")

    assert caught.value.code == "bad_message"


def test_a_watch_gives_up_once_the_server_stays_unreachable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", "wfd_x", reconnect_for=0.3) as client:
        with pytest.raises(ConnectionFailed) as caught:
            next(client.watch(RUN_A))

    assert "unreachable" in caught.value.message


async def test_an_async_watch_gives_up_once_the_server_stays_unreachable() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", "wfd_x", reconnect_for=0.3) as client:
        with pytest.raises(ConnectionFailed):
            await anext(client.watch(RUN_A))


# -- one definition of the API's types --------------------------------------------------------


def test_the_client_imports_without_django() -> None:
    code = (
        "import sys, wfdash.client; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'ninja', 'channels', 'runs')); "
        "assert not loaded, loaded"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
