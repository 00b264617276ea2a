"""Regenerate README's Performance tables from bench/results/*.json.

    python bench/tables.py                 # rewrite README.md between the markers
    python bench/tables.py --check         # exit 1 if README.md is not what the results give
    python bench/tables.py --print NAME    # print one table

README.md holds `<!-- bench:table NAME -->` ... `<!-- /bench -->`; everything between is replaced
by the table NAME renders, headed by the commit, date, mode, machine and load it was measured at.
Figures are `median (min-max)` over the repeats the results file records; ratios and goals are
computed here from the same numbers, never typed in.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
README = ROOT / "README.md"
MARKER = re.compile(r"(<!-- bench:table (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.S)

PEERS = {
    "sqlite": {
        "wfdash": "wfdash",
        "langgraph_sync": "LangGraph `SqliteSaver`",
        "langgraph_async": "LangGraph `AsyncSqliteSaver`",
        "dbos": "DBOS Transact (SQLite)",
    },
    "postgresql": {
        "wfdash": "wfdash",
        "langgraph_sync": "LangGraph `PostgresSaver` (pool)",
        "langgraph_async": "LangGraph `AsyncPostgresSaver` (pool)",
        "dbos": "DBOS Transact (PostgreSQL)",
    },
}


# -- formatting ----------------------------------------------------------------------------


def num(x: Any, digits: int = 0) -> str:
    if not isinstance(x, int | float):
        return "–"
    if digits == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def mmm(fig: Any, digits: int = 0) -> str:
    """`median (min-max)`, or the bare number for a single sample."""
    if isinstance(fig, int | float):
        return num(fig, digits)
    if not isinstance(fig, dict) or fig.get("median") is None:
        return str(fig) if isinstance(fig, str) else "–"
    med, lo, hi = fig.get("median"), fig.get("min"), fig.get("max")
    if lo is None or hi is None or lo == hi:
        return num(med, digits)
    return f"{num(med, digits)} ({num(lo, digits)}-{num(hi, digits)})"


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def provenance(doc: dict[str, Any], what: str) -> str:
    """One line: where and when these figures were measured, from whichever header the file has."""
    run = doc.get("run") or {}
    env = doc.get("environment") or {}
    commit = (
        run.get("git_commit")
        or doc.get("git_commit")
        or env.get("git_commit")
        or doc.get("commit")
        or env.get("commit")
    )
    dirty = next((d for d in (run.get("git_dirty"), doc.get("git_dirty"), env.get("git_dirty"), doc.get("dirty"))
                  if d is not None), None)  # fmt: skip
    date = str(run.get("started_at") or doc.get("started_at") or doc.get("date") or "")[:10] or "date not recorded"
    mode = run.get("mode") or doc.get("mode") or ("quick" if (doc.get("machine") or {}).get("quick") else "full")
    machine = run.get("machine") or (doc.get("machine") if isinstance(doc.get("machine"), dict) else None) or {}
    cpu = machine.get("cpu_model") or "CPU model not recorded"
    cores = machine.get("cores") or machine.get("cpus") or machine.get("cpu_count") or machine.get("nproc") or "?"
    ram = f", {machine['ram_gib']} GiB" if machine.get("ram_gib") else ""
    before = run.get("loadavg_before") or doc.get("loadavg_before") or machine.get("loadavg_at_start")
    after = run.get("loadavg_after") or doc.get("loadavg_after") or machine.get("loadavg_at_end")
    if isinstance(before, list) and isinstance(after, list):
        load_text = f"load {before[0]:.1f} before, {after[0]:.1f} after"
    elif isinstance(after, list):  # a script that only looked at the end
        load_text = f"load {after[0]:.1f} at the end"
    else:
        load_text = "load not recorded"
    where = f"commit {commit[:10]}{' (uncommitted changes)' if dirty else ''}" if commit else "commit not recorded"
    return f"*{what}: {where}, {date}, {mode} run; {cpu}, {cores} cores{ram}; {load_text}.*"


# -- tables ----------------------------------------------------------------------------------


def load_persistence() -> dict[str, Any] | None:
    doc = load("persistence")
    # a file written by the script before it compared every peer over repeats has no "bench" key
    return doc if doc and doc.get("bench") == "persistence" else None


def durable_table(backend: str) -> Callable[[], list[str]]:
    def render() -> list[str]:
        doc = load_persistence()
        if not doc or backend not in doc.get("results", {}):
            return ["*(no results yet: `python bench/all.py --quick --only persistence`)*"]
        engines = doc["results"][backend]
        peers = PEERS[backend]
        names = [e for e in peers if e in engines]
        sizes = doc.get("settings", {}).get("sizes", {})
        reps = sizes.get("repeats", "?")
        rows: list[tuple[str, str, int]] = [
            ("durable step p50, µs", "step_p50_us", 0),
            ("durable step p99, µs", "step_p99_us", 0),
            ("step completion to durable, p50, µs", "completion_to_durable_p50_us", 0),
            ("step completion to durable, p99, µs", "completion_to_durable_p99_us", 0),
            (f"{num(sizes.get('runs'))} three-step runs, 50 in flight: runs/s (higher is better)", "runs_per_s", 0),
            (f"{num(sizes.get('concurrent'))} concurrent runs of 3 × 100 ms steps: s (ideal 0.3)", "concurrent_s", 2),
            ("logical bytes per step", "logical_bytes_per_step", 0),
            ("physical bytes per step (tables + indexes)", "physical_bytes_per_step", 0),
            ("same, logical, with an unchanging 100 KB value", "logical_bytes_per_step_100kb", 0),
            ("same, physical, with an unchanging 100 KB value", "physical_bytes_per_step_100kb", 0),
        ]
        ratios = doc.get("ratios_vs_best_peer", {}).get(backend, {})
        out = [provenance(doc, f"{backend}, median (min-max) of {reps} repeats")]
        out.append("| | " + " | ".join(peers[n] for n in names) + " | wfdash / best peer (below 1: wfdash less) |")
        out.append("|---" * (len(names) + 2) + "|")
        for label, key, digits in rows:
            cells = []
            for n in names:
                e = engines[n]
                cells.append(mmm(e.get("figures", {}).get(key), digits) if "figures" in e else e.get("status", "–"))
            r = ratios.get(key)
            ratio = f"{r['ratio']:.2f} ({peers.get(r['best_peer'], r['best_peer'])})" if r else "–"
            out.append(f"| {label} | " + " | ".join(cells) + f" | {ratio} |")
        return out

    return render


def durable_goals() -> list[str]:
    doc = load_persistence()
    if not doc:
        return ["*(no results yet)*"]
    out = ["| goal (same run) | wfdash | best peer | ratio | limit | |", "|---|---|---|---|---|---|"]
    for name, g in doc.get("goals", {}).items():
        backend, metric = name.split(".", 1)
        label = f"{backend}: durable step {metric.split('_')[1]}"
        peer = PEERS.get(backend, {}).get(g.get("best_peer", ""), g.get("best_peer", "–"))
        out.append(
            f"| {label} | {num(g.get('wfdash'))} µs | {num(g.get('peer'))} µs ({peer}) "
            f"| {g.get('ratio', '–')} | ≤ {g['max_ratio']} | {'met' if g.get('met') else '**MISSED**'} |"
        )
    return out


def engine_table() -> list[str]:
    doc = load("engine")
    if not doc:
        return ["*(no results yet)*"]
    engines = [("wfdash", "wfdash"), ("llama_index_workflows", "llama-index-workflows"), ("langgraph", "LangGraph")]

    def fig(case: dict[str, Any], key: str, digits: int = 1) -> str:
        v = case.get(key)
        if isinstance(v, str):
            return "over the cap" if v.startswith("skipped") else v
        return mmm({"median": v, "min": case.get(f"{key}_min"), "max": case.get(f"{key}_max")}, digits)

    def pair(case: dict[str, Any], unit: str, digits: int = 1) -> str:
        return f"{fig(case, f'bare_{unit}', digits)} / {fig(case, f'checkpointed_{unit}', digits)}"

    out = [provenance(doc, "median (min-max) of the repeats")]
    out.append("| workload (bare / in-memory checkpoints) | " + " | ".join(n for _, n in engines) + " |")
    out.append("|---" * (len(engines) + 1) + "|")
    for shape, label in (("chain_loop", "one step looping {n} times, µs per step"),
                         ("chain_distinct", "{n} distinct steps, µs per step")):  # fmt: skip
        for n in sorted(doc.get(shape, {}).get("wfdash", {}), key=int):
            if n not in ("10", "1000"):
                continue
            cells = [pair(doc[shape].get(e, {}).get(n, {}), "us_per_step") for e, _ in engines]
            out.append(f"| {label.format(n=n)} | " + " | ".join(cells) + " |")
    for n, row in sorted(doc.get("fanout", {}).items(), key=lambda kv: int(kv[0])):
        cells = [pair(row.get(e, {}), "ms_per_run") for e, _ in engines]
        out.append(f"| fan-out of {n} events, 10 workers, ms per run | " + " | ".join(cells) + " |")
    runs = doc.get("runs_200_concurrency_50", {})
    cells = [pair(runs.get(e, {}), "runs_per_s", 0) for e, _ in engines]
    out.append("| 200 three-step runs, 50 in flight, runs/s | " + " | ".join(cells) + " |")
    snap = doc.get("snapshot_bytes", {})
    cells = [f"{num(snap.get(e, {}).get('10'))} / {num(snap.get(e, {}).get('1000'))}" for e, _ in engines]
    out.append("| snapshot bytes at step 10 / step 1000 | " + " | ".join(cells) + " |")
    return out


def shapes_table() -> list[str]:
    doc = load("shapes")
    if not doc:
        return ["*(no results yet)*"]
    res = doc.get("results", {})
    reps = "3-5"
    out = [provenance(doc, f"median (min-max) of {reps} repeats")]
    out.append("| shape | N or steps | wfdash | LangGraph (`Send`; its savers) | llama-index-workflows 1.3 |")
    out.append("|---|---|---|---|---|")

    def cell(case: Any, t: str, b: str, digits: int = 2) -> str:
        if not isinstance(case, dict):
            return "–"
        if str(case.get("status", "")).startswith("skipped"):
            return "over the cap"
        if str(case.get("status", "")).startswith("error"):
            return "error"
        return f"{mmm(case.get(t), digits)} ms / {mmm(case.get(b), 0)} B"

    for backend, bytes_key in (("memory", "bytes_per_event"), ("sqlite", "physical_bytes_per_event"),
                               ("postgresql", "physical_bytes_per_event")):  # fmt: skip
        sizes = sorted({int(n) for e in res.get("fanout", {}).values() for n in e.get(backend, {})})
        for n in sizes:
            key = str(n)
            c = [cell(res["fanout"].get(e, {}).get(backend, {}).get(key), "ms_per_event", bytes_key)
                 for e in ("wfdash", "langgraph", "llama")]  # fmt: skip
            if backend != "memory":
                c[2] = "(no durable store)"
            what = "bytes" if backend == "memory" else "physical bytes"
            out.append(f"| fan-out, {backend}: ms / {what} per event | {n:,} | " + " | ".join(c) + " |")
    for backend in ("sqlite", "postgresql"):
        sizes = sorted({int(n) for e in res.get("chain", {}).values() for n in e.get(backend, {})})
        for n in sizes:
            key = str(n)
            c = [cell(res["chain"].get(e, {}).get(backend, {}).get(key), "ms_per_step", "physical_bytes_per_step")
                 for e in ("wfdash", "langgraph")]  # fmt: skip
            out.append(f"| durable chain, {backend}: ms / physical bytes per step | {n:,} | " + " | ".join(c) + " | |")
    for backend, forks in res.get("fork", {}).items():
        for shape, case in forks.items():
            if isinstance(case, dict):
                out.append(f"| fork to first step, {backend}, {shape} (ms) | | "
                           f"{mmm(case.get('first_step_latency_ms'), 1)} | | |")  # fmt: skip
    out += ["", "| goal (this run) | met |", "|---|---|"]
    for name, g in doc.get("goals", {}).items():
        out.append(f"| {name} | {'met' if isinstance(g, dict) and g.get('met') else '**MISSED**'} |")
    return out


def pages_table() -> list[str]:
    doc = load("pages")
    if not doc:
        return ["*(no results yet)*"]
    if "machine" in doc and "loadavg" in doc["machine"] and "loadavg_before" not in doc:
        doc["loadavg_before"] = doc["loadavg_after"] = list(doc["machine"]["loadavg"])
    out = [provenance(doc, "median (min-max)"), "| run page | HTML | server | Chromium load |", "|---|---|---|---|"]
    for n, r in sorted(doc.get("results", {}).items(), key=lambda kv: int(kv[0])):
        out.append(
            f"| {int(n):,} checkpoints | {num(r['html_bytes'] / 1000)} KB | {mmm(r.get('server_ms'), 1)} ms "
            f"| {mmm(r.get('chromium_load_ms'))} ms |"
        )
    return out


LIVE_GOAL_CLIENTS = 200
LIVE_LAYERS = {
    "webworker": "embedded default (`serve` = webworker: daphne with the worker on its loop), SQLite",
    "memory": "daphne + separate wfworker, in-memory layer, SQLite",
    "redis": "Redis layer, PostgreSQL",
}


def _repeats_note(rows: list[dict[str, Any]]) -> str:
    """How many runs each cell is: "median (min-max) of N runs", or the old files' "single run"."""
    counts = sorted({int(r["repeats"]) for r in rows if isinstance(r.get("repeats"), int)})
    if not counts:
        return "single run per cell (file written before repeats)"
    return f"median (min-max) of {'/'.join(map(str, counts))} runs per cell"


