"""Live token streams and the embedded live path: latency to a WebSocket client.

    .venv/bin/python bench/stream.py > bench/results/stream.json          # about 1 min
    .venv/bin/python bench/stream.py --layers memory --repeats 3          # quicker

Prints one JSON document to stdout; progress goes to stderr. Each layer runs in its own
subprocess (Django reads DATABASE_URL and REDIS_URL once) on a fresh temporary SQLite file,
with the test suite's OpenAI-compatible server (tests/fake_openai.py) in that process
streaming a word per SSE chunk, `--token-delay` seconds apart.

- `memory`: the embedded default as `bash .ci/start` runs it: `manage.py webworker` (daphne
  with the worker on its loop), in-memory channel layer.
- `redis`: daphne and a separate `manage.py wfworker`, the Redis pub/sub layer (a private
  redis-server on a free port).
- `memory-separate` (not run by default): daphne and a separate `wfworker` on the in-memory
  layer, the shape before `webworker` (and that of any extra worker process): pages hear
  only the web process's database poll, every 0.2 s, and streams by their snapshots.

Each server runs through `--shim`, which wraps DatabaseCheckpointStore.put_checkpoint only to
log (checkpoint id, time.time()) once its batch committed (it returns right then and the
announcement is sent after it). Per repeat:

1. `first_token_ms`: a `joke` run is created held back (status `waiting`), one client connects
   to `/ws/runs/<id>/?after=0`, then the run is queued. From the moment the fake server wrote
   the first token of `generate_joke`'s answer (time.time() after the write) to the client's
   receipt of the `stream` message carrying it. `token_ms`: the same for every token of that
   answer (each token's write to the receipt of the message that completes it).
2. `checkpoint_from_commit_ms`: a `chain` run (`--chain-steps` steps of `--chain-sleep` s),
   from each checkpoint's logged commit to the client's receipt of it (p50 and p99 per run).

Figures are medians over the repeats, with the min and max in `*_range`. The client runs in
the same process as the fake server, on the same cores as everything else: on a loaded
machine read them as upper bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
PY = sys.executable
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE.parent))

import live as bench_live  # noqa: E402  (bench/live.py: shared helpers)

TERMINAL = {"succeeded", "failed", "cancelled"}
GOAL_MS = 50.0


def log(msg: str) -> None:
    bench_live.log(msg, tag="stream")


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "median": round(statistics.median(values), 2),
        "range": [round(min(values), 2), round(max(values), 2)],
        "n": len(values),
    }


# == the server shim ======================================================================


def shim(commit_log: str, command: list[str]) -> None:
    """`manage.py COMMAND ARGS`, logging when each checkpoint's batch commit was seen."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wfdash.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from runs.store import DatabaseCheckpointStore

    out = open(commit_log, "a", buffering=1)  # noqa: SIM115 - line-buffered for the process's life
    original = DatabaseCheckpointStore.put_checkpoint

    async def put_checkpoint(self: Any, checkpoint: Any, workflow: Any) -> None:
        await original(self, checkpoint, workflow)
        out.write(f"{checkpoint.id_} {time.time():.6f}\n")

    DatabaseCheckpointStore.put_checkpoint = put_checkpoint  # type: ignore[method-assign]
    call_command(command[0], *command[1:])


# == one layer (a subprocess) ==============================================================


class Client:
    """One `/ws/runs/<id>/?after=0` client, recording every message with its receive time."""

    def __init__(self, base: str, run_id: str, session: str) -> None:
        self.url = base.replace("http://", "ws://") + f"/ws/runs/{run_id}/?after=0"
        self.origin = base
        self.session = session
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.ready = asyncio.Event()

    async def run(self) -> None:
        from websockets.asyncio.client import connect

        async with connect(
            self.url, additional_headers={"Cookie": f"sessionid={self.session}"}, origin=self.origin, open_timeout=30
        ) as ws:
            async for raw in ws:
                t = time.time()
                msg = json.loads(raw)
                self.messages.append((t, msg))
                if msg.get("type") == "run":
                    self.ready.set()
                    if msg["status"] in TERMINAL:
                        top = max((m["seq"] for _, m in self.messages if m.get("type") == "checkpoint"), default=0)
                        if top >= msg["checkpoint_count"]:
                            return
                elif msg.get("type") == "checkpoint" and any(
                    m.get("type") == "run" and m["status"] in TERMINAL and m["checkpoint_count"] <= msg["seq"]
                    for _, m in self.messages
                ):
                    return


def held_run(workflow: str, fields: dict[str, Any]) -> str:
    from runs import inputs
    from runs.models import Run, RunStatus

    start = inputs.start_event(inputs.workflow_named(workflow), fields)
    return str(Run.objects.create(workflow=workflow, start_event=start, status=RunStatus.WAITING).id)


async def watch(base: str, session: str, run_id: str) -> Client:
    from asgiref.sync import sync_to_async

    client = Client(base, run_id, session)
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(client.ready.wait(), 30)
    await sync_to_async(bench_live.release_runs)([run_id])
    await asyncio.wait_for(task, 60)
    return client


