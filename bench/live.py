"""Live-view and explorer benchmark: commit-to-WebSocket latency, and explorer query time at scale.

    .venv/bin/python bench/live.py > bench/results/live.json     # full run (about 10 min on 2 quiet cores)
    .venv/bin/python bench/live.py --quick                       # 1 and 20 clients, 100k / 1M rows (~3 min)
    .venv/bin/python bench/live.py --only latency --layers redis --clients 200 --profile-daphne
    .venv/bin/python bench/live.py --only explorer --backends postgresql --pg-sizes 1000000

Prints one JSON document to stdout; progress goes to stderr. Each section runs in its own
subprocess (Django reads DATABASE_URL and REDIS_URL once), in its own process group, so a
timeout kills daphne, workers and Redis with it.

1. latency (`latency.<layer>.clients_<N>`): one daphne (DEBUG off) and one `manage.py wfworker`
   (through a shim, see below) as subprocesses; in-memory layer on a temporary SQLite file,
   Redis layer on PostgreSQL `wfdash_bench_live` with a private redis-server on a free port.
   A `chain` run (steps=100, sleep=0.05: 101 checkpoints) is created held back (status
   `waiting`, which no worker claims), N clients connect to `/ws/runs/<id>/?after=0` and each
   gets its first catch-up message, then the run is queued; every client reads until the
   run's terminal status message with all its checkpoints.
   Per (client, checkpoint), on the monotonic clock (CLOCK_MONOTONIC: one clock for every
   process of the machine): `from_step_completion` = client receive - the moment the engine
   handed the step's checkpoint to `put_checkpoint` (right after the step completed, before
   its batch commit: it includes the group commit); `from_commit` = receive - the moment the
   worker's loop saw the batch commit (`put_checkpoint` returned; the announcement is sent
   right after). `from_created_at` (receive wall clock - the stored created_at) is kept as a
   cross-check. The worker runs `wfworker` (or `webworker`) unchanged through
   `live.py --worker-shim`, which only wraps `DatabaseCheckpointStore.put_checkpoint` to log
   (checkpoint id, monotonic at entry, monotonic after it returns).
   `--repeats N` (default 3): each (layer, clients) runs N times, a fresh run and fresh clients
   each time; every latency figure is `{median, min, max, n, samples}` over the N runs' p50s /
   p99s / maxima, correctness counters are summed with `*_per_run` listed. Children run with
   the shipped settings (DEBUG off; no DB_CONN_MAX_AGE, default worker poll and concurrency),
   recorded under `settings`. `lost`/`duplicates`/`out_of_order` compare each client's
   seqs with the database (must be 0). `client_loop_lag` is how late a 10 ms timer fires in
   the client process: an upper bound on the measuring error. `cpu_s` is CPU seconds per
   process during the scenario (from /proc). A short discarded warm-up run comes first (a
   worker's first run pays ~0.5 s of one-off imports on its first checkpoint).
   Variants (`--layers`): `webworker` (one `manage.py webworker`, what `manage.py serve` runs:
   the embedded default as shipped, SQLite), `memory` (daphne + a separate wfworker, SQLite)
   and `redis` are the app as it is. Bench-only candidates,
   written at run time into the temporary directory (the app is not changed): `+nohop` serves
   `bench_nohop_asgi:application`, the app's ASGI application with RunConsumer.dispatch going
   straight to the handler (Channels' AsyncConsumer.dispatch awaits aclose_old_connections(), a
   sync_to_async hop through the one shared sync thread, before every message); `+cap` sets
   RedisChannelLayer's capacity to 2000 (default 100, shared by all consumers of one process);
   `redis-pubsub` uses channels_redis' RedisPubSubChannelLayer. `--profile-daphne` runs daphne
   under cProfile and prints its top functions to stderr.
2. explorer (`explorer.<backend>.<rows>`): synthetic checkpoints bulk-loaded in SQL (PostgreSQL:
   INSERT ... SELECT generate_series; SQLite: a recursive CTE INSERT), secondary indexes dropped
   during the load and rebuilt after (PostgreSQL: ANALYZE after; SQLite: no ANALYZE, as deployed).
   10,000 runs, run r has workflow r % 5; checkpoint i belongs to run i % 10000 with seq
   i // 10000 + 1, so runs interleave in time (10 ms apart); each workflow has its own 4 steps
   (20 step names), each step 3 input event types, outputs the next type (30 event types);
   state is a 165-byte full state record like a real chain checkpoint. Then each explorer query,
   `filters.paginate(filters.checkpoint_filters(params)[0], before)` (50 rows + 1), is run once
   to warm up and 5 times timed: `median_ms`, `max_ms`, rows returned, and the query plan
   (PostgreSQL: EXPLAIN ANALYZE; SQLite: EXPLAIN QUERY PLAN).
   Queries in `goal_queries` are the ones the 100 ms goal is checked on; `extra` are harder
   cases (a page deep in the history, a filter combination that matches nothing), and
   `candidate_*` entries time a suggested change to `paginate` (not in the app) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, pct  # noqa: E402 - bench/common.py: the one shape of a repeated figure
from common import log as _common_log  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
PY = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = os.environ.get("BENCH_LIVE_PG_DB", "wfdash_bench_live")

MODES: dict[str, dict[str, Any]] = {
    "full": {"clients": [1, 200], "sqlite_sizes": [1_000_000, 10_000_000], "pg_sizes": [1_000_000, 10_000_000]},
    "quick": {"clients": [1, 20], "sqlite_sizes": [100_000, 1_000_000], "pg_sizes": [100_000, 1_000_000]},
}
CHAIN_STEPS = 100
CHAIN_SLEEP = 0.05
RUNS = 10_000  # synthetic runs for the explorer
WORKFLOWS = 5
BASE_EPOCH = 1767225600  # 2026-01-01T00:00:00Z: checkpoint i is at BASE + i * 10 ms + 1 us
STATE_JSON = (
    '{"version": 1, "store": {"steps": {"v": 1000}, "sleep": {"v": 0.0}}, "queued": [], "in_flight": [], '
    '"unsent": [], "collect": [], "waiters": [], "awaiting_input": false}'
)
TERMINAL = {"succeeded", "failed", "cancelled"}
GOAL_P99_MS = 50.0  # Redis, from step completion, at GOAL_CLIENTS clients
GOAL_CLIENTS = 200
GOAL_EMBEDDED_P50_MS = 50.0  # the embedded default (webworker), from step completion
GOAL_EXPLORER_MS = 100.0


# == small helpers (also used by bench/load_drill.py) =================================


def log(msg: str, tag: str = "live") -> None:
    _common_log(tag, msg)


def dist_ms(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 0.50), 2),
        "p90_ms": round(pct(ms, 0.90), 2),
        "p99_ms": round(pct(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "min_ms": round(min(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def pg_url(db: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{db}"


def recreate_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_pg_database(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # reported, never fatal: the numbers are already printed
        log(f"could not drop database {name}: {exc}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (this process: also its reaped children are not counted)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class PrivateRedis:
    """A redis-server of the bench's own on a free loopback port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("private redis did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


CANDIDATE_CAPACITY = 2000
VARIANT_SETTINGS = """# Written by bench/live.py: the app's settings with a candidate channel layer configuration.
from wfdash.settings import *  # noqa: F403
from wfdash.settings import REDIS_URL

CHANNEL_LAYERS = {{
    "default": {{
        "BACKEND": "{backend}",
        "CONFIG": {config},
    }}
}}
"""


