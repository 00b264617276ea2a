"""Traces of runs executed by real workers, received by an OTLP/HTTP collector on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from runs.models import Checkpoint, Run, RunStatus, fork_run, start_run
from tests.conftest import wait_until
from tests.fake_openai import FakeOpenAI, fake_openai_server
from tests.otlp_collector import Collector, Span, otlp_collector
from tests.runs.factories import viewer

pytestmark = pytest.mark.django_db(transaction=True)

FAST_LEASE = {"WFDASH_LEASE_SECONDS": "2"}


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as c:
        yield c


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with fake_openai_server() as f:
        monkeypatch.setenv("OPENAI_BASE_URL", f.base_url)  # start_run refuses LLM workflows without one
        yield f


def _tracing(collector: Collector) -> dict[str, str]:
    # Spans leave the worker's batch processor within 50 ms, so a killed worker's are out.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}


def _of_run(spans: list[Span], run: Run) -> list[Span]:
    return [s for s in spans if s.trace_id == run.id.hex]


def _joke_run(spawn, collector: Collector, fake: FakeOpenAI) -> tuple[Run, list[Span]]:
    run = start_run("joke", {"topic": "chemistry"})
    env = {**_tracing(collector), "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-test"}
    worker = spawn("wfworker", "--exit-when-idle", env=env)
    assert worker.wait(timeout=60) == 0, worker.stdout.read() if worker.stdout else ""
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    # The worker flushed its spans before exiting.
    return run, _of_run(collector.wait_for(lambda spans: any(s.name == "run joke" for s in spans)), run)


def test_it_traces_a_joke_run_as_one_trace_rooted_in_the_run(spawn, collector: Collector, fake: FakeOpenAI) -> None:
    run, spans = _joke_run(spawn, collector, fake)
    assert sorted(s.name for s in spans) == [
        "chat gpt-4o-mini",
        "chat gpt-4o-mini",
        "run joke",
        "step critique_joke",
        "step generate_joke",
    ]
    (root,) = [s for s in spans if s.name == "run joke"]
    assert root.parent_span_id == ""
    assert root.attributes["wfdash.run_id"] == str(run.id)
    assert root.attributes["wfdash.status"] == "succeeded"
    assert root.service == "wfdash"
    assert root.start_ns <= min(s.start_ns for s in spans) and root.end_ns >= max(s.end_ns for s in spans)


def test_it_records_each_step_as_a_child_span_of_the_run_with_its_checkpoint(
    spawn, collector: Collector, fake: FakeOpenAI
) -> None:
    run, spans = _joke_run(spawn, collector, fake)
    (root,) = [s for s in spans if s.name == "run joke"]
    steps = {s.attributes["wfdash.step"]: s for s in spans if s.name.startswith("step ")}
    assert {s.parent_span_id for s in steps.values()} == {root.span_id}
    assert steps["generate_joke"].attributes == {
        "wfdash.workflow": "joke",
        "wfdash.run_id": str(run.id),
        "wfdash.step": "generate_joke",
        "wfdash.input_event_type": "JokeStart",
        "wfdash.output_event_type": "JokeEvent",
        "wfdash.attempt": 1,
        "wfdash.seq": 1,
    }
    assert steps["critique_joke"].attributes["wfdash.seq"] == 2
    assert steps["critique_joke"].attributes["wfdash.output_event_type"] == "StopEvent"


def test_it_records_llm_calls_under_their_step_with_genai_attributes_and_token_counts(
    spawn, collector: Collector, fake: FakeOpenAI
) -> None:
    run, spans = _joke_run(spawn, collector, fake)
    steps = {s.span_id: s.attributes["wfdash.step"] for s in spans if s.name.startswith("step ")}
    calls = {steps[s.parent_span_id]: s for s in spans if s.name.startswith("chat ")}
    assert set(calls) == {"generate_joke", "critique_joke"}
    # The fake server counts words: the prompt's, and its answer's.
    prompt = "Write your best joke about chemistry."
    first = calls["generate_joke"].attributes
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.provider.name"] == "openai"
    assert first["gen_ai.request.model"] == first["gen_ai.response.model"] == "gpt-4o-mini"
    assert first["gen_ai.usage.input_tokens"] == len(prompt.split())
    assert first["gen_ai.usage.output_tokens"] == len(FakeOpenAI.answer(prompt).split())
    assert calls["generate_joke"].kind == 3  # SPAN_KIND_CLIENT
    for step, span in calls.items():
        (usage,) = Checkpoint.objects.get(run=run, last_completed_step=step).usage
        assert span.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
        assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]


def test_it_marks_a_failed_llm_call_and_its_step_as_errors(spawn, collector: Collector, fake: FakeOpenAI) -> None:
    fake.fail_next(401, "bad key")
    run = start_run("joke", {"topic": "chemistry"})
    env = {**_tracing(collector), "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-secret-test"}
    spawn("wfworker", "--exit-when-idle", env=env).wait(timeout=60)
    spans = _of_run(collector.wait_for(lambda spans: any(s.name == "run joke" for s in spans)), run)
    by_name = {s.name: s for s in spans}
    assert by_name["run joke"].attributes["wfdash.status"] == "failed"
    assert by_name["run joke"].status_code == 2
    step = by_name["step generate_joke"]
    assert step.status_code == 2 and "authentication failed" in step.status_message
    assert [name for name, _ in step.events] == ["exception"]
    assert step.events[0][1]["exception.type"] == "wfdash.llm.LLMError"
    assert "sk-secret-test" not in str(step.events)
    call = by_name["chat gpt-4o-mini"]
    assert call.parent_span_id == step.span_id
    assert call.status_code == 2 and call.attributes["error.type"] == "LLMError"


def test_it_continues_the_same_trace_when_another_worker_resumes_the_run(spawn, collector: Collector) -> None:
    run = start_run("chain", {"steps": 12, "sleep": 0.2})
    victim = spawn("wfworker", "--worker-id", "victim", env={**FAST_LEASE, **_tracing(collector)})
    collector.wait_for(lambda spans: len([s for s in _of_run(spans, run) if s.name == "step tick"]) >= 3)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    # A longer lease for the rescuer: on a loaded machine a 2 s lease can lapse under its own worker.
    spawn("wfworker", "--worker-id", "rescuer", env={"WFDASH_LEASE_SECONDS": "10", **_tracing(collector)})
    wait_until(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=60)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.attempts == 2, (run.error, run.attempts, run.worker_id)
    spans = _of_run(collector.wait_for(lambda spans: any(s.name == "run chain" for s in spans)), run)
    (root,) = [s for s in spans if s.name == "run chain"]
    steps = [s for s in spans if s.name.startswith("step ")]
    assert {s.parent_span_id for s in steps} == {root.span_id}
    # Both workers' spans: seq 1..13 all there (a step killed in flight ran again, under a new span).
    assert {s.attributes.get("wfdash.seq") for s in steps} >= set(range(1, 14))
    assert root.attributes["wfdash.attempts"] == 2
    assert root.start_ns == int(run.started_at.timestamp() * 1e9)


def test_it_links_a_forks_trace_to_its_parents(spawn, collector: Collector) -> None:
    parent = start_run("chain", {"steps": 3})
    spawn("wfworker", "--exit-when-idle", env=_tracing(collector)).wait(timeout=60)
    at = Checkpoint.objects.get(run=parent, seq=2)
    fork = fork_run(at.id, output_event={"n": 2})
    spawn("wfworker", "--exit-when-idle", env=_tracing(collector)).wait(timeout=60)
    fork.refresh_from_db()
    assert fork.status == RunStatus.SUCCEEDED, fork.error
    spans = collector.wait_for(lambda spans: len([s for s in spans if s.name == "run chain"]) == 2)
    (parent_root,) = [s for s in _of_run(spans, parent) if s.name == "run chain"]
    (fork_root,) = [s for s in _of_run(spans, fork) if s.name == "run chain"]
    assert fork_root.links == [
        (parent_root.trace_id, parent_root.span_id, {"wfdash.link": "forked_from", "wfdash.run_id": str(parent.id)})
    ]
    assert fork_root.attributes["wfdash.parent_run_id"] == str(parent.id)


def test_it_sends_nothing_when_tracing_is_not_configured(spawn, collector: Collector) -> None:
    run = start_run("chain", {"steps": 3})
    worker = spawn("wfworker", "--exit-when-idle")
    assert worker.wait(timeout=60) == 0
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert collector.spans == []


def _run_page(run: Run) -> str:
    client = Client()
    client.force_login(viewer())
    return client.get(f"/runs/{run.id}/").content.decode()


def test_it_shows_the_trace_id_linked_to_the_trace_viewer_on_the_run_page() -> None:
    run = start_run("chain", {"steps": 1})
    with override_settings(WFDASH_TRACE_URL="https://tempo.example/trace/{trace_id}"):
        page = _run_page(run)
    assert f'<a class="mono" href="https://tempo.example/trace/{run.id.hex}"' in page
    assert f">{run.id.hex}</a>" in page


def test_it_shows_the_trace_id_unlinked_when_only_tracing_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    run = start_run("chain", {"steps": 1})
    page = _run_page(run)
    assert f'<span class="mono">{run.id.hex}</span>' in page


def test_it_shows_no_trace_when_runs_are_not_traced() -> None:
    run = start_run("chain", {"steps": 1})
    assert 'id="run-trace"' not in _run_page(run)


def test_it_gives_the_trace_id_in_the_runs_api_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    run = start_run("chain", {"steps": 1})
    client = Client()
    client.force_login(viewer())
    assert client.get(f"/api/runs/{run.id}/").json()["trace_id"] is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert client.get(f"/api/runs/{run.id}/").json()["trace_id"] == run.id.hex
