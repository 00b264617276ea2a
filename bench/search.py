"""Search (`q=`) at scale: selective and common words over N synthetic checkpoints, both databases.

    .venv/bin/python bench/search.py --n 20000                       # both databases, a quick look
    .venv/bin/python bench/search.py --n 1000000 --out bench/results/search.json

Each database gets N checkpoints bulk-inserted in SQL (SQLite with the search triggers on, which
queue them, then the queue indexed as workers index it, `search_index.catch_up`: the fill rate is
the insert and indexing rate; PostgreSQL rows first, then the index in one pass): N/20 runs of
20 checkpoints over 50 workflows; input events {"topic": two words, "n": seq}; output events
{"joke": a 12-word sentence} that always has "the", one word of 1,000 and a token `q` + six
digits shared by about N/100,003 checkpoints; a store delta {"notes": {"v": {"deep": [sentence,
token `d` + six digits (N/50,021)], "k": n}}}; every 100th checkpoint a store value in one of
1,000 blobs (words `blobword` + 4 digits). SQLite: a temporary file (WAL); PostgreSQL: the
database `wfdash_bench_search` (recreated, then dropped).

Then each case runs through the explorer's and the API's own code (`filters.checkpoint_filters`
+ `filters.paginate`, 50 rows), a warm-up and `--repeats` times; `highlight_ms` is the page's
`search.matches_for`, `counts_ms` the explorer's facet counts (capped at 10,000 rows).
`write_cost` inserts single checkpoints, one transaction each, with the search triggers (they
queue the checkpoint) and without them, through the same INSERT the workers' store uses, then
times the indexer over what was queued (see write_cost's docstring).
Goal: a selective query (the cases with `goal_query`) under 200 ms at N = 1,000,000 on both.
Progress goes to stderr; JSON to stdout or `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgres://postgres@127.0.0.1:5432/wfdash_bench_search"
BASE_EPOCH = 1_780_000_000
WORKFLOWS = 50
PER_RUN = 20
VOCAB = 1000
BLOBS = 1000
RARE_MOD = 100_003  # token q000000..: about N / RARE_MOD checkpoints each
DEEP_MOD = 50_021  # token d000000.. in a nested store value


def log(msg: str) -> None:
    print(f"[search {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def vocabulary() -> list[str]:
    """1,000 pronounceable made-up words (no prefix of another is among the searched ones)."""
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    words = []
    for k in range(VOCAB):
        a, b, c = k % 14, (k // 14) % 5, (k // 70) % 14
        words.append(f"{consonants[a]}{vowels[b]}{consonants[c]}{vowels[(k * 7) % 5]}{consonants[(k * 3) % 14]}o")
    return words


def cases() -> list[tuple[str, dict[str, str], bool]]:
    """(name, params, is a goal query)."""
    i = 4242  # a checkpoint that exists at any N >= 20,000
    workflow = f"workflow_{(i // PER_RUN) % WORKFLOWS}"
    medium = vocabulary()[(i * 7) % VOCAB]
    return [
        ("rare_word", {"q": f"q{i % RARE_MOD:06d}"}, True),
        ("rare_word_and_workflow", {"q": f"q{i % RARE_MOD:06d}", "workflow": workflow}, True),
        ("nested_store_word", {"q": f"d{i % DEEP_MOD:06d}"}, True),
        ("blob_store_word", {"q": "blobword0042"}, True),
        ("rare_and_common_words", {"q": f"the q{i % RARE_MOD:06d}"}, True),
        ("no_match", {"q": "xylophonezz"}, True),
        ("medium_word", {"q": medium}, False),
        ("medium_word_and_workflow", {"q": medium, "workflow": workflow}, False),
        ("common_word_limit", {"q": "the"}, False),
        ("common_word_and_workflow_step", {"q": "the", "workflow": workflow, "step": "step_3"}, False),
    ]


# -- filling ---------------------------------------------------------------------------

SQLITE_FILL = """
WITH RECURSIVE g(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM g WHERE i + 1 < :hi)
INSERT INTO runs_checkpoint (id, run_id, workflow, seq, snapshot_seq, last_completed_step, input_event_type,
    output_event_type, input_event, output_event, state, created_at, duration_ms, usage, retries)