NOHOP_ASGI = """# Written by bench/live.py: the app's ASGI application with a candidate RunConsumer.dispatch.
# Channels' AsyncConsumer.dispatch awaits aclose_old_connections() (a sync_to_async hop through
# the one shared sync thread) before every handler, also before relaying each channel-layer
# message. The consumers reach the database only through database_sync_to_async, which closes
# stale connections itself, so the candidate dispatches straight to the handler.
from channels.consumer import AsyncConsumer, get_handler_name

from wfdash.asgi import application  # noqa: F401
from runs import consumers


async def dispatch(self, message):
    handler = getattr(self, get_handler_name(message), None)
    if handler is None:
        return await AsyncConsumer.dispatch(self, message)
    await handler(message)


consumers.RunConsumer.dispatch = dispatch
consumers.RunsListConsumer.dispatch = dispatch
"""


def variant_settings(directory: Path, layer: str, flags: set[str]) -> tuple[str, str] | None:
    """(settings module, its directory) for a candidate layer configuration; None for the app's own.

    `redis-pubsub`: channels_redis' RedisPubSubChannelLayer (one PUBLISH per group message, fanned
    out inside each process, no capacity limit). `+cap`: RedisChannelLayer with capacity
    CANDIDATE_CAPACITY instead of the default 100 (shared by all consumers of one process).
    """
    if layer == "redis-pubsub":
        backend = "channels_redis.pubsub.RedisPubSubChannelLayer"
        config = '{"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]}'
    elif layer == "redis-core":
        # channels_redis' RedisChannelLayer (per-channel lists, capacity 100): what the app used
        # before it moved to pub/sub, for a side-by-side comparison.
        backend = "channels_redis.core.RedisChannelLayer"
        config = '{"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]}'
    elif layer == "redis" and "cap" in flags:
        backend = "channels_redis.core.RedisChannelLayer"
        config = f'{{"hosts": [{{"address": REDIS_URL, "socket_timeout": 30}}], "capacity": {CANDIDATE_CAPACITY}}}'
    else:
        return ("wfdash.settings", str(directory)) if flags else None
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench_variant_settings.py").write_text(VARIANT_SETTINGS.format(backend=backend, config=config))
    return "bench_variant_settings", str(directory)


def nohop_asgi(directory: Path) -> str:
    """The ASGI path of the candidate dispatch (module written into `directory`, on PYTHONPATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bench_nohop_asgi.py").write_text(NOHOP_ASGI)
    return "bench_nohop_asgi:application"


def parse_variant(name: str) -> tuple[str, set[str]]:
    """`webworker`, `memory`, `redis` or `redis-pubsub`, plus candidate flags `+nohop`, `+cap`:
    (layer, flags)."""
    layer, *extra = name.split("+")
    flags = set(extra)
    if layer == "webworker" and flags:
        raise SystemExit("webworker is the embedded default as shipped: no candidate flags")
    if layer not in ("webworker", "memory", "redis", "redis-core", "redis-pubsub") or not flags <= {"nohop", "cap"}:
        raise SystemExit(f"unknown layer variant {name!r}")
    if "cap" in flags and layer != "redis":
        raise SystemExit("+cap applies to the redis layer (RedisChannelLayer) only")
    return layer, flags


def variant_app(directory: Path, flags: set[str]) -> str:
    return nohop_asgi(directory) if "nohop" in flags else "wfdash.asgi:application"


def service_env(database_url: str, redis_url: str | None, settings: tuple[str, str] | None = None) -> dict[str, str]:
    """Environment for daphne / workers / the bench's own Django: production-like (DEBUG off)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WFDASH_WORKFLOWS")}
    module, extra_path = settings or ("wfdash.settings", "")
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE=module,
        PYTHONPATH=os.pathsep.join(x for x in (extra_path, str(ROOT)) if x),
        PYTHONUNBUFFERED="1",
        DEBUG="0",
        SECRET_KEY="bench-live-not-a-secret-" + "x" * 40,
        WFDASH_LOG_LEVEL="WARNING",
    )
    # Shipped settings only: no tuning (DB_CONN_MAX_AGE etc.) unless the parent set it on purpose.
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# What the children's settings record: every variable that changes what is measured.
CHILD_SETTINGS = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "DEBUG", "DB_CONN_MAX_AGE", "WFDASH_LOG_LEVEL")


def child_settings(env: dict[str, str]) -> dict[str, Any]:
    """The children's settings for the results header; unset = the shipped default."""
    out: dict[str, Any] = {k: env.get(k, "unset (shipped default)") for k in CHILD_SETTINGS}
    out["worker_args"] = "shipped defaults (concurrency, poll interval)"
    out["tuned"] = False
    return out


