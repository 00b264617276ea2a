"""The embedded default's one process: daphne with a worker on its event loop.

With the in-memory channel layer a worker in another process cannot reach the pages (they
poll the database every consumers.POLL_SECONDS). A worker on daphne's own loop announces
checkpoints, status changes and streamed tokens straight through the layer, in milliseconds.
Separate `wfworker` processes still work beside it: their news arrives by the poll.

Durability is unchanged: a step's output moves on only after its checkpoint committed, and
if the process dies its runs' leases expire and any worker resumes them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("runs.worker")


def serve(host: str, port: int, *, concurrency: int | None = None) -> int:
    """Serve HTTP and WebSockets on host:port and execute runs, until SIGTERM or SIGINT
    (the worker drains first). Returns the exit status."""
    # daphne.server installs Twisted's asyncio reactor: it must come before anything
    # else imports Twisted.
    from daphne.endpoints import build_endpoint_description_strings
    from daphne.server import Server
    from twisted.internet import defer, reactor

    from wfdash.asgi import application

    from .executor import Worker

    worker = Worker(concurrency=concurrency, announce=True)
    running: dict[str, asyncio.Task[None]] = {}
    failed: list[BaseException] = []

    def start_worker() -> None:
        # Server.run made the reactor's loop the current one just before calling this.
        task = asyncio.get_event_loop().create_task(worker.run(install_signals=False))
        running["worker"] = task

        def stopped(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and task.exception() is not None:
                failed.append(task.exception())  # type: ignore[arg-type]
                log.error("the worker stopped: %r; stopping the server", task.exception())
                if reactor.running:  # type: ignore[attr-defined]
                    reactor.stop()  # type: ignore[attr-defined,misc]

        task.add_done_callback(stopped)

    def drain() -> Any:
        # Twisted waits for the returned Deferred before it shuts down: running steps
        # finish to their checkpoint, as `wfworker` does on SIGTERM.
        worker.request_stop()
        task = running.get("worker")
        return defer.Deferred.fromFuture(task) if task is not None and not task.done() else None

    reactor.addSystemEventTrigger("before", "shutdown", drain)  # type: ignore[arg-type]
    server = Server(
        application=application,
        endpoints=build_endpoint_description_strings(host=host, port=port),
        ready_callable=start_worker,
        signal_handlers=True,
    )
    server.run()
    return 1 if failed else 0
