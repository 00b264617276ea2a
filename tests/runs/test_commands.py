"""startrun, checkpoints, fork: output formats, and one clear line with exit code 1 for bad input."""

from __future__ import annotations

import json

import pytest

from runs.models import Checkpoint, Run, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


def _counts() -> tuple[int, int]:
    return Run.objects.count(), Checkpoint.objects.count()


def _assert_refused(result, *fragments: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def finished_run(spawn, manage) -> Run:
    started = manage("startrun", "chain", "--input", '{"steps": 3}')
    run = Run.objects.get(pk=started.stdout.strip())
    spawn("wfworker", "--exit-when-idle").wait(timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    return run


def test_it_starts_a_run_and_waits_for_its_result(spawn, manage) -> None:
    spawn("wfworker")
    result = manage("startrun", "chain", "--input", '{"steps": 2}', "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    run = Run.objects.get(pk=lines[0])
    assert json.loads(lines[-1]) == {"ticks": 2}
    assert run.status == RunStatus.SUCCEEDED


def test_it_exits_1_with_the_error_when_a_waited_run_fails(spawn, manage) -> None:
    spawn("wfworker")
    result = manage("startrun", "flaky_forever", "--wait")
    assert result.returncode == 1
    assert "failed" in result.stderr and "needs fixing" in result.stderr
    assert Run.objects.get(pk=result.stdout.strip().splitlines()[0]).status == RunStatus.FAILED


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["nope"], ["unknown workflow 'nope'", "chain"]),
        (["chain", "--input", "{not json"], ["--input is not valid JSON"]),
        (["chain", "--input", "[1, 2]"], ["--input must be a JSON object"]),
        (["chain", "--input", '{"steps": "many"}'], ["invalid ChainStart", "steps"]),
        (["chain", "--input", '{"steps": 3, "colour": "red"}'], ["invalid ChainStart", "colour"]),
    ],
)
def test_it_refuses_bad_start_input_and_writes_nothing(manage, args, fragments) -> None:
    before = _counts()
    _assert_refused(manage("startrun", *args), *fragments)
    assert _counts() == before


def test_it_lists_checkpoints_as_json_lines_with_filters(finished_run, manage) -> None:
    result = manage("checkpoints", "--run", str(finished_run.id), "--step", "tick", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [2, 3, 4]
    for key in ("id", "run_id", "seq", "last_completed_step", "input_event_type", "output_event_type", "created_at"):
        assert key in rows[0]
    stop = manage("checkpoints", "--workflow", "chain", "--output-event-type", "StopEvent", "--json")
    assert [json.loads(line)["seq"] for line in stop.stdout.splitlines()] == [4]
    none = manage("checkpoints", "--workflow", "chain", "--input-event-type", "ChainStart", "--step", "tick")
    assert none.returncode == 0 and none.stdout.strip() == ""
    _assert_refused(manage("checkpoints", "--run", "not-a-uuid"), "--run must be a run id")


def test_it_forks_with_and_without_an_edit(finished_run, spawn, manage) -> None:
    ckpt = Checkpoint.objects.get(run=finished_run, seq=1)
    spawn("wfworker")
    plain = manage("fork", str(ckpt.id), "--wait")
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout.strip().splitlines()[-1]) == {"ticks": 3}
    edited = manage("fork", str(ckpt.id), "--output-event", '{"n": 3}', "--wait")
    assert edited.returncode == 0, edited.stderr
    child = Run.objects.get(pk=edited.stdout.splitlines()[0])
    assert child.parent_checkpoint_id == ckpt.id
    assert child.fork_edits == {"output_event": {"type": "Tick", "data": {"n": 3}}}
    assert list(Checkpoint.objects.filter(run=child).values_list("seq", flat=True)) == [1]


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        ("{oops", ["--output-event is not valid JSON"]),
        ('{"n": "three"}', ["invalid Tick", "n"]),
        ('{"type": "Nope", "data": {}}', ["unknown event type 'Nope'"]),
        ('{"type": "os.system", "data": {}}', ["unknown event type 'os.system'"]),
        ('{"type": "HumanResponseEvent", "data": {}}', ["no step of this workflow accepts HumanResponseEvent"]),
    ],
)
def test_it_refuses_bad_fork_edits_and_writes_nothing(finished_run, manage, edit, fragments) -> None:
    ckpt = Checkpoint.objects.get(run=finished_run, seq=2)
    before = _counts()
    _assert_refused(manage("fork", str(ckpt.id), "--output-event", edit), *fragments)
    assert _counts() == before


def test_it_refuses_an_unknown_checkpoint(manage) -> None:
    _assert_refused(manage("fork", "00000000-0000-0000-0000-000000000000"), "unknown checkpoint")
    _assert_refused(manage("fork", "garbage"), "unknown checkpoint")
    assert _counts() == (0, 0)