class Services:
    """daphne servers and workers as subprocesses, logging to files; stop() ends exactly these."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.servers: list[str] = []

    def _popen(self, name: str, args: list[str]) -> subprocess.Popen[str]:
        self.logdir.mkdir(parents=True, exist_ok=True)
        out = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        self.procs[name] = proc
        return proc

    def start_server(self, name: str, profile: Path | None = None, app: str = "wfdash.asgi:application") -> str:
        port = free_port()
        prefix = [PY, "-m", "cProfile", "-o", str(profile)] if profile else [PY]
        self._popen(name, [*prefix, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app])
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/healthz", timeout=60)
        except OSError:
            raise RuntimeError(f"{name} did not answer /healthz; see {self.logdir / (name + '.log')}") from None
        self.servers.append(base)
        return base

    def start_worker(self, name: str, commit_log: Path, profile: Path | None = None) -> subprocess.Popen[str]:
        if profile is not None:
            self.env = {**self.env, "BENCH_WORKER_PROFILE": str(profile)}
        proc = self._popen(
            name,
            [PY, str(HERE), "--worker-shim", str(commit_log), "--", "wfworker", "--worker-id", name],
        )
        self.env.pop("BENCH_WORKER_PROFILE", None)
        return proc

    def start_webworker(self, name: str, commit_log: Path) -> str:
        """`manage.py webworker` (what `manage.py serve` runs: daphne with the worker on its loop)
        through the shim; its base URL once /healthz answers."""
        port = free_port()
        self._popen(name, [PY, str(HERE), "--worker-shim", str(commit_log), "--", "webworker", "--port", str(port)])
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/healthz", timeout=60)
        except OSError:
            raise RuntimeError(f"{name} did not answer /healthz; see {self.logdir / (name + '.log')}") from None
        self.servers.append(base)
        return base

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items()}

    def check_alive(self) -> None:
        dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"service(s) exited early: {dead}; logs in {self.logdir}")

    def stop(self, timeout: float = 20) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def print_profile(path: Path, label: str, limit: int = 30) -> None:
    """A cProfile dump, by own time and by cumulative time, to stderr."""
    import io
    import pstats

    if not path.exists():
        log(f"no profile written at {path}")
        return
    if keep := os.environ.get("BENCH_KEEP_PROFILE"):  # a copy to read further with pstats
        shutil.copy(path, keep)
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(str(path), stream=out).sort_stats(key).print_stats(limit)
        print(f"===== cProfile {label} by {key} =====\n{out.getvalue()}", file=sys.stderr)


def read_commit_log(path: Path) -> dict[str, float]:
    """checkpoint id -> time.time() when a worker saw its batch commit, from a two-column log
    (bench/stream.py's shim writes these)."""
    out: dict[str, float] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = float(parts[1])
    return out


def read_step_log(path: Path) -> dict[str, tuple[float, float]]:
    """checkpoint id -> (step completed, batch commit seen), both time.monotonic() in the worker
    (from this file's shim; CLOCK_MONOTONIC is one clock for every process of the machine)."""
    out: dict[str, tuple[float, float]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[0]] = (float(parts[1]), float(parts[2]))
    return out


def worker_shim(commit_log: str, worker_args: list[str]) -> None:
    """`manage.py wfworker|webworker ARGS`, logging when each step completed and when its
    checkpoint's batch commit was seen (time.monotonic()).

    Only DatabaseCheckpointStore.put_checkpoint is wrapped: the engine calls it right after the
    step completed (the checkpoint's created_at is taken just before), and it returns once the
    batch holding the checkpoint committed, right after scheduling the announcement.
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfdash.settings")
    sys.path.insert(0, str(ROOT))
    import logging

    import django

    django.setup()
    from django.core.management import call_command

    # channels_redis reports group_send messages dropped over channel capacity at INFO; the app's
    # logging config does not show them. Counted by the bench from the worker's log.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    logging.getLogger("channels_redis").addHandler(handler)
    logging.getLogger("channels_redis").setLevel(logging.INFO)

    from runs.store import DatabaseCheckpointStore

    out = open(commit_log, "a", buffering=1)  # noqa: SIM115 - line-buffered for the life of the worker
    original = DatabaseCheckpointStore.put_checkpoint

    async def put_checkpoint(self: Any, checkpoint: Any, workflow: Any) -> None:
        done = time.monotonic()
        await original(self, checkpoint, workflow)
        out.write(f"{checkpoint.id_} {done:.6f} {time.monotonic():.6f}\n")

    DatabaseCheckpointStore.put_checkpoint = put_checkpoint  # type: ignore[method-assign]
    profile_path = os.environ.get("BENCH_WORKER_PROFILE")
    prof = None
    if profile_path:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        command, *rest = worker_args
        if command not in ("wfworker", "webworker"):
            raise SystemExit(f"the shim runs wfworker or webworker, not {command!r}")
        call_command(command, *rest)
    finally:
        out.close()
        if prof is not None:
            prof.disable()
            prof.dump_stats(str(profile_path))


def over_capacity_events(logdir: Path) -> dict[str, int]:
    """Per service log: how many channels_redis 'over capacity' reports (messages dropped)."""
    counts: dict[str, int] = {}
    for path in sorted(logdir.glob("*.log")):
        n = sum(1 for line in path.read_text(errors="replace").splitlines() if "over capacity" in line)
        counts[path.stem] = n
    return counts


# == WebSocket clients (also used by bench/load_drill.py) =============================


class WatchClient:
    """One live-view client of `/ws/runs/<id>/?after=0`: no reconnects, records every message."""

    def __init__(self, base: str, run_id: str, session: str) -> None:
        self.url = base.replace("http://", "ws://") + f"/ws/runs/{run_id}/?after=0"
        self.origin = base
        self.session = session
        self.run_id = run_id
        # (receive time.time(), seq, checkpoint id, created_at, receive time.monotonic())
        self.got: list[tuple[float, int, str, str, float]] = []
        self.statuses: list[str] = []
        self.final_count: int | None = None
        self.terminal_count: int | None = None  # checkpoint_count of the terminal status message
        self.status_before_last_checkpoint = False
        self.ready = asyncio.Event()  # the catch-up's run message arrived: subscribed
        self.done = asyncio.Event()
        self.error: str | None = None

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        try:
            async with connect(
                self.url,
                additional_headers={"Cookie": f"sessionid={self.session}"},
                origin=self.origin,  # type: ignore[arg-type]
                open_timeout=30,
                max_size=2**22,
            ) as ws:
                async for raw in ws:
                    mono, t = time.monotonic(), time.time()
                    msg = json.loads(raw)
                    if msg.get("type") == "checkpoint":
                        self.got.append((t, int(msg["seq"]), msg["id"], msg["created_at"], mono))
                        if self.terminal_count is not None and int(msg["seq"]) >= self.terminal_count:
                            self.final_count = self.terminal_count
                            return
                    elif msg.get("type") == "run":
                        self.statuses.append(msg["status"])
                        self.ready.set()
                        if msg["status"] in TERMINAL:
                            self.terminal_count = int(msg["checkpoint_count"])
                            top = max((g[1] for g in self.got), default=0)
                            if top >= self.terminal_count:
                                self.final_count = self.terminal_count
                                return
                            # The run's end was announced before its last checkpoints: keep reading.
                            self.status_before_last_checkpoint = True
        except asyncio.CancelledError:
            self.error = self.error or "cancelled (timed out)"
            raise
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            self.ready.set()
            self.done.set()

    def check(self, db_seqs: list[int]) -> dict[str, int]:
        """Compare what this client got with the run's checkpoints in the database."""
        seqs = [g[1] for g in self.got]
        expected = set(db_seqs)
        got = set(seqs)
        return {
            "received": len(seqs),
            "lost": len(expected - got),
            "duplicates": len(seqs) - len(got),
            "out_of_order": sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b <= a),
            "unknown": len(got - expected),
            "contiguous": int(seqs == list(range(1, len(seqs) + 1))),
        }


