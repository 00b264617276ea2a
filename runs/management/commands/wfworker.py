from __future__ import annotations

import asyncio
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from runs import metrics
from runs.executor import Worker
from wfdash import telemetry


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # a runtime command: checks belong to deploys
    help = "Execute queued runs, many at a time on one asyncio loop. SIGTERM drains."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--concurrency", type=int, default=None, help="runs executed at once (default 50)")
        parser.add_argument("--worker-id", default=None, help="defaults to host:pid:random")
        parser.add_argument("--poll-interval", type=float, default=0.2, help="seconds between claims when idle")
        parser.add_argument("--exit-when-idle", action="store_true", help="stop once no run is left to claim")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=None,
            help="serve this worker's Prometheus metrics at http://ADDR:PORT/metrics (see docs/deploy.md)",
        )
        parser.add_argument("--metrics-addr", default="127.0.0.1", help="address for --metrics-port")

    def handle(self, *args: Any, **opts: Any) -> None:
        if opts["concurrency"] is not None and opts["concurrency"] < 1:
            self.stderr.write("--concurrency must be at least 1")
            raise SystemExit(1)
        # Imported and set up now, not inside the first run (OpenTelemetry takes a while to import).
        telemetry.enabled()
        server = None
        if opts["metrics_port"] is not None:
            server = metrics.serve_worker_metrics(opts["metrics_port"], opts["metrics_addr"])
        try:
            asyncio.run(self._main(opts))
        finally:
            if server is not None:
                server.shutdown()
            telemetry.flush()  # spans still buffered: the last steps and runs this worker ended

    async def _main(self, opts: dict[str, Any]) -> None:
        worker = Worker(
            concurrency=opts["concurrency"], worker_id=opts["worker_id"], poll_interval=opts["poll_interval"]
        )
        self.stdout.write(f"worker {worker.worker_id} started (concurrency {worker.concurrency})")
        self.stdout.flush()
        await worker.run(exit_when_idle=opts["exit_when_idle"])
        self.stdout.write(f"worker {worker.worker_id} stopped after {worker.executed} runs")