SELECT printf('c0000000%024x', i + 1), printf('00000000000040008000%012x', i / :per_run + 1),
       'workflow_' || ((i / :per_run) % :W), i % :per_run + 1, i % :per_run + 1,
       'step_' || (i % 4), 'Event' || (i % 7), 'Event' || ((i + 1) % 7),
       json_object('type', 'Event' || (i % 7), 'data', json_object(
           'topic', (SELECT w FROM v WHERE k = (i * 7) % :V) || ' ' || (SELECT w FROM v WHERE k = (i * 13 + 5) % :V),
           'n', i % :per_run + 1)),
       json_object('type', 'Event' || ((i + 1) % 7), 'data', json_object('joke',
           'the ' || (SELECT w FROM v WHERE k = (i * 31 + 1) % :V) || ' walked into a bar and asked the barman for '
           || printf('q%06d', i % :rare) || ' twice, politely')),
       json_object('version', 2, 'store', json_object(
           'notes', json_object('v', json_object('deep', json_array(
               'said the ' || (SELECT w FROM v WHERE k = (i * 17) % :V), printf('d%06d', i % :deep)), 'k', i)),
           'big', CASE WHEN i % 100 = 0 THEN json_object('b', printf('blob%060d', (i / 100) % :B)) END)),
       strftime('%Y-%m-%d %H:%M:%S', :base + i / 100, 'unixepoch') || printf('.%06d', (i % 100) * 10000 + 1),
       (i % 1000) / 10.0, NULL, NULL
FROM g
"""

PG_FILL = """
INSERT INTO runs_checkpoint (id, run_id, workflow, seq, snapshot_seq, last_completed_step, input_event_type,
    output_event_type, input_event, output_event, state, created_at, duration_ms, usage, retries)