async def loop_lag(stop: asyncio.Event, samples: list[float], interval: float = 0.01) -> None:
    """How late a timer fires on this loop: the client side's own measuring error."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(interval)
        samples.append(max(0.0, loop.time() - t - interval))


async def open_clients(clients: list[WatchClient], batch: int = 50, timeout: float = 60) -> list[asyncio.Task[None]]:
    """Connect clients in batches; return their tasks once each is subscribed (or failed)."""
    tasks: list[asyncio.Task[None]] = []
    async with asyncio.timeout(timeout):
        for i in range(0, len(clients), batch):
            chunk = clients[i : i + batch]
            tasks.extend(asyncio.create_task(c.run()) for c in chunk)
            await asyncio.gather(*(c.ready.wait() for c in chunk))
    return tasks


async def finish_clients(clients: list[WatchClient], tasks: list[asyncio.Task[None]], timeout: float) -> int:
    """Wait for every client to see its run's end; cancel stragglers. Returns how many timed out."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(c.done.wait() for c in clients))
    except TimeoutError:
        pass
    late = 0
    for task in tasks:
        if not task.done():
            late += 1
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return late


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def delivery_stats(
    clients: list[WatchClient], db: dict[str, dict[str, Any]], commits: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """Latencies over all (client, checkpoint) pairs and the exactly-once check against the DB.

    `db` maps run id -> {"seqs": [...], "created": {checkpoint id: created_at epoch}}; `commits`
    is read_step_log's. `from_step_completion` and `from_commit` are on the monotonic clock;
    `from_created_at` (wall clock, the stored created_at) is kept as a cross-check.
    """
    from_created: list[float] = []
    from_done: list[float] = []
    from_commit: list[float] = []
    slowest: list[tuple[float, int, float]] = []  # (from step completion, seq, its commit's share)
    totals = {"received": 0, "lost": 0, "duplicates": 0, "out_of_order": 0, "unknown": 0, "non_contiguous_clients": 0}
    errors: list[str] = []
    for c in clients:
        info = db[c.run_id]
        check = c.check(info["seqs"])
        for key in ("received", "lost", "duplicates", "out_of_order", "unknown"):
            totals[key] += check[key]
        totals["non_contiguous_clients"] += 1 - check["contiguous"]
        if c.error:
            errors.append(c.error)
        for t, seq, cid, created, mono in c.got:
            from_created.append(t - parse_time(created))
            if cid in commits:
                from_done.append(mono - commits[cid][0])
                from_commit.append(mono - commits[cid][1])
                slowest.append((mono - commits[cid][0], seq, commits[cid][1] - commits[cid][0]))
    done_to_commit = [
        commits[cid][1] - commits[cid][0] for info in db.values() for cid in info["created"] if cid in commits
    ]
    return {
        **totals,
        "from_step_completion": dist_ms(from_done),
        "from_commit": dist_ms(from_commit),
        "from_created_at": dist_ms(from_created),
        "worker_step_completion_to_commit": dist_ms(done_to_commit),
        "pairs_without_commit_time": len(from_created) - len(from_commit),
        # Where the tail is: the slowest deliveries' seqs, and how much of each was the worker's commit.
        "slowest_by_seq": [
            {
                "seq": seq,
                "from_step_completion_ms": round(ms * 1000, 2),
                "step_completion_to_commit_ms": round(c * 1000, 2),
            }
            for ms, seq, c in sorted(slowest, reverse=True)[: max(5, len(slowest) // 100)]
        ][:20],
        "clients_got_end_status_before_last_checkpoint": sum(1 for c in clients if c.status_before_last_checkpoint),
        "client_errors": sorted(set(errors))[:5],
        "clients_with_errors": sum(1 for c in clients if c.error),
    }


LATENCIES = ("from_step_completion", "from_commit", "from_created_at", "worker_step_completion_to_commit")
COUNTERS = ("received", "lost", "duplicates", "out_of_order", "unknown", "non_contiguous_clients")


def repeated(runs: list[dict[str, Any]], counters: tuple[str, ...] = COUNTERS) -> dict[str, Any]:
    """One configuration's N runs as figures: per latency, the median (min-max) of the runs'
    p50s, p99s and maxima with the samples; correctness counters summed, per run listed."""
    out: dict[str, Any] = {"repeats": len(runs)}
    for key in LATENCIES:
        dists = [r.get(key) or {} for r in runs]
        out[key] = {q: figure([d.get(q) for d in dists], 2) for q in ("p50_ms", "p99_ms", "max_ms")}
        out[key]["n"] = sum(d.get("n", 0) for d in dists)
    for key in counters:
        values = [int(r.get(key) or 0) for r in runs]
        out[key] = sum(values)
        out[f"{key}_per_run"] = values
    return out


# == Django-side helpers (run inside a child with Django set up) =====================


def django_setup(database_url: str, redis_url: str | None, settings: tuple[str, str] | None = None) -> None:
    os.environ.update(service_env(database_url, redis_url, settings))
    if not redis_url:
        os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    if settings:
        sys.path.insert(0, settings[1])
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def session_cookie() -> str:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser("bench", "", "bench-pw-12345")
    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


def create_held_runs(count: int, steps: int, sleep: float) -> list[str]:
    """Chain runs no worker claims yet (status waiting): clients subscribe before the first step."""
    from runs import inputs
    from runs.models import Run, RunStatus

    start = inputs.start_event(inputs.workflow_named("chain"), {"steps": steps, "sleep": sleep})
    runs = [Run(workflow="chain", start_event=start, status=RunStatus.WAITING) for _ in range(count)]
    Run.objects.bulk_create(runs)
    return [str(r.id) for r in runs]


def release_runs(run_ids: list[str]) -> int:
    from django.utils import timezone

    from runs.models import Run, RunStatus

    return Run.objects.filter(pk__in=run_ids, status=RunStatus.WAITING).update(
        status=RunStatus.QUEUED, updated_at=timezone.now()
    )


def db_checkpoints(run_ids: list[str]) -> dict[str, dict[str, Any]]:
    from runs.models import Checkpoint

    out: dict[str, dict[str, Any]] = {r: {"seqs": [], "created": {}} for r in run_ids}
    rows = Checkpoint.objects.filter(run_id__in=run_ids).order_by("run_id", "seq")
    for run_id, seq, cid, created in rows.values_list("run_id", "seq", "id", "created_at"):
        info = out[str(run_id)]
        info["seqs"].append(seq)
        info["created"][str(cid)] = created.timestamp()
    return out


def run_statuses(run_ids: list[str]) -> dict[str, int]:
    from django.db.models import Count

    from runs.models import Run

    rows = Run.objects.filter(pk__in=run_ids).values("status").annotate(n=Count("id"))
    return {r["status"]: r["n"] for r in rows}


# == 1. latency child ==================================================================

PROCESSES = {
    "webworker": "one `manage.py webworker` (what `manage.py serve` runs: daphne with the worker on its "
    "loop; the embedded default as shipped)",
    "memory": "daphne + a separate `manage.py wfworker` (in-memory layer: the worker's announcements reach "
    "pages by the database poll)",
}


def child_latency(args: argparse.Namespace) -> dict[str, Any]:
    variant = args.layer
    layer, flags = parse_variant(variant)
    tmp = Path(tempfile.mkdtemp(prefix=f"wfdash-bench-live-{layer}-"))
    redis: PrivateRedis | None = None
    services: Services | None = None
    ok = False
    try:
        settings_module = variant_settings(tmp / "py", layer, flags)
        app = variant_app(tmp / "py", flags)
        if layer in ("redis", "redis-core", "redis-pubsub"):
            redis = PrivateRedis()
            redis.start()
            recreate_pg_database(PG_DB)
            database_url = pg_url(PG_DB)
        else:
            database_url = f"sqlite:///{tmp / 'live.sqlite3'}"
        redis_url = redis.url if redis else None
        django_setup(database_url, redis_url, settings_module)
        from asgiref.sync import sync_to_async
        from django.conf import settings
        from django.db import connection

        session = session_cookie()
        commit_log = tmp / "commits.log"
        env = service_env(database_url, redis_url, settings_module)
        services = Services(env, tmp / "logs")
        profile = tmp / "daphne.prof" if args.profile_daphne else None
        if layer == "webworker":
            services.start_webworker("webworker", commit_log)
        else:
            services.start_server("daphne", profile, app)
            services.start_worker("worker", commit_log)
        log(f"latency/{variant}: daphne {services.servers[0]}, db {connection.vendor}, logs {tmp / 'logs'}")

        async def scenario(n: int) -> dict[str, Any]:
            (run_id,) = await sync_to_async(create_held_runs)(1, args.steps, args.sleep)
            clients = [WatchClient(services.servers[0], run_id, session) for _ in range(n)]
            tasks = await open_clients(clients)
            services.check_alive()
            lag: list[float] = []
            stop_lag = asyncio.Event()
            lagger = asyncio.create_task(loop_lag(stop_lag, lag))
            cpu0, self0, t0 = services.cpu(), os.times(), time.monotonic()
            await sync_to_async(release_runs)([run_id])
            late = await finish_clients(clients, tasks, timeout=args.steps * args.sleep * 4 + 60)
            wall = time.monotonic() - t0
            cpu1, self1 = services.cpu(), os.times()
            stop_lag.set()
            await lagger
            db = await sync_to_async(db_checkpoints)([run_id])
            statuses = await sync_to_async(run_statuses)([run_id])
            return {
                "clients": n,
                "run_id": run_id,
                "run_status": statuses,
                "checkpoints_in_db": len(db[run_id]["seqs"]),
                "db_seqs_contiguous": db[run_id]["seqs"] == list(range(1, len(db[run_id]["seqs"]) + 1)),
                "clients_complete": sum(1 for c in clients if c.final_count is not None),
                "clients_timed_out": late,
                "wall_s": round(wall, 2),
                "client_loop_lag": dist_ms(lag),
                "cpu_s": {
                    **{k: round(cpu1[k] - cpu0[k], 2) for k in cpu0},
                    "bench_clients": round((self1.user + self1.system) - (self0.user + self0.system), 2),
                },
                "_clients": clients,
                "_db": db,
            }

        async def main() -> dict[int, list[dict[str, Any]]]:
            # A short discarded run first: a worker's first run pays one-off imports and connections
            # (about 0.5 s on its first checkpoint), which is start-up, not delivery latency.
            log(f"latency/{variant}: warm-up run")
            warm = args.steps, args.sleep
            args.steps, args.sleep = 5, 0.01
            await scenario(2)
            args.steps, args.sleep = warm
            out: dict[int, list[dict[str, Any]]] = {}
            for n in args.clients:
                # Each repeat: a fresh run watched by fresh clients on the same processes.
                out[n] = []
                for i in range(args.repeats):
                    log(f"latency/{variant}: {n} client(s), run {i + 1}/{args.repeats}, steps={args.steps}")
                    out[n].append(await scenario(n))
            return out

        raw = asyncio.run(main())
        services.stop()
        if profile is not None:
            print_profile(profile, f"daphne ({variant}, whole session)")
        dropped = over_capacity_events(tmp / "logs")
        commits = read_step_log(commit_log)
        layer_cfg: dict[str, Any] = dict(settings.CHANNEL_LAYERS["default"])
        result: dict[str, Any] = {
            "variant": variant,
            "processes": PROCESSES.get(layer, "daphne + a separate `manage.py wfworker`"),
            "settings": child_settings(env),
            "repeats": args.repeats,
            "candidate": bool(flags) or layer in ("redis-pubsub", "redis-core"),
            "dispatch": "candidate: no per-message close_old_connections hop"
            if "nohop" in flags
            else "app (Channels default)",
            "asgi_application": app,
            "layer": layer,
            "database": connection.vendor,
            "channel_layer": str(layer_cfg["BACKEND"]).rsplit(".", 1)[-1],
            "channel_layer_capacity": dict(layer_cfg.get("CONFIG", {})).get("capacity"),
            "poll_seconds": getattr(settings, "WFDASH_LIVE_POLL_SECONDS", 0.2)
            if layer in ("memory", "webworker")
            else None,
            "chain": {"steps": args.steps, "sleep": args.sleep, "checkpoints": args.steps + 1},
            "channels_redis_over_capacity_reports": dropped,
        }
        for n, runs in raw.items():
            for r in runs:
                clients, db = r.pop("_clients"), r.pop("_db")
                r.update(delivery_stats(clients, db, commits))
            fig = repeated(runs, (*COUNTERS, "clients_timed_out", "clients_with_errors"))
            server = "webworker" if layer == "webworker" else "daphne"
            fig["server_cpu_s"] = figure([r["cpu_s"].get(server) for r in runs], 2)
            fig["wall_s"] = figure([r["wall_s"] for r in runs], 2)
            result[f"clients_{n}"] = {"clients": n, **fig, "runs": runs}
            done = fig["from_step_completion"]
            log(
                f"latency/{variant}/{n}: from step completion p50 {done['p50_ms']['median']} ms, "
                f"p99 {done['p99_ms']['median']} ms (median of {len(runs)}), lost {fig['lost']}, "
                f"dup {fig['duplicates']}"
            )
        ok = True
        return result
    finally:
        if services is not None:
            services.stop()
        if redis is not None:
            redis.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if redis is not None:
            drop_pg_database(PG_DB)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"latency/{variant}: failed; logs kept in {tmp}")


# == 2. explorer child =================================================================


def run_uuid(r: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{r + 1:012x}")


def ckpt_uuid(i: int) -> uuid.UUID:
    return uuid.UUID(f"c0000000{i + 1:024x}")


def ckpt_created(i: int) -> datetime:
    return datetime.fromtimestamp(BASE_EPOCH, UTC) + timedelta(milliseconds=10 * i, microseconds=1)


def _step(w: int, seq: int) -> int:
    return w * 4 + seq % 4


def create_synthetic_runs() -> None:
    from runs.models import Run, RunStatus

    base = datetime.fromtimestamp(BASE_EPOCH, UTC)
    runs = [
        Run(
            id=run_uuid(r),
            workflow=f"workflow_{r % WORKFLOWS}",
            status=RunStatus.SUCCEEDED,
            created_at=base + timedelta(milliseconds=10 * r),
            started_at=base + timedelta(milliseconds=10 * r),
            finished_at=base + timedelta(days=30),
            updated_at=base + timedelta(days=30),
            attempts=1,
        )
        for r in range(RUNS)
    ]
    Run.objects.bulk_create(runs, batch_size=2000)


PG_INSERT = """
WITH s AS (SELECT i, i %% {R} AS r, i / {R} + 1 AS seq FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i),
t AS (SELECT i, r, seq, r %% {W} AS w, (r %% {W}) * 4 + seq %% 4 AS k FROM s),
u AS (SELECT i, r, seq, w, k, (k * 3 + (seq / 4) %% 3) %% 30 AS ein FROM t),
v AS (SELECT i, r, seq, w, k, ein, (ein + 1 + (seq %% 5 = 0)::int) %% 30 AS eout FROM u)
INSERT INTO runs_checkpoint (id, run_id, workflow, seq, last_completed_step, input_event_type, output_event_type,
                             input_event, output_event, state, snapshot_seq, created_at, duration_ms, usage)
SELECT ('c0000000' || lpad(to_hex(i + 1), 24, '0'))::uuid,
       ('00000000000040008000' || lpad(to_hex(r + 1), 12, '0'))::uuid,
       'workflow_' || w, seq,
       'step_' || lpad(k::text, 2, '0'),
       'Event' || lpad(ein::text, 2, '0'),
       'Event' || lpad(eout::text, 2, '0'),
       format('{{"type": "Event%%s", "data": {{"n": %%s}}}}', lpad(ein::text, 2, '0'), seq)::jsonb,
       format('{{"type": "Event%%s", "data": {{"n": %%s}}}}', lpad(eout::text, 2, '0'), seq + 1)::jsonb,
       %(state)s::jsonb, seq,
       to_timestamp({base}) + i * interval '10 milliseconds' + interval '1 microsecond',
       (i %% 1000) / 10.0,
       NULL
FROM v
"""

SQLITE_INSERT = """
WITH RECURSIVE g(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :hi)
INSERT INTO runs_checkpoint (id, run_id, workflow, seq, last_completed_step, input_event_type, output_event_type,
                             input_event, output_event, state, snapshot_seq, created_at, duration_ms, usage)
SELECT printf('c0000000%024x', i + 1),
       printf('00000000000040008000%012x', r + 1),
       'workflow_' || w, seq,
       printf('step_%02d', k),
       printf('Event%02d', ein),
       printf('Event%02d', eout),
       printf('{"type": "Event%02d", "data": {"n": %d}}', ein, seq),
       printf('{"type": "Event%02d", "data": {"n": %d}}', eout, seq + 1),
       :state, seq,
       strftime('%Y-%m-%d %H:%M:%S', :base + i / 100, 'unixepoch') || printf('.%06d', (i % 100) * 10000 + 1),
       (i % 1000) / 10.0,
       NULL
FROM (SELECT i, r, seq, w, k, ein, (ein + 1 + (seq % 5 = 0)) % 30 AS eout
      FROM (SELECT i, r, seq, w, k, (k * 3 + (seq / 4) % 3) % 30 AS ein
            FROM (SELECT i, r, seq, r % :W AS w, (r % :W) * 4 + seq % 4 AS k
                  FROM (SELECT i, i % :R AS r, i / :R + 1 AS seq FROM g))))
"""


def load_postgresql(lo: int, hi: int) -> dict[str, float]:
    """Insert checkpoints lo..hi-1 with secondary indexes and constraints dropped, rebuild, ANALYZE."""
    from django.db import connection

    timings: dict[str, float] = {}
    with connection.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '1GB'")
        cur.execute("SET synchronous_commit = off")
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'runs_checkpoint'::regclass AND contype IN ('u', 'f')"
        )
        constraints = cur.fetchall()
        for name, _ in constraints:
            cur.execute(f'ALTER TABLE runs_checkpoint DROP CONSTRAINT "{name}"')
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'runs_checkpoint' "
            "AND indexname <> 'runs_checkpoint_pkey'"
        )
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        t = time.perf_counter()
        sql = PG_INSERT.format(R=RUNS, W=WORKFLOWS, base=BASE_EPOCH)
        step = 2_000_000
        for a in range(lo, hi, step):
            cur.execute(sql, {"lo": a, "hi": min(hi, a + step), "state": STATE_JSON})
            log(f"explorer/postgresql: inserted {min(hi, a + step):,} rows ({time.perf_counter() - t:.0f}s)")
        timings["insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for _, definition in indexes:
            cur.execute(definition)
        for name, definition in constraints:
            cur.execute(f'ALTER TABLE runs_checkpoint ADD CONSTRAINT "{name}" {definition}')
        timings["index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        cur.execute("ANALYZE runs_checkpoint")
        cur.execute("ANALYZE runs_run")
        timings["analyze_s"] = time.perf_counter() - t
        cur.execute("SELECT pg_total_relation_size('runs_checkpoint'), pg_relation_size('runs_checkpoint')")
        total, heap = cur.fetchone()
        timings["table_bytes"] = heap
        timings["table_with_indexes_bytes"] = total
    return timings


def load_sqlite(path: str, lo: int, hi: int) -> dict[str, float]:
    """Insert checkpoints lo..hi-1 in one transaction on a separate connection, indexes rebuilt after."""
    import sqlite3

    from django.db import connection

    connection.close()
    timings: dict[str, float] = {}
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute("PRAGMA synchronous=OFF")
        con.execute("PRAGMA cache_size=-1000000")  # 1 GB
        con.execute("PRAGMA temp_store=MEMORY")
        indexes = con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'runs_checkpoint' "
            "AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            con.execute(f'DROP INDEX "{name}"')
        t = time.perf_counter()
        step = 1_000_000
        for a in range(lo, hi, step):
            con.execute("BEGIN")
            con.execute(
                SQLITE_INSERT,
                {"lo": a, "hi": min(hi, a + step), "R": RUNS, "W": WORKFLOWS, "base": BASE_EPOCH, "state": STATE_JSON},
            )
            con.execute("COMMIT")
            log(f"explorer/sqlite: inserted {min(hi, a + step):,} rows ({time.perf_counter() - t:.0f}s)")
        timings["insert_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for _, sql in indexes:
            con.execute(sql)
        timings["index_s"] = time.perf_counter() - t
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        timings["analyze_s"] = 0.0
    finally:
        con.close()
    timings["file_bytes"] = os.path.getsize(path)
    return timings


def explorer_cases(n: int) -> list[tuple[str, dict[str, str], str | None, bool]]:
    """(name, params, before, is_goal_query). `before` = "PAGE1:<name>" takes that query's cursor."""
    w = 2
    step = _step(w, 1)  # step_09, one of workflow_2's steps
    ein = (step * 3) % 30  # Event27: step_09's input at seq 1
    out = (ein + 1) % 30  # Event28: what step_09 outputs at seq 1 (so present at every size)
    other_step = _step(1, 1)  # step_05 belongs to workflow_1: never together with workflow_2
    mid = n // 2
    deep = f"{ckpt_created(mid).isoformat()}_{ckpt_uuid(mid)}"
    return [
        ("no_filter", {}, None, True),
        ("workflow", {"workflow": f"workflow_{w}"}, None, True),
        ("step", {"step": f"step_{step:02d}"}, None, True),
        ("input_event_type", {"input_event_type": f"Event{ein:02d}"}, None, True),
        ("output_event_type", {"output_event_type": f"Event{out:02d}"}, None, True),
        ("run", {"run": str(run_uuid(1234))}, None, True),
        (
            "workflow_step_output",
            {"workflow": f"workflow_{w}", "step": f"step_{step:02d}", "output_event_type": f"Event{out:02d}"},
            None,
            True,
        ),
        ("page2_no_filter", {}, "PAGE1:no_filter", True),
        ("page2_workflow", {"workflow": f"workflow_{w}"}, "PAGE1:workflow", True),
        (
            "page2_workflow_step_output",
            {"workflow": f"workflow_{w}", "step": f"step_{step:02d}", "output_event_type": f"Event{out:02d}"},
            "PAGE1:workflow_step_output",
            True,
        ),
        ("deep_page_no_filter", {}, deep, False),
        ("deep_page_workflow", {"workflow": f"workflow_{w}"}, deep, False),
        ("no_match_workflow_step", {"workflow": f"workflow_{w}", "step": f"step_{other_step:02d}"}, None, False),
    ]


def page_queryset(params: dict[str, str], before: str | None, candidate: bool = False) -> Any:
    """The queryset filters.paginate runs (for EXPLAIN); candidate=True adds a sargable bound."""
    from django.db.models import Q

    from runs import filters

    qs = filters.checkpoint_filters(params)[0]
    if before:
        when, pk = filters._cursor(before)
        if candidate:
            qs = qs.filter(created_at__lte=when)
        qs = qs.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=pk))
    return qs.order_by("-created_at", "-id")[: filters.PAGE_SIZE + 1]


def explain(qs: Any) -> list[str]:
    from django.db import connection

    sql, params = qs.query.sql_with_params()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, SUMMARY OFF) " + sql, params)
            lines = [r[0] for r in cur.fetchall()]
        else:
            cur.execute("EXPLAIN QUERY PLAN " + sql, params)
            lines = [str(r[-1]) for r in cur.fetchall()]
    return [line.strip() for line in lines][:14]


def time_query(run: Any, repeats: int) -> tuple[list[float], Any]:
    run()  # warm
    times = []
    result = None
    for _ in range(repeats):
        t = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t)
    return times, result


