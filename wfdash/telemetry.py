"""OpenTelemetry traces of runs, steps and LLM calls: off, and free, unless configured.

OpenTelemetry is an optional extra (requirements-otel.txt) and every import of it is here,
made only once tracing is on: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not true. Spans
then go through a BatchSpanProcessor to the OTLP/HTTP exporter, which reads the other
standard variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`...). Off, a run costs one check at its start and
a step one `is None`.

A run is one trace whoever executes it: its trace id is the run's UUID (128 bits) and its
root span's id is derived from it, so step spans written by a worker that resumed the run
join the same trace under the same root. The root span itself is exported once, when the
run ends (`export_run`), with the run's start and end times; a fork's root links to its
parent run's root. No Django here: the engine uses this module.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

log = logging.getLogger("wfdash.telemetry")

_UNSET: Any = object()
# The configured tracer, None when tracing is off, _UNSET before the first look.
_tracer: Any = _UNSET
_provider: Any = None
# The ids the next span started must take (a run's root span): see _RunIds.
_forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("wfdash_forced_span_ids", default=None)


def tracing_configured() -> bool:
    """Whether the environment asks for traces (whether or not OpenTelemetry is installed)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def enabled() -> bool:
    """Whether spans are recorded in this process (configures tracing on first call)."""
    return _get_tracer() is not None


def _get_tracer() -> Any:
    global _tracer
    if _tracer is _UNSET:
        _tracer = _configure()
    return _tracer


def _configure() -> Any:
    global _provider
    if not tracing_configured():
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install -r requirements-otel.txt): no traces"
        )
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "wfdash"}))
    provider = TracerProvider(resource=resource, id_generator=_id_generator())
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Other instrumentations (httpx, openai...) join our traces if nothing else set one.
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    _provider = provider
    return provider.get_tracer("wfdash")


def _id_generator() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _RunIds(RandomIdGenerator):
        """Random ids, except for a run's root span, whose ids follow from the run id."""

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced is not None else super().generate_span_id()

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced is not None else super().generate_trace_id()

    return _RunIds()


def flush(timeout_seconds: float = 5.0) -> None:
    """Export the spans still buffered (a worker calls it when it stops)."""
    if _provider is not None:
        _provider.force_flush(int(timeout_seconds * 1000))


def reset() -> None:
    """Flush and forget the configuration; the next run reads the environment again (tests)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer, _provider = _UNSET, None


# -- identity --------------------------------------------------------------------


def trace_id_of(run_id: str | uuid.UUID) -> int:
    """A run's trace id: its UUID, or for another kind of id a hash of it."""
    try:
        return uuid.UUID(str(run_id)).int
    except ValueError:
        return int.from_bytes(hashlib.sha256(str(run_id).encode()).digest()[:16], "big") or 1


def trace_id_hex(run_id: str | uuid.UUID) -> str:
    return f"{trace_id_of(run_id):032x}"


def trace_link(run_id: str | uuid.UUID, url_template: str) -> dict[str, str] | None:
    """A run's trace id and, with `url_template` ("...{trace_id}..."), its address in a trace
    viewer; None when this deployment does not trace runs."""
    if not (url_template or tracing_configured()):
        return None
    trace_id = trace_id_hex(run_id)
    return {"id": trace_id, "url": url_template.replace("{trace_id}", trace_id) if url_template else ""}


def root_span_id_of(run_id: str | uuid.UUID) -> int:
    """The span id of a run's root span, the same in every process."""
    digest = hashlib.sha256(b"wfdash-run-root:" + str(run_id).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def _root_context(run_id: str, tracer: Any) -> Any:
    from opentelemetry import trace

    trace_id = trace_id_of(run_id)
    # Asked once per run, with the trace id only: a ratio sampler decides the same in
    # every worker, so a trace is kept or dropped whole.
    sampled = True
    sampler = getattr(_provider, "sampler", None)
    if sampler is not None:
        sampled = sampler.should_sample(None, trace_id, "run").decision.is_sampled()
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else trace.TraceFlags.DEFAULT)
    return trace.SpanContext(trace_id, root_span_id_of(run_id), is_remote=True, trace_flags=flags)