SELECT ('c0000000' || lpad(to_hex(i + 1), 24, '0'))::uuid,
       ('00000000000040008000' || lpad(to_hex(i / %(per_run)s + 1), 12, '0'))::uuid,
       'workflow_' || ((i / %(per_run)s) %% %(W)s), i %% %(per_run)s + 1, i %% %(per_run)s + 1,
       'step_' || (i %% 4), 'Event' || (i %% 7), 'Event' || ((i + 1) %% 7),
       jsonb_build_object('type', 'Event' || (i %% 7), 'data', jsonb_build_object(
           'topic', (%(v)s::text[])[1 + (i * 7) %% %(V)s] || ' ' || (%(v)s::text[])[1 + (i * 13 + 5) %% %(V)s],
           'n', i %% %(per_run)s + 1)),
       jsonb_build_object('type', 'Event' || ((i + 1) %% 7), 'data', jsonb_build_object('joke',
           'the ' || (%(v)s::text[])[1 + (i * 31 + 1) %% %(V)s] || ' walked into a bar and asked the barman for '
           || 'q' || lpad((i %% %(rare)s)::text, 6, '0') || ' twice, politely')),
       jsonb_build_object('version', 2, 'store', jsonb_strip_nulls(jsonb_build_object(
           'notes', jsonb_build_object('v', jsonb_build_object('deep', jsonb_build_array(
               'said the ' || (%(v)s::text[])[1 + (i * 17) %% %(V)s],
               'd' || lpad((i %% %(deep)s)::text, 6, '0')), 'k', i)),
           'big', CASE WHEN i %% 100 = 0
                  THEN jsonb_build_object('b', 'blob' || lpad(((i / 100) %% %(B)s)::text, 60, '0')) END))),
       to_timestamp(%(base)s) + i * interval '10 milliseconds' + interval '1 microsecond',
       (i %% 1000) / 10.0, NULL, NULL
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
"""


def blob_rows() -> list[tuple[str, str]]:
    words = vocabulary()
    return [
        (
            f"blob{b:060d}",
            json.dumps({"report": f"blobword{b:04d} " + " ".join(words[(b * 5 + j) % VOCAB] for j in range(60))}),
        )
        for b in range(BLOBS)
    ]


def fill(n: int) -> dict[str, Any]:
    """Runs, blobs and N checkpoints, indexed (SQLite: queued by the triggers, then indexed)."""
    from datetime import UTC, datetime, timedelta

    from django.db import connection, transaction

    from runs import search_index
    from runs.models import Blob, Run, RunStatus

    base = datetime.fromtimestamp(BASE_EPOCH, UTC)
    runs = (n + PER_RUN - 1) // PER_RUN
    t = time.perf_counter()
    with transaction.atomic():
        Blob.objects.bulk_create([Blob(hash=h, data=d) for h, d in blob_rows()])
        for a in range(0, runs, 20_000):
            Run.objects.bulk_create(
                [
                    Run(
                        id=f"00000000-0000-4000-8000-{r + 1:012x}",
                        workflow=f"workflow_{r % WORKFLOWS}",
                        status=RunStatus.SUCCEEDED,
                        created_at=base + timedelta(milliseconds=200 * r),
                        checkpoint_count=PER_RUN,
                    )
                    for r in range(a, min(runs, a + 20_000))
                ],
                batch_size=2000,
            )
    timings: dict[str, Any] = {"runs_s": round(time.perf_counter() - t, 1)}
    t = time.perf_counter()
    step = 100_000
    words = vocabulary()
    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute("CREATE TEMP TABLE v (k INTEGER PRIMARY KEY, w TEXT)")
            cur.executemany("INSERT INTO v VALUES (%s, %s)", list(enumerate(words)))
        else:
            # A bulk load: rows first, then the index in one pass (the per-row trigger cost is
            # what write_cost measures).
            cur.execute("SET synchronous_commit = off")
            cur.execute("SET maintenance_work_mem = '512MB'")
            cur.execute("ALTER TABLE runs_checkpoint DISABLE TRIGGER runs_checkpoint_search_insert")
            cur.execute("DROP INDEX runs_checkpoint_search_body")
        for a in range(0, n, step):
            hi = min(n, a + step)
            with transaction.atomic():
                if connection.vendor == "sqlite":
                    params = {"lo": a, "hi": hi, "per_run": PER_RUN, "W": WORKFLOWS, "V": VOCAB}
                    params.update(rare=RARE_MOD, deep=DEEP_MOD, B=BLOBS, base=BASE_EPOCH)
                    connection.connection.execute(SQLITE_FILL, params)  # sqlite3 named parameters
                else:
                    params = {"lo": a, "hi": hi, "per_run": PER_RUN, "W": WORKFLOWS, "V": VOCAB, "v": words}
                    params.update(rare=RARE_MOD, deep=DEEP_MOD, B=BLOBS, base=BASE_EPOCH)
                    cur.execute(PG_FILL, params)
            log(f"{connection.vendor}: {hi:,} checkpoints ({time.perf_counter() - t:.0f} s)")
        if connection.vendor == "sqlite":
            t_index = time.perf_counter()
            search_index.catch_up(connection)
            timings["sqlite_index_s"] = round(time.perf_counter() - t_index, 1)
            log(f"sqlite: indexed the queue ({timings['sqlite_index_s']} s)")
        if connection.vendor == "postgresql":
            t_index = time.perf_counter()
            for statement in search_index.POSTGRESQL_BACKFILL:
                cur.execute(statement)
            cur.execute(next(sql for sql in search_index.POSTGRESQL_INSTALL if "USING gin" in sql))
            cur.execute("ALTER TABLE runs_checkpoint ENABLE TRIGGER runs_checkpoint_search_insert")
            timings["postgresql_index_s"] = round(time.perf_counter() - t_index, 1)
            log(f"postgresql: indexed ({timings['postgresql_index_s']} s)")
            cur.execute("ANALYZE runs_checkpoint")
            cur.execute("ANALYZE runs_checkpoint_search")
            cur.execute("ANALYZE runs_run")
    timings["checkpoints_s"] = round(time.perf_counter() - t, 1)
    timings["checkpoints_per_s"] = round(n / (time.perf_counter() - t))
    return timings


def sizes() -> dict[str, Any]:
    from django.db import connection

    with connection.cursor() as cur:
        if connection.vendor == "sqlite":
            cur.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")
            by_name = dict(cur.fetchall())
            fts = sum(v for k, v in by_name.items() if k.startswith("runs_checkpoint_fts"))
            search = sum(v for k, v in by_name.items() if "runs_checkpoint_search" in k)
            table = by_name.get("runs_checkpoint", 0)
            return {"fts5_index_bytes": fts, "search_table_bytes": search, "checkpoint_table_bytes": table}
        cur.execute(
            "SELECT pg_relation_size('runs_checkpoint_search_body'), pg_total_relation_size('runs_checkpoint_search'),"
            " pg_relation_size('runs_checkpoint')"
        )
        gin, total, table = cur.fetchone()
        return {"gin_index_bytes": gin, "search_table_with_indexes_bytes": total, "checkpoint_table_bytes": table}


# -- measuring -------------------------------------------------------------------------


def timed(fn: Any, repeats: int) -> tuple[dict[str, float], Any]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    summary = {
        "median_ms": round(statistics.median(times), 2),
        "min_ms": round(min(times), 2),
        "max_ms": round(max(times), 2),
    }
    return summary, result


def plan(params: dict[str, str]) -> list[str]:
    from django.db import connection

    from runs import filters

    qs = filters.checkpoint_filters(params)[0].order_by("-created_at", "-id")[: filters.PAGE_SIZE + 1]
    sql, args = qs.query.sql_with_params()
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute("EXPLAIN (ANALYZE, TIMING OFF, SUMMARY OFF) " + sql, args)
            return [r[0].strip() for r in cur.fetchall()][:16]
        cur.execute("EXPLAIN QUERY PLAN " + sql, args)
        return [str(r[-1]) for r in cur.fetchall()]


def measure(repeats: int) -> dict[str, Any]:
    from runs import filters, search

    out: dict[str, Any] = {}
    for name, params, goal in cases():

        def page(params: dict[str, str] = params) -> Any:
            return filters.paginate(filters.checkpoint_filters(params)[0], None)

        summary, result = timed(page, repeats)
        found = search.parse(params["q"])
        assert found is not None
        highlight, marks = timed(lambda found=found, rows=result.rows: search.matches_for(rows, found), repeats)
        counts, tally = timed(lambda params=params: filters.checkpoint_counts(filters.checkpoint_filters(params)[0]), 1)
        out[name] = {
            "params": params,
            "goal_query": goal,
            **summary,
            "rows": len(result.rows),
            "rows_with_a_highlight": sum(1 for m in marks.values() if m),
            "highlight_ms": highlight["median_ms"],
            "counts_ms": counts["median_ms"],
            "counted": tally.total,
            "plan": plan(params),
        }
        log(f"{name}: {summary['median_ms']} ms, {len(result.rows)} rows (counts {counts['median_ms']} ms)")
    return out


def write_cost(count: int) -> dict[str, Any]:
    """The search index's cost per committed single-checkpoint insert (one transaction each, the
    workers' own INSERT): the triggers only queue the checkpoint. Wall time on a busy machine is
    mostly waiting, so this also reports what the triggers themselves cost: SQLite runs in this
    thread, so its CPU time with the triggers and without them (dropped, then put back);
    PostgreSQL times its trigger function itself (pg_stat_user_functions, track_functions = 'pl').
    `index_us`: what indexing the queued checkpoints then costs per checkpoint (the workers'
    background indexer, off the write path; `search_index.catch_up`, wall)."""
    import uuid
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from runs import search_index
    from runs.models import Checkpoint
    from runs.store import _sql

    sql = _sql(connection)
    run_id = "00000000-0000-4000-8000-000000000001"
    names = ("insert", "delete", "update")

    def values(i: int) -> list[Any]:
        row = {
            "id": uuid.uuid4(),
            "run_id": run_id,
            "workflow": "workflow_0",
            "seq": 10_000_000 + i,
            "snapshot_seq": 10_000_000 + i,
            "last_completed_step": "step_1",
            "input_event_type": "Event1",
            "output_event_type": "Event2",
            "input_event": {"type": "Event1", "data": {"topic": "chemistry and physics", "n": i}},
            "output_event": {"type": "Event2", "data": {"joke": f"the atom walked into a bar, asked for q{i:06d}"}},
            "state": {"version": 2, "store": {"notes": {"v": {"deep": ["said the atom", f"d{i:06d}"], "k": i}}}},
            "created_at": datetime.now(UTC),
            "duration_ms": 1.0,
            "usage": None,
            "retries": None,
        }
        return [prep(row.get(name), connection) for name, prep in sql.checkpoint_params]

    def insert(offset: int) -> tuple[float, float]:
        """(wall µs, this thread's CPU µs) per insert."""
        wall, cpu = time.perf_counter(), time.thread_time()
        for i in range(count):
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(sql.insert_checkpoint, values(offset + i))
        return (time.perf_counter() - wall) / count * 1e6, (time.thread_time() - cpu) / count * 1e6

    def triggers(on: bool) -> None:
        with connection.cursor() as cur:
            if connection.vendor == "sqlite":
                for statement in search_index.SQLITE_CHECKPOINT_TRIGGERS if on else []:
                    cur.execute(statement)
                for name in [] if on else names:
                    cur.execute(f"DROP TRIGGER {search_index.SEARCH_TABLE}_{name}")
            else:
                for name in names:
                    state = "ENABLE" if on else "DISABLE"
                    cur.execute(f"ALTER TABLE runs_checkpoint {state} TRIGGER {search_index.SEARCH_TABLE}_{name}")

    def trigger_ms_total() -> float:
        with connection.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
            cur.execute(
                "SELECT coalesce(sum(total_time), 0) FROM pg_stat_user_functions WHERE funcname = %s",
                [f"{search_index.SEARCH_TABLE}_inserted"],
            )
            return float(cur.fetchone()[0])

    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SET track_functions = 'pl'")
    kinds = ("with_wall_us", "without_wall_us", "with_cpu_us", "without_cpu_us")
    rounds: dict[str, list[float]] = {k: [] for k in kinds}
    trigger_us: list[float] = []
    index_us: list[float] = []
    search_index.catch_up(connection)
    for r in range(3):
        before = trigger_ms_total() if connection.vendor == "postgresql" else 0.0
        wall, cpu = insert(r * 2 * count)
        if connection.vendor == "postgresql":
            trigger_us.append((trigger_ms_total() - before) * 1000 / count)
        t = time.perf_counter()
        assert search_index.catch_up(connection) == count
        index_us.append((time.perf_counter() - t) / count * 1e6)
        rounds["with_wall_us"].append(wall)
        rounds["with_cpu_us"].append(cpu)
        triggers(False)
        wall, cpu = insert(r * 2 * count + count)
        rounds["without_wall_us"].append(wall)
        rounds["without_cpu_us"].append(cpu)
        triggers(True)
    Checkpoint.objects.filter(seq__gte=10_000_000).delete()
    median = {k: round(statistics.median(v), 1) for k, v in rounds.items()}
    out: dict[str, Any] = {
        "inserts_per_round": count,
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in rounds.items()},
        **median,
        "overhead_wall_us": round(median["with_wall_us"] - median["without_wall_us"], 1),
        "index_us": round(statistics.median(index_us), 1),
        "index_rounds_us": [round(v, 1) for v in index_us],
    }
    if connection.vendor == "sqlite":
        out["overhead_cpu_us"] = round(median["with_cpu_us"] - median["without_cpu_us"], 1)
    else:
        out["trigger_function_us"] = round(statistics.median(trigger_us), 1)
        out["trigger_function_rounds_us"] = [round(v, 1) for v in trigger_us]
    return out