def measure_explorer(n: int, repeats: int) -> dict[str, Any]:
    from runs import filters

    out: dict[str, Any] = {}
    cursors: dict[str, str | None] = {}
    for name, params, before, goal in explorer_cases(n):
        if before and before.startswith("PAGE1:"):
            before = cursors[before[6:]]

        def run(params: dict[str, str] = params, before: str | None = before) -> Any:
            return filters.paginate(filters.checkpoint_filters(params)[0], before)

        times, page = time_query(run, repeats)
        cursors[name] = page.next_cursor
        entry: dict[str, Any] = {
            "params": params,
            "before": before,
            "goal_query": goal,
            "median_ms": round(statistics.median(times) * 1000, 2),
            "max_ms": round(max(times) * 1000, 2),
            "rows": len(page.rows),
            "plan": explain(page_queryset(params, before)),
        }
        if before:

            def cand(params: dict[str, str] = params, before: str | None = before) -> Any:
                return list(page_queryset(params, before, candidate=True))

            ctimes, crows = time_query(cand, repeats)
            entry["candidate_sargable_bound_median_ms"] = round(statistics.median(ctimes) * 1000, 2)
            entry["candidate_rows_same"] = [r.pk for r in crows[: filters.PAGE_SIZE]] == [r.pk for r in page.rows]
            entry["candidate_plan"] = explain(page_queryset(params, before, candidate=True))
        out[name] = entry
        log(f"explorer: {n:,} rows {name}: {entry['median_ms']} ms ({entry['rows']} rows)")
    return out


