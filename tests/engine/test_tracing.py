"""The engine's spans (wfdash.telemetry), received by an OTLP/HTTP collector on 127.0.0.1; and
the app without OpenTelemetry."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp_collector import Collector, Span, otlp_collector
from wfdash import telemetry
from wfdash.workflow import (
    ConstantDelayRetryPolicy,
    Event,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowRuntimeError,
    step,
)
from wfdash.workflow.checkpointer import WorkflowCheckpointer

pytestmark = pytest.mark.engine_only

ROOT = Path(__file__).resolve().parents[2]


class Half(Event):
    n: int


class Retrying(Workflow):
    """`first` fails `failures` times (its retry policy allows 3 attempts), `second` adds one."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.calls = 0

    @step(retry_policy=ConstantDelayRetryPolicy(maximum_attempts=3, delay=0))
    async def first(self, ev: StartEvent) -> Half:
        self.calls += 1
        if self.calls <= self.failures:
            raise ValueError(f"flaky {self.calls}")
        return Half(n=1)

    @step
    async def second(self, ev: Half) -> StopEvent:
        return StopEvent(result=ev.n + 1)


@pytest.fixture
def collector(monkeypatch: pytest.MonkeyPatch) -> Iterator[Collector]:
    with otlp_collector() as c:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint)
        telemetry.reset()
        try:
            yield c
        finally:
            telemetry.reset()


def _spans(collector: Collector) -> dict[str, Span]:
    telemetry.flush()
    return {s.name: s for s in collector.spans}


async def test_it_records_failed_attempts_as_exception_events_on_the_step_that_succeeded(
    collector: Collector,
) -> None:
    cp = WorkflowCheckpointer(Retrying(failures=2), name="retrying")
    assert await cp.run() == 2
    step_span = _spans(collector)["step first"]
    assert [(name, attrs["wfdash.attempt"], attrs["exception.message"]) for name, attrs in step_span.events] == [
        ("exception", 1, "flaky 1"),
        ("exception", 2, "flaky 2"),
    ]
    assert step_span.attributes["wfdash.attempt"] == 3
    assert step_span.status_code == 0  # it succeeded in the end


async def test_it_marks_a_step_that_failed_for_good_and_its_run_as_errors(collector: Collector) -> None:
    cp = WorkflowCheckpointer(Retrying(failures=3), name="retrying")
    with pytest.raises(WorkflowRuntimeError):
        await cp.run()
    spans = _spans(collector)
    assert spans["step first"].status_code == 2
    assert spans["step first"].status_message == "step 'first' failed: ValueError: flaky 3"
    assert spans["step first"].attributes["error.type"] == "ValueError"
    assert len(spans["step first"].events) == 3
    assert spans["run retrying"].status_code == 2
    assert spans["run retrying"].attributes["wfdash.status"] == "failed"
    assert "step second" not in spans


async def test_it_traces_a_run_without_checkpointer_under_its_class_name(collector: Collector) -> None:
    handler = Retrying(failures=0).run()
    assert await handler == 2
    spans = _spans(collector)
    assert set(spans) == {"run Retrying", "step first", "step second"}
    root = spans["run Retrying"]
    assert root.trace_id == handler.run_id.replace("-", "")
    assert root.span_id == f"{telemetry.root_span_id_of(handler.run_id):016x}"
    assert spans["step first"].parent_span_id == root.span_id
    assert "wfdash.seq" not in spans["step first"].attributes  # no checkpoint, no seq


async def test_it_drops_whole_traces_the_sampler_rejects(collector: Collector, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry.reset()
    assert await WorkflowCheckpointer(Retrying(failures=0)).run() == 2
    assert _spans(collector) == {}


async def test_it_records_nothing_when_tracing_is_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    telemetry.reset()
    assert not telemetry.enabled()
    assert telemetry.run_trace("r", "w") is None
    assert await WorkflowCheckpointer(Retrying(failures=1)).run() == 2


async def test_it_is_off_when_the_sdk_is_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry.reset()
    try:
        assert not telemetry.enabled()
    finally:
        telemetry.reset()


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


RUN_A_CHAIN = """
import asyncio, sys
from runs.examples.chain import ChainFlow
from wfdash.workflow.checkpointer import WorkflowCheckpointer
from wfdash import llm  # noqa: F401 - the LLM helper imports too
async def main():
    return await WorkflowCheckpointer(ChainFlow()).run(steps=3)
assert asyncio.run(main()) == {"ticks": 3}
"""

# Any import of opentelemetry fails, as if the optional extra were not installed.
BLOCK_OPENTELEMETRY = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Blocker())
"""


def test_it_runs_workflows_and_the_app_without_opentelemetry_installed(tmp_path: Path) -> None:
    code = (
        BLOCK_OPENTELEMETRY
        + RUN_A_CHAIN
        + """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from runs import executor, metrics, views, api  # noqa: F401 - every module that uses telemetry
assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_HOST="localhost").status_code == 200
assert not any(m.startswith("opentelemetry") for m in sys.modules)
print("ok")
"""
    )
    proc = _python(
        code,
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        DJANGO_SETTINGS_MODULE="wfdash.settings",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "OpenTelemetry is not installed" in proc.stderr


def test_it_does_not_import_opentelemetry_when_tracing_is_off() -> None:
    proc = _python(RUN_A_CHAIN + "assert not any(m.startswith('opentelemetry') for m in sys.modules), 'imported'")
    assert proc.returncode == 0, proc.stderr