def _replace_state(c: Checkpoint, state: dict) -> None:
    """Make `c` a full record (a version 1 snapshot) holding `state`."""
    c.state, c.snapshot_seq = state, c.seq


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: setattr(c, "output_event", {"type": "subprocess.Popen", "data": {}}),
        lambda c: _replace_state(
            c, {**c.context_state(), "store": {}, "queued": [{"step": "evil", "events": [c.input_event]}]}
        ),
        lambda c: setattr(c, "state", {"store": {}}),
        lambda c: setattr(c, "state", {**c.state, "store": {"k": {"b": "0" * 64}}}),
        lambda c: setattr(c, "state", {**c.state, "add": [[10**6, "q", "evil", c.input_event]]}),
    ],
)
def test_it_refuses_to_fork_a_tampered_checkpoint(finished_run, manage, tamper) -> None:
    ckpt = Checkpoint.objects.get(run=finished_run, seq=2)
    tamper(ckpt)
    ckpt.save()
    before = _counts()
    _assert_refused(manage("fork", str(ckpt.id)), "cannot be restored")
    assert _counts() == before


# -- ids by prefix, quiet pipes, one-line errors -------------------------------------------


def test_checkpoints_takes_a_run_id_prefix(finished_run, manage) -> None:
    result = manage("checkpoints", "--run", finished_run.id.hex[:8], "--json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [1, 2, 3, 4]


def test_checkpoints_lists_steps_that_returned_no_event(manage) -> None:
    run = Run.objects.create(workflow="map")
    for seq, output in ((1, ""), (2, "Mapped")):
        Checkpoint.objects.create(
            run=run, workflow="map", seq=seq, snapshot_seq=seq, last_completed_step="spread",
            input_event_type="MapStart", output_event_type=output, input_event={}, state={},
        )  # fmt: skip
    result = manage("checkpoints", "--output-event-type", "None")
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "#1" in line and "MapStart -> -" in line


def test_fork_takes_a_checkpoint_id_prefix(finished_run, manage) -> None:
    ckpt = Checkpoint.objects.get(run=finished_run, seq=2)
    result = manage("fork", str(ckpt.id)[:10])
    assert result.returncode == 0, result.stderr
    assert Run.objects.get(pk=result.stdout.strip()).parent_checkpoint_id == ckpt.id


def test_exportrun_takes_a_run_id_prefix(finished_run, manage) -> None:
    result = manage("exportrun", finished_run.id.hex[:6])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run"]["id"] == str(finished_run.id)


def test_an_ambiguous_prefix_is_one_line_naming_how_many_match(manage) -> None:
    for n in (1, 2, 3):
        Run.objects.create(id=f"abcdef0{n}-0000-4000-8000-00000000000{n}", workflow="chain")
    _assert_refused(manage("exportrun", "abcdef"), "run id prefix 'abcdef' matches 3 runs; type more characters")


def test_an_unknown_prefix_is_one_line(manage) -> None:
    _assert_refused(manage("exportrun", "abcdef"), "unknown run 'abcdef'", "no run has an id starting with")
    _assert_refused(manage("fork", "abcdef"), "unknown checkpoint 'abcdef'")
    _assert_refused(manage("checkpoints", "--run", "abcdef"), "no run has an id starting with 'abcdef'")


def test_startrun_refuses_joke_without_an_llm(manage, subprocess_env) -> None:
    subprocess_env.pop("OPENAI_API_KEY", None)
    subprocess_env.pop("OPENAI_BASE_URL", None)
    _assert_refused(manage("startrun", "joke", "--input", '{"topic": "cats"}'), "calls an LLM", "OPENAI_API_KEY")
    assert _counts() == (0, 0)


def test_startrun_refuses_an_unknown_key_of_approval(manage) -> None:
    _assert_refused(manage("startrun", "approval", "--input", '{"text": "x"}'), "invalid ApprovalStart: text")
    assert _counts() == (0, 0)


def test_checkpoints_piped_into_head_stops_without_a_traceback(subprocess_env) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    run = Run.objects.create(workflow="chain")
    Checkpoint.objects.bulk_create(
        Checkpoint(
            run=run, workflow="chain", seq=seq, snapshot_seq=seq, last_completed_step="tick",
            input_event_type="Tick", output_event_type="Tick", input_event={}, state={},
        )
        for seq in range(1, 3001)
    )  # fmt: skip
    # 3,000 lines (about 400 KB) overflow the pipe's buffer: the command is still writing when head exits.
    pipeline = f"{sys.executable} {ROOT / 'manage.py'} checkpoints | head -n 2"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline], env=subprocess_env, cwd=ROOT, capture_output=True, text=True
    )
    assert len(result.stdout.splitlines()) == 2
    assert result.stderr == ""
    assert result.returncode == 0