CANDIDATE_QUERIES = ("workflow_step_output", "page2_workflow_step_output", "no_match_workflow_step", "step")
EXT_STATS_SQL = (
    "CREATE STATISTICS bench_ckpt_wf_step_out (dependencies, mcv) "
    "ON workflow, last_completed_step, output_event_type FROM runs_checkpoint"
)
COMPOSITE_INDEX_SQL = (
    "CREATE INDEX bench_ckpt_wf_step_idx ON runs_checkpoint "
    '(workflow, last_completed_step, "created_at" DESC, "id" DESC)'
)


def _time_cases(n: int, repeats: int) -> dict[str, Any]:
    from runs import filters

    out: dict[str, Any] = {}
    cursors: dict[str, str | None] = {}
    for name, params, before, _goal in explorer_cases(n):
        if before and before.startswith("PAGE1:"):
            before = cursors.get(before[6:])
        if name not in CANDIDATE_QUERIES:
            continue

        def run(params: dict[str, str] = params, before: str | None = before) -> Any:
            return filters.paginate(filters.checkpoint_filters(params)[0], before)

        times, page = time_query(run, repeats)
        cursors[name] = page.next_cursor
        out[name] = {
            "median_ms": round(statistics.median(times) * 1000, 2),
            "rows": len(page.rows),
            "plan": explain(page_queryset(params, before)),
        }
    return out