# -- runs and steps --------------------------------------------------------------


class RunTrace:
    """One run's tracing in this process: step spans under the run's root span.

    `root` says whether the engine exports the root span when the run ends here; a
    worker does it itself (`export_run`), from the run's stored start time.
    """

    __slots__ = ("tracer", "run_id", "workflow", "parent_run_id", "started_at", "root", "parent")

    def __init__(
        self, tracer: Any, run_id: str, workflow: str, parent_run_id: str | None, started_at: float, root: bool
    ) -> None:
        from opentelemetry import trace

        self.tracer = tracer
        self.run_id = run_id
        self.workflow = workflow
        self.parent_run_id = parent_run_id
        self.started_at = started_at
        self.root = root
        self.parent = trace.set_span_in_context(trace.NonRecordingSpan(_root_context(run_id, tracer)))

    def start_step(self, step: str, input_event: Any) -> StepSpan:
        """A span for one execution of `step`, made current in the calling task (the step's own)."""
        span = self.tracer.start_span(
            f"step {step}",
            context=self.parent,
            attributes={
                "wfdash.workflow": self.workflow,
                "wfdash.run_id": self.run_id,
                "wfdash.step": step,
                "wfdash.input_event_type": type(input_event).__name__,
            },
        )
        return StepSpan(span)

    def finish(self, error: BaseException | None) -> None:
        """The run ended in this process: export its root span (when `root`)."""
        if not self.root:
            return
        status = "succeeded" if error is None else "cancelled" if _is_cancel(error) else "failed"
        export_run(
            self.run_id,
            self.workflow,
            started_at=self.started_at,
            status=status,
            error=None if error is None else f"{type(error).__name__}: {error}",
            parent_run_id=self.parent_run_id,
        )


def _is_cancel(error: BaseException) -> bool:
    from .workflow.errors import WorkflowCancelledError

    return isinstance(error, WorkflowCancelledError)


class StepSpan:
    """A step execution's span: failed attempts as exception events, the outcome as attributes."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any) -> None:
        from opentelemetry import context, trace

        self.span = span
        # Current in the step's task, so spans of its LLM calls (and of any instrumented
        # library) are its children.
        self.token: Any = context.attach(trace.set_span_in_context(span))

    def attempt_failed(self, error: BaseException, attempt: int) -> None:
        self.span.record_exception(error, attributes={"wfdash.attempt": attempt})

    def succeeded(self, output: Any, attempt: int, seq: int | None) -> None:
        span = self.span
        span.set_attribute("wfdash.attempt", attempt)
        span.set_attribute("wfdash.output_event_type", type(output).__name__ if output is not None else "")
        if seq is not None:
            span.set_attribute("wfdash.seq", seq)

    def failed(self, error: BaseException, attempt: int, recorded: bool) -> None:
        from opentelemetry.trace import Status, StatusCode

        if not recorded:
            self.span.record_exception(error.__cause__ or error, attributes={"wfdash.attempt": attempt})
        self.span.set_attribute("wfdash.attempt", attempt)
        self.span.set_attribute("error.type", type(error.__cause__ or error).__name__)
        self.span.set_status(Status(StatusCode.ERROR, str(error)[:500]))

    def end(self) -> None:
        """End the span and make it no longer current (idempotent)."""
        if self.token is None:
            return
        from opentelemetry import context

        context.detach(self.token)
        self.token = None
        self.span.end()


def run_trace(
    run_id: str,
    workflow: str,
    *,
    parent_run_id: str | None = None,
    started_at: datetime | float | None = None,
    root: bool = True,
) -> RunTrace | None:
    """The tracing of a run starting (or resuming) here; None when tracing is off."""
    tracer = _get_tracer()
    if tracer is None:
        return None
    started = started_at.timestamp() if isinstance(started_at, datetime) else started_at
    return RunTrace(tracer, run_id, workflow, parent_run_id, started or time.time(), root)


def export_run(
    run_id: str,
    workflow: str,
    *,
    started_at: datetime | float | None,
    status: str,
    error: str | None = None,
    parent_run_id: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> None:
    """Export a finished run's root span (ids from the run id, ending now); no-op when off."""
    tracer = _get_tracer()
    if tracer is None:
        return
    from opentelemetry import context
    from opentelemetry.trace import Link, Status, StatusCode

    if not _root_context(run_id, tracer).trace_flags.sampled:
        return
    started = started_at.timestamp() if isinstance(started_at, datetime) else started_at
    links = []
    if parent_run_id is not None:
        parent = _root_context(parent_run_id, tracer)
        links.append(Link(parent, {"wfdash.link": "forked_from", "wfdash.run_id": parent_run_id}))
    attrs: dict[str, Any] = {"wfdash.workflow": workflow, "wfdash.run_id": run_id, "wfdash.status": status}
    if parent_run_id is not None:
        attrs["wfdash.parent_run_id"] = parent_run_id
    attrs.update(attributes or {})
    ids = _forced_ids.set((trace_id_of(run_id), root_span_id_of(run_id)))
    try:
        span = tracer.start_span(
            f"run {workflow}",
            context=context.Context(),  # no parent: the root of the run's trace
            attributes=attrs,
            links=links,
            start_time=int((started or time.time()) * 1e9),
        )
    finally:
        _forced_ids.reset(ids)
    if error is not None and status == "failed":
        span.set_status(Status(StatusCode.ERROR, error[:500]))
    span.end()