def live_table() -> list[str]:
    doc = load("live")
    if not doc or not doc.get("latency_summary"):
        return ["*(no results yet)*"]
    doc.setdefault("loadavg_before", (doc.get("machine_at_start") or {}).get("loadavg"))
    doc.setdefault("loadavg_after", (doc.get("machine_at_end") or {}).get("loadavg"))
    doc.setdefault("machine", doc.get("machine_at_start"))
    summary = {k: {c: s for c, s in v.items() if c.startswith("clients_")} for k, v in doc["latency_summary"].items()}
    cells = [s for layer in summary.values() for s in layer.values() if isinstance(s, dict)]
    clients = sorted({int(k.split("_")[1]) for layer in summary.values() for k in layer})
    repeated = any(isinstance(c.get("repeats"), int) for c in cells)
    clock = "ms on one machine's monotonic clock" if repeated else "ms, wall clock from the stored created_at"
    out = [provenance(doc, f"{_repeats_note(cells)}; {clock}")]
    out.append("Each cell: delivery from the step's completion (the engine handing the checkpoint to the store) "
               "to the page's socket, p50 / p99; then p99 from the batch commit.")  # fmt: skip
    out.append("")
    out.append("| layer | " + " | ".join(f"{c} clients" for c in clients) + " |")
    out.append("|---" * (len(clients) + 1) + "|")
    for layer, row_cells in summary.items():
        row = []
        for c in clients:
            s = row_cells.get(f"clients_{c}", {})
            if not s:
                row.append("–")
                continue
            commit = mmm(s.get("p99_from_commit_ms"), 1)
            loss = "" if not s.get("lost") and not s.get("duplicates") and not s.get("out_of_order") else " **LOSS**"
            row.append(f"{mmm(s.get('p50_ms'), 1)} / {mmm(s.get('p99_ms'), 1)} (commit p99 {commit}){loss}")
        out.append(f"| {LIVE_LAYERS.get(layer, layer)} | " + " | ".join(row) + " |")
    out += ["", *_live_goals(summary)]
    return out