def measure_db_candidates(n: int, repeats: int) -> dict[str, Any]:
    """Bench-only schema candidates for the filter combinations, timed with the app's paginate."""
    from django.db import connection

    out: dict[str, Any] = {}
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            t = time.perf_counter()
            cur.execute(EXT_STATS_SQL)
            cur.execute("ANALYZE runs_checkpoint")
            out["extended_statistics"] = {"sql": EXT_STATS_SQL, "build_s": round(time.perf_counter() - t, 1)}
            out["extended_statistics"]["queries"] = _time_cases(n, repeats)
            cur.execute("DROP STATISTICS bench_ckpt_wf_step_out")
            cur.execute("ANALYZE runs_checkpoint")
        t = time.perf_counter()
        cur.execute(COMPOSITE_INDEX_SQL)
        if connection.vendor == "postgresql":
            cur.execute("ANALYZE runs_checkpoint")
        out["composite_index"] = {"sql": COMPOSITE_INDEX_SQL, "build_s": round(time.perf_counter() - t, 1)}
        out["composite_index"]["queries"] = _time_cases(n, repeats)
        cur.execute("DROP INDEX bench_ckpt_wf_step_idx")
    for name, cand in out.items():
        log(
            f"explorer: {n:,} rows candidate {name}: "
            + ", ".join(f"{k} {v['median_ms']} ms" for k, v in cand["queries"].items())
        )
    return out


def child_explorer(args: argparse.Namespace) -> dict[str, Any]:
    backend = args.backend
    tmp = Path(tempfile.mkdtemp(prefix=f"wfdash-bench-explorer-{backend}-"))
    try:
        if backend == "postgresql":
            recreate_pg_database(PG_DB)
            database_url = pg_url(PG_DB)
        else:
            database_url = f"sqlite:///{tmp / 'explorer.sqlite3'}"
        django_setup(database_url, None)
        from django.db import connection

        with connection.cursor() as cur:
            if connection.vendor == "postgresql":
                cur.execute("SHOW server_version")
            else:
                cur.execute("SELECT sqlite_version()")
            version = cur.fetchone()[0]
        create_synthetic_runs()
        result: dict[str, Any] = {"database": connection.vendor, "version": version, "sizes": {}}
        loaded = 0
        for index, size in enumerate(args.sizes):
            log(f"explorer/{backend}: loading {loaded:,} -> {size:,} checkpoints")
            t = time.perf_counter()
            if connection.vendor == "postgresql":
                load = load_postgresql(loaded, size)
            else:
                load = load_sqlite(str(tmp / "explorer.sqlite3"), loaded, size)
            load["total_s"] = time.perf_counter() - t
            loaded = size
            queries = measure_explorer(size, args.query_repeats)
            goal_ms = [q["median_ms"] for q in queries.values() if q["goal_query"]]
            result["sizes"][str(size)] = {
                "rows": size,
                "load": {k: round(v, 1) if isinstance(v, float) else v for k, v in load.items()},
                "queries": queries,
                "goal_queries_max_median_ms": max(goal_ms),
                "all_queries_max_median_ms": max(q["median_ms"] for q in queries.values()),
            }
            if index == len(args.sizes) - 1:
                result["sizes"][str(size)]["candidate_schema"] = measure_db_candidates(size, args.query_repeats)
        return result
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if backend == "postgresql":
            drop_pg_database(PG_DB)
        shutil.rmtree(tmp, ignore_errors=True)


# == parent ==============================================================================


