"""Prometheus metrics: what workers and web processes count, and `GET /metrics`.

Workers count runs, steps, checkpoint writes and LLM tokens; web processes count live
sockets. With `PROMETHEUS_MULTIPROC_DIR` set (read once at start, as prometheus-client
does) every process on a machine writes its values there and any web process's
`/metrics` adds them up (prometheus-client's multiprocess mode; `serve` needs none: its worker runs in the web process).
A worker on a machine without a web process serves its own with `wfworker --metrics-port`.
The run queue's gauges are read from the database at scrape time, so they are right
however many machines run workers.

Access: open to loopback clients; from elsewhere `Authorization: Bearer
$WFDASH_METRICS_TOKEN` (401 without it or with a wrong one; 403 when no token is set).
"""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import os
import threading
import time
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from django.conf import settings
from django.db.models import Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
# Counting queued or running rows stops here: a scrape costs at most this many index entries.
COUNT_CAP = 100_000

RUNS_STARTED = Counter("wfdash_runs_started", "Runs a worker began executing (first attempts).", ["workflow"])
RUNS_FINISHED = Counter("wfdash_runs_finished", "Runs a worker finished, by final status.", ["workflow", "status"])
STEP_DURATION = Histogram(
    "wfdash_step_duration_seconds",
    "Step executions, from start to completion (retries included), by workflow and step.",
    ["workflow", "step"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CHECKPOINT_WRITE = Histogram(
    "wfdash_checkpoint_write_seconds",
    "From a step's completion until its checkpoint is committed (group commit included).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
LLM_TOKENS = Counter("wfdash_llm_tokens", "LLM tokens used by steps, by kind (input, output).", ["workflow", "kind"])
LIVE_CONNECTIONS = Gauge("wfdash_live_connections", "Open live-view WebSockets.", multiprocess_mode="livesum")
WORKER_HEARTBEAT = Gauge(
    "wfdash_worker_heartbeat_timestamp_seconds",
    "When a worker last showed it was alive (Unix time; the newest of the workers scraped).",
    multiprocess_mode="max",
)

# Labelled children, looked up once: `labels()` takes a lock and builds a tuple each call.
_steps: dict[tuple[str, str], Any] = {}
_tokens: dict[str, tuple[Any, Any]] = {}


def run_started(workflow: str) -> None:
    RUNS_STARTED.labels(workflow).inc()


def run_finished(workflow: str, status: str) -> None:
    RUNS_FINISHED.labels(workflow, status).inc()


def checkpoint_written(workflow: str, step: str, step_seconds: float, write_seconds: float, usage: Any) -> None:
    """One committed checkpoint: its step's duration, the write's, the step's LLM tokens."""
    histogram = _steps.get((workflow, step))
    if histogram is None:
        histogram = _steps[(workflow, step)] = STEP_DURATION.labels(workflow, step)
    histogram.observe(step_seconds)
    CHECKPOINT_WRITE.observe(write_seconds)
    if usage:
        counters = _tokens.get(workflow)
        if counters is None:
            counters = _tokens[workflow] = (LLM_TOKENS.labels(workflow, "input"), LLM_TOKENS.labels(workflow, "output"))
        counters[0].inc(sum(int(u.get("prompt_tokens") or 0) for u in usage))
        counters[1].inc(sum(int(u.get("completion_tokens") or 0) for u in usage))


def heartbeat() -> None:
    WORKER_HEARTBEAT.set(time.time())


def process_exited(pid: int) -> None:
    """Forget a stopped process's live gauges (multiprocess mode; its counters stay)."""
    if MULTIPROCESS_DIR:
        mark_process_dead(pid, MULTIPROCESS_DIR)


# Web processes and workers alike, when they exit normally (SIGTERM included).
atexit.register(lambda: process_exited(os.getpid()))


class RunQueueCollector:
    """The run queue, read from the database at scrape time (two bounded counts and a MIN)."""

    def collect(self) -> Iterator[Metric]:
        from .models import Run, RunStatus

        for status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING):
            count = Run.objects.filter(status=status).order_by()[:COUNT_CAP].count()
            yield GaugeMetricFamily(
                f"wfdash_runs_{status.value}",
                f"Runs {status.value} now (read from the database; at most {COUNT_CAP}).",
                value=count,
            )
        oldest = Run.objects.filter(status=RunStatus.QUEUED).aggregate(at=Min("created_at"))["at"]
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "wfdash_oldest_queued_run_age_seconds",
            "Age of the oldest queued run (0 when none is queued).",
            value=max(age, 0.0),
        )


class _Registries:
    """Several collectors scraped as one."""

    def __init__(self, *collectors: Any) -> None:
        self.collectors = collectors

    def collect(self) -> Iterable[Metric]:
        for c in self.collectors:
            yield from c.collect()


def _process_metrics() -> Any:
    """This process's metrics, or with multiprocess mode every process's on this machine."""
    if MULTIPROCESS_DIR is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, MULTIPROCESS_DIR)
    return registry


@cache
def _web_metrics() -> _Registries:
    queue = CollectorRegistry()
    queue.register(RunQueueCollector())
    return _Registries(_process_metrics(), queue)


# -- access ------------------------------------------------------------------------


def refusal(remote_addr: str | None, authorization: str | None) -> int | None:
    """The status to refuse a scrape with, or None when it may read the metrics."""
    if settings.WFDASH_METRICS_LOOPBACK_OPEN and _loopback(remote_addr):
        return None
    token = settings.WFDASH_METRICS_TOKEN
    if not token:
        return 403
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 401
    return None


def _loopback(addr: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((addr or "").strip("[]"))
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


REFUSALS = {
    401: "metrics need Authorization: Bearer <WFDASH_METRICS_TOKEN> from a non-loopback address\n",
    403: "metrics are open to loopback clients only: set WFDASH_METRICS_TOKEN to scrape from elsewhere\n",
}


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` in Prometheus' text format (or OpenMetrics, when asked)."""
    refused = refusal(request.META.get("REMOTE_ADDR"), request.headers.get("Authorization"))
    if refused is not None:
        response = HttpResponse(REFUSALS[refused], status=refused, content_type="text/plain; charset=utf-8")
        if refused == 401:
            response["WWW-Authenticate"] = 'Bearer realm="wfdash metrics"'
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(_web_metrics()), content_type=content_type)


# -- a worker's own endpoint ----------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def serve_worker_metrics(port: int, addr: str = "127.0.0.1") -> ThreadingWSGIServer:
    """Serve this worker's metrics at http://addr:port/metrics in a thread, with /metrics' access rule."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        refused = refusal(environ.get("REMOTE_ADDR"), environ.get("HTTP_AUTHORIZATION"))
        if refused is not None:
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            if refused == 401:
                headers.append(("WWW-Authenticate", 'Bearer realm="wfdash metrics"'))
            start_response(f"{refused} {'Unauthorized' if refused == 401 else 'Forbidden'}", headers)
            return [REFUSALS[refused].encode()]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(addr, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="wfdash-metrics").start()
    return server
