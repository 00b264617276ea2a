"""Load drill: 200 WebSocket clients watching 100 concurrent runs for 60 s on the Redis layer.

    .venv/bin/python bench/load_drill.py > bench/results/load_drill.json   # about 5 min (2 variants)
    .venv/bin/python bench/load_drill.py --variants redis                  # the app only (~2.5 min)
    .venv/bin/python bench/load_drill.py --duration 20 --runs 20           # a shorter drill
    .venv/bin/python bench/load_drill.py --variants redis,redis+cap,redis-pubsub+nohop --profile-worker

Cluster on loopback, as in tests/scaleout: PostgreSQL (database `wfdash_bench_drill`, dropped at
the end), a private redis-server on a free port, two daphne and two `manage.py wfworker` (through
bench/live.py's shim, which only logs when each checkpoint's batch commit was seen), DEBUG off.

1. `--runs` chain runs (steps=600, sleep=0.1: ~10 checkpoints/s each, longer than the drill) are
   created held back (status `waiting`), then two clients per run connect to
   `/ws/runs/<id>/?after=0`, one on each daphne, and wait for their first catch-up message.
2. All runs are queued at once (t=0); each worker claims up to 50. The drill runs `--duration` s.
3. At the end every unfinished run is cancelled (`Run.request_cancel`), and each client reads
   until its run's terminal status message and all checkpoints it counts (bounded).
4. Checks per client: the seqs received are exactly 1..k, contiguous, no duplicates, and k is the
   number of checkpoints of its run in the database. Latency per (client, checkpoint), on the
   monotonic clock of the machine: `from_step_completion` (receive - when the worker handed the
   completed step's checkpoint to put_checkpoint, so it includes the group commit) and
   `from_commit` (receive - when the worker saw the commit); `from_created_at` (wall clock,
   the stored created_at) as a cross-check; p50/p99/max overall and per 10 s window
   (`windows`, from step completion), to show whether a backlog builds.

`--repeats N` (default 3): each variant is N full drills, each on a fresh cluster and database.
Output: {"variants": {name: figures}, "goals": {name: goals}}; per variant every latency is
`{median, min, max, n, samples}` over the N drills' p50s / p99s / maxima (bench/common.py's
shape), lost / duplicated / out-of-order are summed with `*_per_run` listed, and `runs` holds
each drill's full report. Children run with the shipped settings (recorded under `settings`).
Variants (see bench/live.py): `redis` is the app as it is;
bench-only candidates: `+nohop` overrides RunConsumer.dispatch to skip Channels' per-message
close_old_connections thread hop; `+cap` raises RedisChannelLayer's capacity from 100 to 2000;
`redis-pubsub` uses channels_redis' RedisPubSubChannelLayer. Candidates are written at run time
into a temporary directory; the app is not changed. `channels_redis_over_capacity_reports`
counts, per process log, channels_redis' INFO reports of group messages dropped because a
process's channel was over capacity (the workers' shim turns that logger on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import live as bl  # noqa: E402 - bench/live.py: cluster, client and statistics helpers
from common import figure  # noqa: E402

PG_DB = os.environ.get("BENCH_DRILL_PG_DB", "wfdash_bench_drill")
GOAL_P99_MS = 50.0


def log(msg: str) -> None:
    bl.log(msg, tag="drill")


def cancel_unfinished(run_ids: list[str]) -> dict[str, int]:
    from runs.models import Run

    outcome = {"requested": 0, "already_finished": 0}
    for run in Run.objects.filter(pk__in=run_ids):
        if run.is_terminal:
            outcome["already_finished"] += 1
        elif run.request_cancel():
            outcome["requested"] += 1
    return outcome


def checkpoints_committed() -> int:
    from runs.models import Checkpoint

    return Checkpoint.objects.count()


def windows(
    clients: list[bl.WatchClient], mono0: float, commits: dict[str, tuple[float, float]], width: float = 10.0
) -> list[dict[str, Any]]:
    """Latency from step completion per window of receive time since the runs were queued."""
    buckets: dict[int, list[float]] = {}
    for c in clients:
        for _t, _seq, cid, _created, mono in c.got:
            if cid in commits:
                buckets.setdefault(int((mono - mono0) // width), []).append(mono - commits[cid][0])
    out = []
    for b in sorted(buckets):
        d = bl.dist_ms(buckets[b])
        out.append(
            {"from_s": b * width, "to_s": (b + 1) * width, **{k: d[k] for k in ("n", "p50_ms", "p99_ms", "max_ms")}}
        )
    return out


async def drill(args: argparse.Namespace, services: bl.Services, session: str) -> dict[str, Any]:
    from asgiref.sync import sync_to_async

    a, b = services.servers
    run_ids = await sync_to_async(bl.create_held_runs)(args.runs, args.steps, args.sleep)
    clients: list[bl.WatchClient] = []
    for run_id in run_ids:
        for _ in range(args.clients_per_run):
            # Alternate servers so each run is watched through both daphne processes.
            clients.append(bl.WatchClient(a if len(clients) % 2 == 0 else b, run_id, session))
    log(f"{len(clients)} clients connecting to {a} and {b}")
    tasks = await bl.open_clients(clients, timeout=120)
    failed = [c.error for c in clients if c.error]
    if failed:
        raise RuntimeError(f"{len(failed)} clients failed to connect: {failed[:3]}")
    services.check_alive()

    lag: list[float] = []
    stop_lag = asyncio.Event()
    lagger = asyncio.create_task(bl.loop_lag(stop_lag, lag))
    cpu0, self0 = services.cpu(), os.times()
    released = await sync_to_async(bl.release_runs)(run_ids)
    mono0 = time.monotonic()
    log(f"{released} runs queued; drilling for {args.duration:.0f} s")
    progress = []
    # Bounded: one sample per 5 s until the duration is over.
    for _ in range(int(args.duration // 5) + 2):
        remaining = args.duration - (time.monotonic() - mono0)
        if remaining <= 0:
            break
        await asyncio.sleep(min(5.0, remaining))
        services.check_alive()
        got = sum(len(c.got) for c in clients)
        committed = await sync_to_async(checkpoints_committed)()
        progress.append({"t_s": round(time.monotonic() - mono0, 1), "delivered": got, "committed": committed})
        log(f"t={progress[-1]['t_s']:>5}s delivered {got:>7} committed {committed:>6}")
    at_cutoff = {
        "delivered": sum(len(c.got) for c in clients),
        "committed": await sync_to_async(checkpoints_committed)(),
        "elapsed_s": round(time.monotonic() - mono0, 2),
    }
    cancel = await sync_to_async(cancel_unfinished)(run_ids)
    log(f"cutoff: {at_cutoff}; cancel {cancel}; waiting for clients to see their runs end")
    late = await bl.finish_clients(clients, tasks, timeout=args.drain_timeout)
    drain_s = time.monotonic() - mono0 - at_cutoff["elapsed_s"]
    cpu1, self1 = services.cpu(), os.times()
    stop_lag.set()
    await lagger
    db = await sync_to_async(bl.db_checkpoints)(run_ids)
    statuses = await sync_to_async(bl.run_statuses)(run_ids)
    mismatched = 0
    for c in clients:
        seqs = [g[1] for g in c.got]
        if seqs != db[c.run_id]["seqs"]:
            mismatched += 1
    return {
        "_clients": clients,
        "_db": db,
        "_t0": mono0,
        "run_statuses": statuses,
        "checkpoints_in_db": sum(len(v["seqs"]) for v in db.values()),
        "runs_with_non_contiguous_db_seqs": sum(
            1 for v in db.values() if v["seqs"] != list(range(1, len(v["seqs"]) + 1))
        ),
        "clients": len(clients),
        "clients_complete": sum(1 for c in clients if c.final_count is not None),
        "clients_timed_out": late,
        "clients_whose_seqs_differ_from_db": mismatched,
        "cancel": cancel,
        "at_cutoff": at_cutoff,
        "drain_after_cutoff_s": round(drain_s, 2),
        "progress": progress,
        "client_loop_lag": bl.dist_ms(lag),
        "cpu_s": {
            **{k: round(cpu1[k] - cpu0[k], 2) for k in cpu0},
            "bench_clients": round((self1.user + self1.system) - (self0.user + self0.system), 2),
        },
    }


def run_variant_child(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    """This file with --variant in its own process group (Django is set up once per process)."""
    argv = ["--variant", variant]
    for name in ("runs", "clients_per_run", "duration", "steps", "sleep", "drain_timeout"):
        argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    argv += ["--profile-worker"] if args.profile_worker else []
    timeout = args.duration + args.drain_timeout + 240
    return bl.run_child(argv, timeout, variant, script=Path(__file__).resolve())


def repeated_variant(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A variant's N drills as figures: median (min-max) with samples, counters summed."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error") if runs else "no runs", "runs": runs}
    first = ok[0]
    counters = (*bl.COUNTERS, "clients_with_errors")
    delivery = bl.repeated([r["delivery"] for r in ok], counters)
    differ = [int(r.get("clients_whose_seqs_differ_from_db") or 0) for r in ok]
    complete = all(r.get("clients_complete") == r.get("clients") for r in ok)
    p99 = delivery["from_step_completion"]["p99_ms"]
    return {
        "config": first.get("config"),
        "settings": first.get("settings"),
        "started_at": first.get("started_at"),
        "repeats": len(runs),
        "runs_failed": len(runs) - len(ok),
        "clients": first.get("clients"),
        "delivery": delivery,
        "clients_whose_seqs_differ_from_db": sum(differ),
        "clients_whose_seqs_differ_from_db_per_run": differ,
        "delivered_per_s_during_drill": figure([r.get("delivered_per_s_during_drill") for r in ok]),
        "committed_per_s_during_drill": figure([r.get("committed_per_s_during_drill") for r in ok]),
        "drain_after_cutoff_s": figure([r.get("drain_after_cutoff_s") for r in ok], 2),
        "channels_redis_over_capacity_reports": [r.get("channels_redis_over_capacity_reports") for r in ok],
        "goals": {
            "exactly_once": {
                **{k: delivery[k] for k in ("lost", "duplicates", "out_of_order")},
                **{f"{k}_per_run": delivery[f"{k}_per_run"] for k in ("lost", "duplicates", "out_of_order")},
                "clients_whose_seqs_differ_from_db": sum(differ),
                "met": len(ok) == len(runs)
                and complete
                and not any(delivery[k] for k in ("lost", "duplicates", "out_of_order"))
                and not any(differ),
            },
            "p99_under_50_ms": {
                "target_ms": GOAL_P99_MS,
                "p99_from_step_completion_ms": p99,
                "p99_from_commit_ms": delivery["from_commit"]["p99_ms"],
                "met": bool(p99["median"] is not None and p99["median"] < GOAL_P99_MS),
            },
        },
        "machine_at_start": first.get("machine_at_start"),
        "machine_at_end": ok[-1].get("machine_at_end"),
        "runs": runs,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--clients-per-run", type=int, default=2)
    p.add_argument("--duration", type=float, default=60.0, help="seconds from queueing the runs to the cutoff")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--sleep", type=float, default=0.1)
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds for clients to see the end")
    p.add_argument("--profile-worker", action="store_true", help="cProfile both workers; stats to stderr")
    p.add_argument(
        "--variants",
        default="redis,redis-pubsub+nohop",
        help="comma-separated, each a full drill in its own process: redis (the app as it is), and "
        "bench-only candidates redis+nohop, redis+cap, redis-pubsub, redis-pubsub+nohop, ...",
    )
    p.add_argument("--variant", help="run one variant in this process (what --variants runs per variant)")
    p.add_argument("--repeats", type=int, default=3, help="full drills per variant, each on a fresh cluster")
    args = p.parse_args()
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.variant is None:
        started = time.monotonic()
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        for v in variants:
            bl.parse_variant(v)
        recorded = {"repeats": args.repeats, "children": bl.child_settings(bl.service_env("<per drill>", None))}
        doc: dict[str, Any] = {"bench": "load_drill", "settings": recorded, "variants": {}}
        for v in variants:
            runs = []
            for i in range(args.repeats):
                log(f"variant {v}: drill {i + 1}/{args.repeats}")
                runs.append(run_variant_child(args, v))
            doc["variants"][v] = repeated_variant(runs)
        doc["goals"] = {v: r.get("goals", {"error": r.get("error")}) for v, r in doc["variants"].items()}
        doc["wall_s"] = round(time.monotonic() - started, 1)
        print(json.dumps(doc, indent=2))
        return
    layer, flags = bl.parse_variant(args.variant)
    if layer == "memory":
        raise SystemExit("the drill runs on Redis: two daphne processes need a cross-process layer")

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="wfdash-bench-drill-"))
    redis = bl.PrivateRedis()
    services: bl.Services | None = None
    ok = False
    report: dict[str, Any] = {
        "bench": "load_drill",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine_at_start": bl.machine(),
        "config": {
            "runs": args.runs,
            "clients_per_run": args.clients_per_run,
            "duration_s": args.duration,
            "chain": {"steps": args.steps, "sleep": args.sleep},
            "variant": args.variant,
            "servers": 2,
            "workers": 2,
            "worker_concurrency": 50,
            "database": f"postgresql/{PG_DB}",
        },
    }
    try:
        redis.start()
        bl.recreate_pg_database(PG_DB)
        database_url = bl.pg_url(PG_DB)
        settings = bl.variant_settings(tmp / "py", layer, flags)
        app = bl.variant_app(tmp / "py", flags)
        bl.django_setup(database_url, redis.url, settings)
        from django.conf import settings as django_settings

        session = bl.session_cookie()
        env = bl.service_env(database_url, redis.url, settings)
        report["settings"] = bl.child_settings(env)
        services = bl.Services(env, tmp / "logs")
        services.start_server("daphne-a", app=app)
        services.start_server("daphne-b", app=app)
        logs = [tmp / "commits-w1.log", tmp / "commits-w2.log"]
        profiles = [tmp / "w1.prof", tmp / "w2.prof"] if args.profile_worker else [None, None]
        services.start_worker("w1", logs[0], profiles[0])
        services.start_worker("w2", logs[1], profiles[1])
        layer_cfg: dict[str, Any] = dict(django_settings.CHANNEL_LAYERS["default"])
        report["config"]["channel_layer"] = layer_cfg["BACKEND"]
        report["config"]["channel_layer_capacity"] = (
            dict(layer_cfg.get("CONFIG", {})).get("capacity") or "default (100)"
        )
        report["config"]["asgi_application"] = app
        log(f"cluster up: {services.servers}, logs in {tmp / 'logs'}")

        raw = asyncio.run(drill(args, services, session))
        services.stop()
        for name, profile in zip(("w1", "w2"), profiles, strict=True):
            if profile is not None:
                bl.print_profile(profile, f"worker {name} (whole drill)")
        # channels_redis logs each group_send that found a channel over capacity (messages dropped).
        report["channels_redis_over_capacity_reports"] = bl.over_capacity_events(tmp / "logs")
        commits: dict[str, tuple[float, float]] = {}
        for path in logs:
            commits.update(bl.read_step_log(path))
        clients, db, t0 = raw.pop("_clients"), raw.pop("_db"), raw.pop("_t0")
        stats = bl.delivery_stats(clients, db, commits)
        report.update(raw)
        report["delivery"] = stats
        report["delivered_messages"] = stats["received"]
        report["delivered_per_s_during_drill"] = round(raw["at_cutoff"]["delivered"] / raw["at_cutoff"]["elapsed_s"], 1)
        report["committed_per_s_during_drill"] = round(raw["at_cutoff"]["committed"] / raw["at_cutoff"]["elapsed_s"], 1)
        report["windows"] = windows(clients, t0, commits)
        lat = stats["from_step_completion"]
        report["goals"] = {
            "exactly_once": {
                "lost": stats["lost"],
                "duplicates": stats["duplicates"],
                "out_of_order": stats["out_of_order"],
                "clients_whose_seqs_differ_from_db": raw["clients_whose_seqs_differ_from_db"],
                "met": stats["lost"] == 0
                and stats["duplicates"] == 0
                and stats["out_of_order"] == 0
                and raw["clients_whose_seqs_differ_from_db"] == 0
                and raw["clients_complete"] == raw["clients"],
            },
            "p99_under_50_ms": {
                "target_ms": GOAL_P99_MS,
                "p99_from_step_completion_ms": lat.get("p99_ms"),
                "p99_from_commit_ms": stats["from_commit"].get("p99_ms"),
                "met": bool(lat.get("p99_ms") is not None and lat["p99_ms"] < GOAL_P99_MS),
            },
        }
        log(
            f"delivered {stats['received']}, lost {stats['lost']}, dup {stats['duplicates']}, "
            f"p50 {lat.get('p50_ms')} ms p99 {lat.get('p99_ms')} ms max {lat.get('max_ms')} ms"
        )
        ok = True
    finally:
        if services is not None:
            services.stop()
        redis.stop()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        bl.drop_pg_database(PG_DB)
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"failed; logs kept in {tmp}")
    report["machine_at_end"] = bl.machine()
    report["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