def token_latencies(client: Client, sent: list[tuple[float, str]], step: str) -> list[float]:
    """ms from each token's write to the receipt of the stream message that completed it."""
    received: list[tuple[float, int]] = []  # (time, characters the client has) for `step`'s stream
    for t, msg in client.messages:
        if msg.get("type") == "stream" and msg["step"] == step:
            received.append((t, msg["offset"] + len(msg["delta"])))
    out: list[float] = []
    length = 0
    for sent_at, piece in sent:
        length += len(piece)
        got = next((t for t, have in received if have >= length), None)
        if got is not None:
            out.append((got - sent_at) * 1000)
    return out


def child(args: argparse.Namespace) -> dict[str, Any]:
    layer = args.child
    tmp = Path(tempfile.mkdtemp(prefix=f"wfdash-bench-stream-{layer}-"))
    redis = bench_live.PrivateRedis() if layer == "redis" else None  # memory-separate: none
    if redis is not None:
        redis.start()
    env = bench_live.service_env(f"sqlite:///{tmp / 'db.sqlite3'}", redis.url if redis else None)
    from tests.fake_openai import FakeOpenAI

    fake = FakeOpenAI(token_delay=args.token_delay)
    fake.thread.start()
    env.update(OPENAI_BASE_URL=fake.base_url, OPENAI_API_KEY="bench-not-a-key", WFDASH_LLM_MODEL="fake-model")
    os.environ.update(env)
    bench_live.django_setup(env["DATABASE_URL"], redis.url if redis else None)
    services = bench_live.Services(env, tmp / "logs")
    commit_log = tmp / "commits.log"
    try:
        port = bench_live.free_port()
        shimmed = [PY, str(HERE), "--shim", str(commit_log), "--"]
        if layer == "memory":
            services._popen("webworker", [*shimmed, "webworker", "--port", str(port)])
        else:
            daphne = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wfdash.asgi:application"]
            services._popen("daphne", daphne)
            services._popen("wfworker", [*shimmed, "wfworker", "--poll-interval", "0.05"])
        base = f"http://127.0.0.1:{port}"
        bench_live.wait_http(f"{base}/healthz", timeout=60)
        session = bench_live.session_cookie()
        first: list[float] = []
        tokens_p50: list[float] = []
        tokens_p99: list[float] = []
        ckpt_p50: list[float] = []
        ckpt_p99: list[float] = []
        # A warm-up run of each kind first: a worker's first run pays one-off imports.
        for i in range(args.repeats + 1):
            with fake.lock:
                fake.sent.clear()
            run_id = held_run("joke", {"topic": f"topic {i}"})
            client = asyncio.run(watch(base, session, run_id))
            joke = FakeOpenAI.answer(f"Write your best joke about topic {i}.")
            with fake.lock:
                sent = fake.sent[: len(joke.split())]
            lat = token_latencies(client, sent, "generate_joke")
            services.check_alive()
            if i == 0 or not lat:
                continue
            first.append(lat[0])
            tokens_p50.append(bench_live.pct(lat, 0.5))
            tokens_p99.append(bench_live.pct(lat, 0.99))
        for i in range(args.repeats + 1):
            run_id = held_run("chain", {"steps": args.chain_steps, "sleep": args.chain_sleep})
            client = asyncio.run(watch(base, session, run_id))
            commits = bench_live.read_commit_log(commit_log)
            lat = [
                (t - commits[m["id"]]) * 1000
                for t, m in client.messages
                if m.get("type") == "checkpoint" and m["id"] in commits
            ]
            if i == 0 or not lat:
                continue
            ckpt_p50.append(bench_live.pct(lat, 0.5))
            ckpt_p99.append(bench_live.pct(lat, 0.99))
        return {
            "layer": layer,
            "first_token_ms": summary(first),
            "token_ms_p50": summary(tokens_p50),
            "token_ms_p99": summary(tokens_p99),
            "checkpoint_from_commit_ms_p50": summary(ckpt_p50),
            "checkpoint_from_commit_ms_p99": summary(ckpt_p99),
            "cpu_s": services.cpu(),
        }
    finally:
        services.stop()
        fake.server.shutdown()
        fake.server.server_close()
        if redis is not None:
            redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="memory,redis")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--token-delay", type=float, default=0.02, help="seconds between streamed words")
    parser.add_argument("--chain-steps", type=int, default=40)
    parser.add_argument("--chain-sleep", type=float, default=0.02)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result: dict[str, Any] = {
        "commit": commit.stdout.strip() + ("+uncommitted changes" if dirty else ""),
        "settings": {
            "repeats": args.repeats,
            "token_delay_s": args.token_delay,
            "chain_steps": args.chain_steps,
            "chain_sleep_s": args.chain_sleep,
            "database": "SQLite (temporary file, WAL)",
            "debug": False,
        },
        "machine_at_start": bench_live.machine(),
        "goal_ms": GOAL_MS,
        "layers": {},
    }
    for layer in args.layers.split(","):
        log(f"{layer}: {args.repeats} joke runs and {args.repeats} chain runs (plus a warm-up each)")
        argv = [PY, str(HERE), "--child", layer, "--repeats", str(args.repeats), "--token-delay", str(args.token_delay)]
        argv += ["--chain-steps", str(args.chain_steps), "--chain-sleep", str(args.chain_sleep)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, start_new_session=True)
        if done.returncode != 0:
            result["layers"][layer] = {"error": done.stderr[-2000:]}
            continue
        result["layers"][layer] = json.loads(done.stdout.strip().splitlines()[-1])
    result["machine_at_end"] = bench_live.machine()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--shim":
        rest = sys.argv[3:]
        shim(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
    else:
        main()