def child(backend: str, n: int, repeats: int, writes: int) -> dict[str, Any]:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    result: dict[str, Any] = {"n": n, "fill": fill(n)}
    result["sizes"] = sizes()
    result["queries"] = measure(repeats)
    result["write_cost"] = write_cost(writes)
    return result


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("django", "psycopg"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    try:
        out["postgresql"] = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--writes", type=int, default=300, help="single inserts per write-cost round")
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.repeats, args.writes)))
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    report: dict[str, Any] = {
        "command": " ".join(["bench/search.py", *sys.argv[1:]]),
        "commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty else ""),
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
        "goal": "a selective query under 200 ms at 1,000,000 checkpoints on both databases",
    }
    for backend in args.backends.split(","):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "wfdash.settings"}
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                env["DATABASE_URL"] = f"sqlite:///{tmp}/search.sqlite3"
            else:
                for sql in ("DROP DATABASE IF EXISTS wfdash_bench_search", "CREATE DATABASE wfdash_bench_search"):
                    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", sql], check=True)
                env["DATABASE_URL"] = PG_URL
            env["WFDASH_SECRET_KEY_FILE"] = f"{tmp}/secret"
            cmd = [sys.executable, __file__, "--child", backend, "--n", str(args.n), "--repeats", str(args.repeats)]
            cmd += ["--writes", str(args.writes)]
            done = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
            if backend != "sqlite":
                drop = "DROP DATABASE wfdash_bench_search"
                subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", drop])
            if done.returncode != 0:
                report[backend] = {"error": f"exit {done.returncode}"}
                continue
            report[backend] = json.loads(done.stdout)
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    goals = {}
    for backend in args.backends.split(","):
        queries = report.get(backend, {}).get("queries", {})
        worst = max((q["median_ms"] for q in queries.values() if q["goal_query"]), default=None)
        goals[backend] = {"worst_selective_median_ms": worst, "met": worst is not None and worst < 200}
    report["goals"] = goals
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
