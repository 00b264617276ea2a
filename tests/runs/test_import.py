"""importrun against hostile files: every one refused with one line, nothing written."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runs.examples.chain import ChainFlow
from runs.models import Activity, Blob, Checkpoint, Run, RunStatus
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.django_db


def _export() -> dict[str, Any]:
    """A valid export of a 6-tick chain run, made by the engine (records as exportrun writes them)."""

    async def run() -> WorkflowCheckpointer:
        ckptr = WorkflowCheckpointer(ChainFlow())
        await ckptr.run(steps=6)
        return ckptr

    ckptr = asyncio.run(run())
    [(run_id, checkpoints)] = ckptr.checkpoints.items()
    first = checkpoints[0]
    return {
        "format": "wfdash.run/2",
        "run": {
            "id": str(uuid.uuid4()),
            "workflow": "chain",
            "status": "succeeded",
            "start_event": {"type": "ChainStart", "data": {"steps": 6, "sleep": 0.0, "payload": ""}},
            "result": {"ticks": 6},
            "error": "",
            "error_traceback": "",
            "fork_edits": {},
            "created_at": first.created_at.isoformat(),
            "started_at": first.created_at.isoformat(),
            "finished_at": checkpoints[-1].created_at.isoformat(),
            "attempts": 1,
            "checkpoint_count": len(checkpoints),
            "llm_calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "parent_checkpoint_id": None,
        },
        "checkpoints": [
            {
                "id": str(uuid.uuid4()),
                "seq": c.seq,
                "last_completed_step": c.last_completed_step,
                "input_event": {"type": type(c.input_event).__name__, "data": c.input_event.model_dump(mode="json")},
                "output_event": (
                    {"type": type(c.output_event).__name__, "data": c.output_event.model_dump(mode="json")}
                    if c.output_event is not None
                    else None
                ),
                "state": json.loads(json.dumps(c.state_record)),
                "created_at": c.created_at.isoformat(),
                "duration_ms": c.duration_ms,
                "usage": None,
            }
            for c in checkpoints
        ],
    }


def _counts() -> tuple[int, ...]:
    return (Run.objects.count(), Checkpoint.objects.count(), Blob.objects.count(), Activity.objects.count())


def _import(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    call_command("importrun", str(path))


def test_it_imports_a_valid_export(tmp_path: Path) -> None:
    doc = _export()
    _import(tmp_path, json.dumps(doc))
    run = Run.objects.get(pk=doc["run"]["id"])
    assert run.status == RunStatus.SUCCEEDED and run.checkpoint_count == 7
    last = Checkpoint.objects.get(run=run, seq=7)
    assert last.context_state()["store"]["steps"] == 6


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        target: Any = doc
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(key) if key.isdigit() else key] = value

    return mutate


def _duplicate_ids(doc: dict[str, Any]) -> None:
    doc["checkpoints"][1]["id"] = doc["checkpoints"][0]["id"]


def _delta_first(doc: dict[str, Any]) -> None:
    doc["checkpoints"][0]["state"] = {"version": 2, "del": [1]}


DEEP = "[" * 100_000 + "]" * 100_000

HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "duplicate checkpoint ids": (_duplicate_ids, "share an id"),
    "malformed parent id": (_set("run.parent_checkpoint_id", "not-a-uuid"), "parent_checkpoint_id"),
    "unknown parent": (_set("run.parent_checkpoint_id", str(uuid.uuid4())), "not in this database"),
    "impossible date": (_set("run.created_at", "2026-02-30T00:00:00+00:00"), "created_at"),
    "offset of +24:00": (_set("checkpoints.0.created_at", "2026-01-01T00:00:00+24:00"), "created_at"),
    "year 1 with an offset": (_set("run.started_at", "0001-01-01T00:00:00+01:00"), "started_at"),
    "naive date": (_set("run.created_at", "2026-01-01T00:00:00"), "created_at"),
    "negative counter": (_set("run.prompt_tokens", -1), "prompt_tokens"),
    "10^30 counter": (_set("run.completion_tokens", 10**30), "completion_tokens"),
    "boolean attempts": (_set("run.attempts", True), "attempts"),
    "seq as text": (_set("checkpoints.0.seq", "1"), "seq"),
    "usage as text": (_set("checkpoints.1.usage", "x"), "usage"),
    "usage with text tokens": (_set("checkpoints.1.usage", [{"prompt_tokens": "many"}]), "prompt_tokens"),
    "negative duration": (_set("checkpoints.1.duration_ms", -5), "duration_ms"),
    "retries as text": (_set("checkpoints.1.retries", "x"), "retries"),
    "retry without an error": (_set("checkpoints.1.retries", [{"attempt": 1, "duration_ms": 1.0}]), "error"),
    "unknown status": (_set("run.status", "exploded"), "status"),
    "unknown field": (_set("run.owner", "mallory"), "owner"),
    "lone surrogate": (_set("run.result", {"text": "\ud800"}), "lone surrogates"),
    "NUL character": (_set("run.error", "a\x00b"), "NUL"),
    "unknown step": (_set("checkpoints.2.last_completed_step", "evil"), "unknown step"),
    "event type path": (_set("checkpoints.2.input_event", {"type": "os.system", "data": {}}), "unknown event type"),
    "state not an object": (_set("checkpoints.3.state", "x"), "state"),
    "a delta first": (_delta_first, "must be a full one"),
    "unknown record field": (_set("checkpoints.0.state.evil", 1), "unknown fields"),
    "unknown workflow": (_set("run.workflow", "nope"), "unknown workflow"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_it_refuses_a_hostile_field_and_writes_nothing(tmp_path: Path, case: str) -> None:
    mutate, message = HOSTILE[case]
    doc = _export()
    mutate(doc)
    before = _counts()
    with pytest.raises(CommandError, match=message):
        _import(tmp_path, json.dumps(doc))
    assert _counts() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        ('{"format": "wfdash.run/2", "run": ' + DEEP + "}", "nested too deeply"),
        ('{"format": NaN}', "NaN"),
        ("not json", "not valid JSON"),
        ("[]", "not a wfdash run export"),
    ],
    ids=["non-utf8", "100000-deep", "nan", "not-json", "a-list"],
)
def test_it_refuses_a_file_that_is_not_a_sound_export(tmp_path: Path, content: str | bytes, message: str) -> None:
    before = _counts()
    with pytest.raises(CommandError, match=message):
        _import(tmp_path, content)
    assert _counts() == before


def test_it_refuses_nan_inside_an_otherwise_valid_export(tmp_path: Path) -> None:
    text = json.dumps(_export()).replace('"duration_ms": ', '"duration_ms": NaN, "x": ', 1)
    with pytest.raises(CommandError, match="NaN"):
        _import(tmp_path, text)
    assert _counts() == (0, 0, 0, 0)