def _median(fig: Any) -> float | None:
    value = fig.get("median") if isinstance(fig, dict) else fig
    return float(value) if isinstance(value, int | float) else None


def _live_goals(summary: dict[str, dict[str, Any]]) -> list[str]:
    goal = f"Goal: p99 from step completion under 50 ms with {LIVE_GOAL_CLIENTS} clients on Redis: "
    redis = summary.get("redis", {}).get(f"clients_{LIVE_GOAL_CLIENTS}")
    if not redis:
        lines = [goal + f"not measured at {LIVE_GOAL_CLIENTS} clients (full mode measures it)."]
    else:
        p99 = _median(redis.get("p99_ms"))
        clean = not redis.get("lost") and not redis.get("duplicates") and not redis.get("out_of_order")
        lines = [goal + f"{mmm(redis.get('p99_ms'), 1)} ms, {met(p99 is not None and p99 < 50 and clean)}."]
    embedded = summary.get("webworker", {})
    if embedded:
        worst = max(embedded, key=lambda k: int(k.split("_")[1]))
        p50 = _median(embedded[worst].get("p50_ms"))
        lines.append(f"Goal: embedded live p50 under 50 ms ({worst.split('_')[1]} clients): "
                     f"{mmm(embedded[worst].get('p50_ms'), 1)} ms, {met(p50 is not None and p50 < 50)}.")  # fmt: skip
    else:
        lines.append("Goal: embedded live p50 under 50 ms: not measured (no `webworker` layer in this file).")
    return [" ".join(lines)]


