"""What every bench script shares: the results header, repeat statistics, physical sizes.

A results file is only evidence if it says what was measured where: `header()` records the
git commit (and whether the tree was dirty), package versions, the machine (CPU model, cores,
RAM), the load average before and after, and the settings; `median_min_max()` is the one
shape every repeated figure takes; `sqlite_physical_bytes()` / `pg_physical_bytes()` measure
table + index (+ TOAST) sizes the same way for every engine.
"""

from __future__ import annotations

import bisect
import importlib.metadata as md
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Package versions recorded in every header (missing ones read null).
PACKAGES = (
    "Django",
    "pydantic",
    "asgiref",
    "psycopg",
    "psycopg-pool",
    "llama-index-workflows",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "aiosqlite",
    "dbos",
    "SQLAlchemy",
    "pysqlite3-binary",
)
# Environment variables that change what is measured; recorded as found (unset = shipped default).
SETTINGS_ENV = ("DB_CONN_MAX_AGE", "DATABASE_URL", "REDIS_URL", "DEBUG", "WFDASH_WORKFLOWS", "OPENBLAS_CORETYPE")


def log(tag: str, msg: str) -> None:
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- statistics ------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """The p-quantile (0..1) by linear interpolation; NaN if empty."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median_min_max(values: Iterable[float | None], digits: int = 1) -> dict[str, Any]:
    """`{median, min, max, n}` over the repeats that produced a number (None/NaN skipped)."""
    xs = [float(v) for v in values if isinstance(v, int | float) and v == v]
    if not xs:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(xs), digits),
        "min": round(min(xs), digits),
        "max": round(max(xs), digits),
        "n": len(xs),
    }


def figure(values: Iterable[float | None], digits: int = 1) -> dict[str, Any]:
    """`median_min_max` plus the per-run `samples` it was taken over (None where a run had none)."""
    xs = list(values)
    return {**median_min_max(xs, digits), "samples": xs}


def completion_to_durable(step_ends: Sequence[float], durable_ends: Sequence[float]) -> list[float]:
    """For each step completion (monotonic clock), the time until the first durable write that
    completed after it: how long a step's result waits before it is safe."""
    durable = sorted(durable_ends)
    out: list[float] = []
    for end in step_ends:
        i = bisect.bisect_left(durable, end)
        if i < len(durable):
            out.append(durable[i] - end)
    return out


def intervals(stamps: Sequence[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:], strict=False)]


# -- the results header ----------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _version(package: str) -> str | None:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": ram,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def header(bench: str, mode: str, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The start of a results document; call `finish(doc)` when the measurements are done."""
    status = _git("status", "--porcelain")
    return {
        "bench": bench,
        "mode": mode,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_commit_short": _git("rev-parse", "--short", "HEAD"),
        "git_commit_date": _git("log", "-1", "--format=%cI"),
        "git_dirty": bool(status) if status is not None else None,
        "git_dirty_files": status.splitlines()[:40] if status else [],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "loadavg_before": loadavg(),
        "packages": {p: _version(p) for p in PACKAGES},
        "env": {k: os.environ.get(k) for k in SETTINGS_ENV},
        "settings": settings or {},
    }


def finish(doc: dict[str, Any], started: float) -> dict[str, Any]:
    doc["loadavg_after"] = loadavg()
    doc["wall_s"] = round(time.perf_counter() - started, 1)
    return doc


# -- physical sizes --------------------------------------------------------------------


def sqlite_physical_bytes(conn: Any, tables: Iterable[str] | None = None) -> int:
    """Pages of the given tables and their indexes (`dbstat`); every page in use when None.

    `conn` is a DB-API connection or cursor of the database file (sqlite3, Django's cursor)."""
    cur = conn if hasattr(conn, "fetchone") else conn.cursor()
    if tables is None:
        # every page in use: what dbstat would sum, also where SQLite was built without it
        cur.execute(
            "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, "
            "pragma_freelist_count, pragma_page_size"
        )
    else:
        names = list(tables)
        marks = ", ".join("?" for _ in names)
        sql = (
            "SELECT COALESCE(SUM(d.pgsize), 0) FROM dbstat d JOIN sqlite_master m ON m.name = d.name "
            f"WHERE m.tbl_name IN ({marks})"
        )
        if "django" in type(cur).__module__:
            sql = sql.replace("?", "%s")
        cur.execute(sql, names)
    return int(cur.fetchone()[0])


def pg_physical_bytes(conn: Any, tables: Iterable[str] | None = None, schema: str = "public") -> int:
    """`pg_total_relation_size` (heap + indexes + TOAST) summed over the given tables, or over
    every table of `schema` when None. `conn` is a psycopg connection or a DB-API cursor."""
    cur = conn if hasattr(conn, "fetchone") else conn.cursor()
    if tables is None:
        cur.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = %s",
            [schema],
        )
    else:
        cur.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(t::regclass)), 0) FROM unnest(%s::text[]) AS t",
            [[f"{schema}.{t}" for t in tables]],
        )
    return int(cur.fetchone()[0])


# -- PostgreSQL scratch databases ------------------------------------------------------


def pg_url(db: str) -> str:
    return PG_ADMIN_URL.rpartition("/")[0] + "/" + db


def recreate_pg(db: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    return pg_url(db)


def drop_pg(db: str) -> None:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    except Exception as exc:  # noqa: BLE001 - never fatal: the figures are already taken
        log("bench", f"could not drop database {db}: {exc}")