# -- LLM calls -------------------------------------------------------------------


class _NoLLMSpan:
    def record(self, **_: Any) -> None:
        pass


_NO_LLM_SPAN = _NoLLMSpan()


class LLMSpan:
    """What an LLM call reports on its span (OpenTelemetry's GenAI semantic conventions)."""

    __slots__ = ("span",)

    def __init__(self, span: Any) -> None:
        self.span = span

    def record(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        response_id: str | None = None,
        finish_reasons: list[str] | None = None,
    ) -> None:
        span = self.span
        if response_model:
            span.set_attribute("gen_ai.response.model", response_model)
        if input_tokens is not None:
            span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens is not None:
            span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if response_id:
            span.set_attribute("gen_ai.response.id", response_id)
        if finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", finish_reasons)


@contextmanager
def _ended_without_attaching(span: Any) -> Iterator[Any]:
    """The span, ended on exit, never made any context's current span."""
    try:
        yield span
    finally:
        span.end()


@contextmanager
def llm_span(
    operation: str,
    model: str,
    *,
    provider: str = "openai",
    server: tuple[str, int] | None = None,
    current: bool = True,
) -> Iterator[LLMSpan | _NoLLMSpan]:
    """A client span around one LLM call, a child of the current step's span.

    `operation` is the GenAI operation name ("chat", "text_completion"); call
    `record(...)` on what it yields with the response's model and token counts. An
    exception ends the span with status ERROR and `error.type`. `current=False` for a
    streamed call: its body is an async generator, which runs in its consumer's context
    between pieces, so the span must not become that context's current span.
    """
    tracer = _get_tracer()
    if tracer is None:
        yield _NO_LLM_SPAN
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": provider,
        # The attribute older backends read (renamed gen_ai.provider.name in semconv 1.37).
        "gen_ai.system": provider,
        "gen_ai.request.model": model,
    }
    if server is not None:
        attributes["server.address"], attributes["server.port"] = server
    name = f"{operation} {model}"
    if current:
        opened = tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False)
    else:
        started = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, record_exception=False)
        opened = _ended_without_attaching(started)
    with opened as span:
        try:
            yield LLMSpan(span)
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
            raise