def explorer_table() -> list[str]:
    doc = load("live")
    if not doc or not doc.get("explorer"):
        return ["*(no results yet)*"]
    doc.setdefault("machine", doc.get("machine_at_start"))
    cols: list[tuple[str, str, dict[str, Any]]] = []
    for backend, b in doc["explorer"].items():
        for rows, s in sorted(b.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
            cols.append((backend, rows, s.get("queries", {})))
    names = list(dict.fromkeys(q for _, _, qs in cols for q in qs))
    out = [provenance(doc, "median (max) of 5 timings, ms, 50 rows a page")]
    out.append("| query | " + " | ".join(f"{b} {int(r):,}" for b, r, _ in cols) + " |")
    out.append("|---" * (len(cols) + 1) + "|")
    for q in names:
        cells = []
        for _, _, qs in cols:
            c = qs.get(q) or {}
            cells.append(f"{num(c.get('median_ms'), 1)} ({num(c.get('max_ms'), 1)})" if c else "–")
        out.append(f"| {q.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return out


def load_drill_table() -> list[str]:
    doc = load("load_drill")
    if not doc:
        return ["*(no results yet)*"]
    out: list[str] = []
    for name, v in doc.get("variants", {}).items():
        d = v.get("delivery", {})
        cfg = v.get("config", {})
        v.setdefault("loadavg_before", (v.get("machine_at_start") or {}).get("loadavg"))
        v.setdefault("loadavg_after", (v.get("machine_at_end") or {}).get("loadavg"))
        v.setdefault("machine", v.get("machine_at_start"))
        v.setdefault("run", doc.get("run"))
        reps = v.get("repeats")
        if isinstance(reps, int):
            what, summed = f"median (min-max) of {reps} drills; ms on one machine's monotonic clock", " (summed)"
        else:
            what, summed = "single run; ms, wall clock from the stored created_at", ""
        out.append(provenance(v, f"variant {name}, {what}"))
        out += ["| | |", "|---|---|"]
        out.append(f"| runs / clients / seconds | {cfg.get('runs')} / {v.get('clients')} / {cfg.get('duration_s')} |")
        per_run = "".join(f" (per drill {d[k + '_per_run']})" for k in ("lost",) if d.get(k + "_per_run"))
        out.append(f"| delivered, lost, duplicated, out of order{summed} | {num(d.get('received'))}, "
                   f"{d.get('lost')}, {d.get('duplicates')}, {d.get('out_of_order')}{per_run} |")  # fmt: skip
        # Old single-run files measured from the stored created_at (taken at the step's completion).
        done = d.get("from_step_completion") or d.get("from_created_at", {})
        fcm = d.get("from_commit", {})
        out.append(f"| delivery from the step's completion (engine hands the checkpoint to the store) to the "
                   f"client, p50 / p99 ms | {mmm(done.get('p50_ms'), 1)} / {mmm(done.get('p99_ms'), 1)} |")  # fmt: skip
        note = (
            f" (min {num(fcm['min_ms'], 1)}: the commit stamp is taken after the commit returns, so it can lag)"
            if isinstance(fcm.get("min_ms"), int | float)
            else ""
        )
        out.append(f"| delivery from the batch commit returning in the worker to the client, p50 / p99 ms{note} | "
                   f"{mmm(fcm.get('p50_ms'), 1)} / {mmm(fcm.get('p99_ms'), 1)} |")  # fmt: skip
        cut = v.get("at_cutoff", {})
        if v.get("committed_per_s_during_drill") is not None:
            out.append(f"| checkpoints committed per second | {mmm(v['committed_per_s_during_drill'])} |")
        elif cut.get("elapsed_s"):
            out.append(f"| checkpoints committed per second | {num(cut['committed'] / cut['elapsed_s'])} |")
    return out or ["*(no variants in the results file)*"]


def store_profile_table() -> list[str]:
    doc = load("profile_store")
    if not doc or not doc.get("results"):
        return ["*(no results yet: `python bench/all.py --quick --only profile_store`)*"]
    reps = (doc.get("settings") or {}).get("repeats", "?")
    out = [provenance(doc, f"wfdash only, median (min-max) of {reps} alternating repeats")]
    out += ["| | write path | durable step p50 / p99, µs | Worker, three-step runs/s |", "|---|---|---|---|"]
    names = {
        "sync_to_async": "before: a task awaits each batch through `sync_to_async`",
        "shipped": "now: each batch handed to asgiref's sync thread with a callback (no task)",
        "own_thread": "not taken: a task, and a writer thread with its own connection",
    }
    for backend, r in doc["results"].items():
        for path, v in r.get("write_paths", {}).items():
            out.append(f"| {backend} | {names.get(path, path)} | {mmm(v['step_p50_us'])} / {mmm(v['step_p99_us'])} "
                       f"| {mmm(v['runs_per_s'])} |")  # fmt: skip
    out += ["", "| per step, p50 µs | " + " | ".join(doc["results"]) + " |", "|---" * (len(doc["results"]) + 1) + "|"]
    parts = (
        ("engine and snapshot", "with_indexes", "engine_and_snapshot"),
        ("to the database thread", "with_indexes", "put_to_thread"),
        ("SQL and commit", "with_indexes", "sql_and_commit_in_thread"),
        ("back to the step", "with_indexes", "thread_to_put_done"),
        ("SQL and commit, no secondary index on checkpoints", "without_secondary_indexes", "sql_and_commit_in_thread"),
        ("bare round trip: sync_to_async", "hops", "asgiref_sync_to_async"),
        ("bare round trip: run_in_executor", "hops", "run_in_executor_one_thread"),
        ("bare round trip: own thread and queue", "hops", "own_thread_simple_queue"),
    )
    for label, section, key in parts:
        cells = [num((r.get(section, {}).get(key) or {}).get("p50_us"), 1) for r in doc["results"].values()]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def script_header(doc: dict[str, Any]) -> dict[str, Any]:
    """Fill the header fields `provenance` reads from what a script wrote itself, for a file not
    written by bench/all.py (its `run` header, when there, still wins): `commit` as "abc123
    (with uncommitted changes)" or "abc123+uncommitted changes", the load as a float or a list,
    the core count as `cpus`."""
    commit = doc.get("commit")
    if isinstance(commit, str) and commit and "git_commit" not in doc:
        doc["git_commit"] = re.split(r"[\s+]", commit, maxsplit=1)[0]
        doc.setdefault("git_dirty", bool(doc.get("uncommitted_changes")) or "uncommitted" in commit)
    if "run" not in doc:
        doc.setdefault("mode", "standalone")  # the script's own command, not all.py's quick or full
    machine = doc.get("machine") if isinstance(doc.get("machine"), dict) else None
    start, end = doc.get("machine_at_start") or {}, doc.get("machine_at_end") or {}
    if machine is None:
        machine = {"cpus": start.get("cpus") or doc.get("cpus")}
        doc["machine"] = machine
    for key, value in (
        ("loadavg_before", machine.get("loadavg_at_start") or start.get("loadavg")),
        ("loadavg_after", machine.get("loadavg_at_end") or end.get("loadavg") or doc.get("loadavg")),
    ):
        if isinstance(value, int | float):
            value = [value]
        if isinstance(value, list) and value:
            doc.setdefault(key, [float(x) for x in value])
    return doc


def met(ok: bool) -> str:
    return "met" if ok else "**MISSED**"


def repeats_of(doc: dict[str, Any], default: Any = "?") -> Any:
    """`--repeats N` from the command the file records (all.py's header, or the script's own)."""
    command = str((doc.get("run") or {}).get("settings", {}).get("command") or doc.get("command") or "")
    m = re.search(r"--repeats[ =](\d+)", command)
    return int(m.group(1)) if m else default


SEARCH_GOAL_N = 1_000_000
SEARCH_GOAL_MS = 200


def search_table() -> list[str]:
    doc = load("search")
    backends = [b for b in ("sqlite", "postgresql") if isinstance((doc or {}).get(b), dict)]
    if not doc or not backends:
        return ["*(no results yet: `python bench/all.py --quick --only search`)*"]
    script_header(doc)
    ns = {b: doc[b].get("n") for b in backends}
    out = [provenance(doc, f"median (min-max) of {repeats_of(doc, 5)} repeats, ms for a page of 50 rows")]
    sizes = ", ".join(f"{b} {num(n)}" for b, n in ns.items())
    out.append("")
    out.append(f"Checkpoints searched: {sizes}.")
    if any(not isinstance(n, int) or n < SEARCH_GOAL_N for n in ns.values()):
        out[-1] += (
            f" **Measured at {', '.join(num(n) for n in dict.fromkeys(ns.values()))}: the goal is stated at "
            f"{SEARCH_GOAL_N:,}** — run `python bench/all.py --full --only search`."
        )
    out.append("")
    out.append("| query | selective | " + " | ".join(f"{b}: page ms | {b}: highlight ms" for b in backends) + " |")
    out.append("|---" * (2 + 2 * len(backends)) + "|")
    cases = list(dict.fromkeys(c for b in backends for c in doc[b].get("queries", {})))
    for case in cases:
        first = next(doc[b]["queries"][case] for b in backends if case in doc[b].get("queries", {}))
        params = " ".join(f"{k}={v}" for k, v in (first.get("params") or {}).items())
        cells = []
        for b in backends:
            q = doc[b].get("queries", {}).get(case)
            if not isinstance(q, dict):
                cells += ["–", "–"]
                continue
            page = mmm({"median": q.get("median_ms"), "min": q.get("min_ms"), "max": q.get("max_ms")}, 1)
            cells += [f"{page}, {num(q.get('rows'))} rows", num(q.get("highlight_ms"), 1)]
        selective = "yes" if first.get("goal_query") else "no"
        out.append(f"| {case.replace('_', ' ')} (`{params}`) | {selective} | " + " | ".join(cells) + " |")
    out += ["", "| | " + " | ".join(backends) + " |", "|---" * (len(backends) + 1) + "|"]

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> None:
        out.append(f"| {label} | " + " | ".join(fn(doc[b]) for b in backends) + " |")

    def mb(d: dict[str, Any], *keys: str) -> str:
        v = next((d.get("sizes", {}).get(k) for k in keys if d.get("sizes", {}).get(k) is not None), None)
        return f"{num(v / 1e6, 1)} MB" if isinstance(v, int | float) else "–"

    row(
        "fill, checkpoints/s (SQLite: inserted with the triggers on, then the queue indexed)",
        lambda d: num(d.get("fill", {}).get("checkpoints_per_s")),
    )
    row("search index (FTS5 / GIN)", lambda d: mb(d, "fts5_index_bytes", "gin_index_bytes"))
    row("search side table", lambda d: mb(d, "search_table_bytes", "search_table_with_indexes_bytes"))
    row("checkpoint table", lambda d: mb(d, "checkpoint_table_bytes"))
    wc = "write_cost"
    row(
        "one checkpoint insert with / without the triggers (they queue it), wall µs",
        lambda d: f"{num(d.get(wc, {}).get('with_wall_us'))} / {num(d.get(wc, {}).get('without_wall_us'))}",
    )
    row("the triggers' own time per insert, µs (SQLite: CPU added; PostgreSQL: the function's time)",
        lambda d: num(d.get(wc, {}).get("overhead_cpu_us", d.get(wc, {}).get("trigger_function_us"))))  # fmt: skip
    row("indexing a queued checkpoint afterwards (the workers' background indexer), wall µs",
        lambda d: num(d.get(wc, {}).get("index_us")))  # fmt: skip
    out += ["", f"| goal: a selective query under {SEARCH_GOAL_MS} ms at {SEARCH_GOAL_N:,} checkpoints | "
            "measured at | worst selective median, ms | |", "|---|---|---|---|"]  # fmt: skip
    for b in backends:
        if "error" in doc[b]:
            out.append(f"| {b} | – | {doc[b]['error']} | **MISSED** (no result) |")
            continue
        worst = (doc.get("goals") or {}).get(b, {}).get("worst_selective_median_ms")
        if worst is None:
            qs = [q.get("median_ms") for q in doc[b].get("queries", {}).values() if q.get("goal_query")]
            worst = max((x for x in qs if isinstance(x, int | float)), default=None)
        n = ns[b]
        if not isinstance(worst, int | float) or worst >= SEARCH_GOAL_MS:
            verdict = "**MISSED**"
        elif isinstance(n, int) and n >= SEARCH_GOAL_N:
            verdict = "met"
        else:
            verdict = f"not decided: under {SEARCH_GOAL_MS} ms at {num(n)}, the goal is at {SEARCH_GOAL_N:,}"
        out.append(f"| {b} | {num(n)} | {num(worst, 1)} | {verdict} |")
    return out


def stream_table() -> list[str]:
    doc = load("stream")
    layers = (doc or {}).get("layers") or {}
    if not doc or not layers:
        return ["*(no results yet: `python bench/all.py --quick --only stream`)*"]
    script_header(doc)
    goal = doc.get("goal_ms", 50)
    reps = (doc.get("settings") or {}).get("repeats", "?")
    names = {"memory": "embedded (`webworker`, in-memory layer)", "redis": "Redis (daphne + `wfworker`)",
             "memory-separate": "in-memory, separate `wfworker` (the shape before `webworker`)"}  # fmt: skip

    def fig(layer: dict[str, Any], key: str) -> dict[str, Any] | None:
        f = layer.get(key)
        if not isinstance(f, dict) or not f.get("n"):
            return None
        lo, hi = (f.get("range") or [None, None])[:2]
        return {"median": f.get("median"), "min": f.get("min", lo), "max": f.get("max", hi)}

    out = [provenance(doc, f"ms, median (min-max) over {reps} repeats of each run's figure")]
    heads = [names.get(n, n) + (f" ({v['repeats']} repeats)" if "repeats" in v else "") for n, v in layers.items()]
    out.append("| | " + " | ".join(heads) + " |")
    out.append("|---" * (len(layers) + 1) + "|")
    rows = (
        ("first token: the fake server's write to the page's receipt", "first_token_ms"),
        ("every token of the answer, p50", "token_ms_p50"),
        ("every token of the answer, p99", "token_ms_p99"),
        ("checkpoint: commit to the page's receipt, p50", "checkpoint_from_commit_ms_p50"),
        ("checkpoint: commit to the page's receipt, p99", "checkpoint_from_commit_ms_p99"),
    )
    for label, key in rows:
        cells = []
        for layer in layers.values():
            if "error" in layer:
                cells.append("error (see stderr)")
            else:
                f = fig(layer, key)
                cells.append(mmm(f, 1) if f else "none reached the page")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    cpu = [", ".join(f"{p} {num(s, 1)}" for p, s in (layer.get("cpu_s") or {}).items()) or "–"
           for layer in layers.values()]  # fmt: skip
    out.append("| CPU seconds of the server processes, whole run | " + " | ".join(cpu) + " |")
    out += ["", "| goal (this run; medians) | limit | measured | |", "|---|---|---|---|"]
    for label, layer, key in (
        ("first token on the embedded page", "memory", "first_token_ms"),
        ("first token on the page over Redis", "redis", "first_token_ms"),
        ("embedded live checkpoint p50, from commit", "memory", "checkpoint_from_commit_ms_p50"),
    ):
        f = fig(layers.get(layer) or {}, key)
        median = f.get("median") if f else None
        ok = isinstance(median, int | float) and median < goal
        measured = f"{num(median, 1)} ms" if isinstance(median, int | float) else "not measured"
        out.append(f"| {label} | < {num(goal)} ms | {measured} | {met(ok)} |")
    return out


TRACING_VARIANTS = {
    "off_not_installed": "not installed (imports blocked)",
    "off_installed": "installed, not configured (off)",
    "sdk_disabled": "configured, `OTEL_SDK_DISABLED=true`",
    "on": "on: a span per step, exported over OTLP/HTTP",
}


def tracing_table() -> list[str]:
    doc = load("tracing")
    variants = (doc or {}).get("variants") or {}
    if not doc or not variants:
        return ["*(no results yet: `python bench/all.py --quick --only tracing`)*"]
    script_header(doc)

    def fig(v: dict[str, Any]) -> dict[str, Any]:
        return {"median": v.get("us_per_step_median"), "min": v.get("us_per_step_min"),
                "max": v.get("us_per_step_max")}  # fmt: skip

    steps = num(doc.get("steps_per_run"))
    out = [provenance(doc, f"µs per step of a {steps}-step chain checkpointed in memory, median (min-max) of all runs")]
    out += ["| OpenTelemetry | µs per step | runs |", "|---|---|---|"]
    for name, v in variants.items():
        out.append(f"| {TRACING_VARIANTS.get(name, name)} | {mmm(fig(v), 1)} | {num(v.get('runs'))} |")
    base = variants.get("off_not_installed")
    on = variants.get("on")
    if base and on and isinstance(on.get("us_per_step_median"), int | float):
        out.append(f"| on minus installed-off (median) | {num(doc.get('on_minus_off_us_per_step'), 1)} | |")
    out += ["", "| goal | |", "|---|---|"]
    goal = "tracing off costs nothing measurable: installed-off and not installed each within the other's min-max"
    off = variants.get("off_installed")
    if not base or not off:
        out.append(f"| {goal} | **MISSED** (not measured) |")
        return out

    def within(x: dict[str, Any], y: dict[str, Any]) -> bool:
        vals = (x["median"], y["min"], y["max"])
        return all(isinstance(v, int | float) for v in vals) and y["min"] <= x["median"] <= y["max"]

    out.append(f"| {goal} | {met(within(fig(base), fig(off)) and within(fig(off), fig(base)))} |")
    return out


def experiments_table() -> list[str]:
    doc = load("experiments")
    cases = (doc or {}).get("cases") or []
    if not doc or not cases:
        return ["*(no results yet: `python bench/all.py --quick --only experiments`)*"]
    script_header(doc)
    out = [provenance(doc, f"SQLite, Django's test client, ms, median of {repeats_of(doc, 5)} repeats")]
    out += ["| variants | result characters | create the sweep | matrix poll after a change | matrix bytes "
            "| poll with nothing changed (204) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for c in cases:
        out.append(
            f"| {num(c.get('variants'))} | {num(c.get('result_chars'))} | {num(c.get('create_sweep_ms'), 1)} "
            f"| {num(c.get('matrix_poll_ms'), 1)} | {num(c.get('matrix_poll_bytes'))} "
            f"| {num(c.get('unchanged_poll_ms'), 1)} |"
        )
    return out


def webhooks_table() -> list[str]:
    docs = {n: d for n in ("sqlite", "postgres") if (d := load(f"webhooks_{n}"))}
    if not docs:
        return ["*(no results yet: `python bench/all.py --quick --only webhooks_sqlite,webhooks_postgres`)*"]
    out = []
    for name, doc in docs.items():
        out.append(provenance(script_header(doc), f"{doc.get('database', name)}, {num(doc.get('runs'))} runs, one run"))
        out.append("")
    names = [str(d.get("database", n)) for n, d in docs.items()]
    out += ["| | " + " | ".join(names) + " |", "|---" * (len(docs) + 1) + "|"]

    def trigger(d: dict[str, Any]) -> str:
        a, b = d.get("status_change_us_no_endpoint"), d.get("status_change_us_with_endpoint")
        return num(b - a, 1) if isinstance(a, int | float) and isinstance(b, int | float) else "–"

    def field(key: str, digits: int = 0) -> Callable[[dict[str, Any]], str]:
        return lambda d: num(d.get(key), digits)

    rows: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
        ("a run's status change, µs (median): no active endpoint", field("status_change_us_no_endpoint", 1)),
        ("the same with an active endpoint (the trigger records it)", field("status_change_us_with_endpoint", 1)),
        ("what the trigger adds, µs", trigger),
        ("transitions dispatched into deliveries per second", field("dispatch_per_s")),
        ("deliveries signed, POSTed and recorded per second (one worker)", field("deliver_per_s")),
    )
    for label, fn in rows:
        out.append(f"| {label} | " + " | ".join(fn(d) for d in docs.values()) + " |")
    return out


def code_version_table() -> list[str]:
    doc = load("code_version")
    flows = {k: v for k, v in (doc or {}).items() if isinstance(v, dict) and "steps" in v}
    if not doc or not flows:
        return ["*(no results yet: `python bench/all.py --quick --only code_version`)*"]
    script_header(doc)
    out = [provenance(doc, "median of 5 timings (a cached manifest: mean of 10,000)")]
    out += ["| workflow | steps | manifest, first build ms | cached µs | manifest bytes | compare two, ms |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name, f in flows.items():
        out.append(
            f"| {name} | {num(f.get('steps'))} | {num(f.get('manifest_first_build_ms'), 1)} "
            f"| {num(f.get('manifest_cached_us'), 2)} | {num(f.get('manifest_json_bytes'))} "
            f"| {num(f.get('compare_ms'), 2)} |"
        )
    return out


TABLES: dict[str, Callable[[], list[str]]] = {
    "durable-sqlite": durable_table("sqlite"),
    "durable-postgresql": durable_table("postgresql"),
    "durable-goals": durable_goals,
    "store-profile": store_profile_table,
    "engine": engine_table,
    "shapes": shapes_table,
    "pages": pages_table,
    "live": live_table,
    "explorer": explorer_table,
    "load-drill": load_drill_table,
    "search": search_table,
    "stream": stream_table,
    "tracing": tracing_table,
    "experiments": experiments_table,
    "webhooks": webhooks_table,
    "code-version": code_version_table,
}


def render(text: str) -> str:
    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        fn = TABLES.get(name)
        body = "\n".join(fn()) if fn else f"*(unknown table {name!r}: see bench/tables.py)*"
        return f"{m.group(1)}{body}\n{m.group(4)}"

    return MARKER.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if README.md differs from the results")
    parser.add_argument("--print", dest="show", metavar="NAME", choices=sorted(TABLES))
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    if args.show:
        print("\n".join(TABLES[args.show]()))
        return 0
    text = args.readme.read_text()
    new = render(text)
    if args.check:
        return 0 if new == text else 1
    args.readme.write_text(new)
    found = [m.group("name") for m in MARKER.finditer(new)]
    print(f"bench/tables.py: {len(found)} tables written to {args.readme.name}: {', '.join(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