def run_child(argv: list[str], timeout: float, label: str, script: Path = HERE) -> dict[str, Any]:
    """Run a bench script (this one by default) as a child in its own process group; kill the
    whole group on timeout; its JSON stdout, or {"error": ...}."""
    t = time.monotonic()
    proc = subprocess.Popen(
        [PY, str(script), *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"error": f"{label}: timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": f"{label}: child exited with {proc.returncode} (see stderr)"}
    try:
        result: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        return {"error": f"{label}: child printed no JSON", "stdout_tail": out[-500:]}
    result["child_wall_s"] = round(time.monotonic() - t, 1)
    return result


def latency_summary(report: dict[str, Any]) -> dict[str, Any]:
    """variant -> clients -> the headline figures (median, min, max, samples over the repeats)."""
    out: dict[str, Any] = {}
    for variant, result in report.get("latency", {}).items():
        rows: dict[str, Any] = {}
        for key, r in result.items():
            if key.startswith("clients_") and isinstance(r, dict) and "from_step_completion" in r:
                rows[key] = {
                    "p50_ms": r["from_step_completion"]["p50_ms"],
                    "p99_ms": r["from_step_completion"]["p99_ms"],
                    "p99_from_commit_ms": r["from_commit"]["p99_ms"],
                    "repeats": r["repeats"],
                    **{k: r[k] for k in ("lost", "duplicates", "out_of_order")},
                    **{f"{k}_per_run": r[f"{k}_per_run"] for k in ("lost", "duplicates", "out_of_order")},
                    "server_cpu_s": r["server_cpu_s"],
                }
        out[variant] = rows or {"error": result.get("error")}
        if rows:
            out[variant]["processes"] = result.get("processes")
    return out


def goals(report: dict[str, Any], pg_max: int) -> dict[str, Any]:
    """Goals on the median of the repeats; a goal at a client count not measured says so."""
    out: dict[str, Any] = {}
    summary = report.get("latency_summary") or latency_summary(report)
    redis = summary.get("redis", {}).get(f"clients_{GOAL_CLIENTS}")
    key = f"redis_p99_from_step_completion_under_{GOAL_P99_MS:.0f}_ms_{GOAL_CLIENTS}_clients"
    if redis:
        p99 = redis["p99_ms"]["median"]
        clean = redis["lost"] == 0 and redis["duplicates"] == 0 and redis["out_of_order"] == 0
        out[key] = {
            "target_ms": GOAL_P99_MS,
            "p99_ms": redis["p99_ms"],
            "p99_from_commit_ms": redis["p99_from_commit_ms"],
            "lost": redis["lost"],
            "duplicates": redis["duplicates"],
            "met": bool(p99 is not None and p99 < GOAL_P99_MS and clean),
        }
    elif "redis" in summary:
        out[key] = {"target_ms": GOAL_P99_MS, "met": None, "note": f"not measured at {GOAL_CLIENTS} clients"}
    embedded = {k: v for k, v in summary.get("webworker", {}).items() if k.startswith("clients_")}
    if embedded:
        worst = max(embedded, key=lambda k: int(k.split("_")[1]))
        p50 = embedded[worst]["p50_ms"]["median"]
        out[f"embedded_p50_from_step_completion_under_{GOAL_EMBEDDED_P50_MS:.0f}_ms"] = {
            "target_ms": GOAL_EMBEDDED_P50_MS,
            "clients": int(worst.split("_")[1]),
            "p50_ms": embedded[worst]["p50_ms"],
            "met": bool(p50 is not None and p50 < GOAL_EMBEDDED_P50_MS and embedded[worst]["lost"] == 0),
        }
    pg = report.get("explorer", {}).get("postgresql", {}).get("sizes", {}).get(str(pg_max))
    if pg:
        slow = {k: q["median_ms"] for k, q in pg["queries"].items() if q["median_ms"] >= GOAL_EXPLORER_MS}
        out[f"explorer_pg_{pg_max}_ms"] = {
            "target_ms": GOAL_EXPLORER_MS,
            "goal_queries_max_median_ms": pg["goal_queries_max_median_ms"],
            "all_queries_max_median_ms": pg["all_queries_max_median_ms"],
            "over_target": slow,
            "met": pg["goal_queries_max_median_ms"] < GOAL_EXPLORER_MS,
        }
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker-shim":
        rest = sys.argv[3:]
        worker_shim(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 and 20 clients; 100k and 1M rows")
    p.add_argument("--only", choices=["latency", "explorer"], help="one section")
    p.add_argument(
        "--layers",
        default="webworker,memory,redis,redis+nohop,redis-pubsub+nohop",
        help="webworker (the embedded default: daphne with the worker on its loop), memory (daphne + a separate "
        "wfworker) and redis are the app as it is; bench-only candidates: +nohop (dispatch without the "
        "per-message close_old_connections hop), +cap (capacity 2000), redis-pubsub (RedisPubSubChannelLayer)",
    )
    p.add_argument("--backends", default="sqlite,postgresql", help="explorer backends")
    p.add_argument("--clients", help="comma-separated client counts (default 1,200; quick 1,20)")
    p.add_argument("--sqlite-sizes", help="comma-separated row counts (default 1M,10M; quick 100k,1M)")
    p.add_argument("--pg-sizes", help="comma-separated row counts (default 1M,10M; quick 100k,1M)")
    p.add_argument("--steps", type=int, default=CHAIN_STEPS)
    p.add_argument("--sleep", type=float, default=CHAIN_SLEEP)
    p.add_argument("--repeats", type=int, default=3, help="runs per (layer, clients); fresh run and clients each")
    p.add_argument("--query-repeats", type=int, default=5, help="timings per explorer query")
    p.add_argument("--profile-daphne", action="store_true", help="run daphne under cProfile; stats to stderr")
    # internal: child sections
    p.add_argument("--child", choices=["latency", "explorer"], help=argparse.SUPPRESS)
    p.add_argument("--layer", help=argparse.SUPPRESS)
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.add_argument("--sizes", help=argparse.SUPPRESS)
    args = p.parse_args()

    def ints(value: str) -> list[int]:
        return [int(float(x)) for x in value.split(",") if x.strip()]

    if args.repeats < 1 or args.query_repeats < 1:
        p.error("--repeats and --query-repeats must be at least 1")
    if args.child == "latency":
        args.clients = ints(args.clients)
        print(json.dumps(child_latency(args)))
        return
    if args.child == "explorer":
        args.sizes = ints(args.sizes)
        print(json.dumps(child_explorer(args)))
        return

    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    clients = ints(args.clients) if args.clients else cfg["clients"]
    sizes = {
        "sqlite": ints(args.sqlite_sizes) if args.sqlite_sizes else cfg["sqlite_sizes"],
        "postgresql": ints(args.pg_sizes) if args.pg_sizes else cfg["pg_sizes"],
    }
    started = time.monotonic()
    report: dict[str, Any] = {
        "bench": "live",
        "mode": mode,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine_at_start": machine(),
        "config": {
            "clients": clients,
            "chain": {"steps": args.steps, "sleep": args.sleep},
            "explorer_sizes": sizes,
            "explorer_runs": RUNS,
            "repeats": args.repeats,
            "explorer_query_repeats": args.query_repeats,
            "pg_database": PG_DB,
        },
        # What the daphne / worker children run with (the same for every layer but the URLs).
        "settings": {"repeats": args.repeats, "children": child_settings(service_env("<per layer>", None))},
    }
    try:
        if args.only in (None, "latency"):
            report["latency"] = {}
            for layer in [x.strip() for x in args.layers.split(",") if x.strip()]:
                argv = ["--child", "latency", "--layer", layer, "--clients", ",".join(map(str, clients))]
                argv += ["--steps", str(args.steps), "--sleep", str(args.sleep), "--repeats", str(args.repeats)]
                argv += ["--profile-daphne"] if args.profile_daphne else []
                per_run = args.steps * args.sleep * 4 + 60
                timeout = 300 + per_run * args.repeats * (len(clients) + 1)
                report["latency"][layer] = run_child(argv, timeout, f"latency/{layer}")
        if args.only in (None, "explorer"):
            report["explorer"] = {}
            for backend in [x.strip() for x in args.backends.split(",") if x.strip()]:
                argv = ["--child", "explorer", "--backend", backend, "--sizes", ",".join(map(str, sizes[backend]))]
                argv += ["--query-repeats", str(args.query_repeats)]
                report["explorer"][backend] = run_child(argv, 1200, f"explorer/{backend}")
    finally:
        drop_pg_database(PG_DB)
    report["latency_summary"] = latency_summary(report)
    report["goals"] = goals(report, max(sizes["postgresql"]))
    report["machine_at_end"] = machine()
    report["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
