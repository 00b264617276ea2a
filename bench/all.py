"""Run every benchmark, then regenerate README's Performance tables from the results.

    python bench/all.py --quick            # smaller sizes, 3 repeats (under 10 min on a quiet 2-CPU machine)
    python bench/all.py --full             # the published sizes
    python bench/all.py --quick --only persistence,engine
    python bench/all.py --tables-only      # just bench/tables.py over the results already there

Each entry's script prints its JSON document on stdout; it is written to bench/results/<name>.json
with a `run` header (commit, dirty flag, package versions, machine, load before/after, the exact
command). Adding a benchmark is one line in ENTRIES; an entry whose script is not there (yet) is
skipped with a message. Scripts run with the bench venv's Python (.venv-bench) when it exists.
Last, bench/plots.py redraws the growth plots from the same files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import ROOT, finish, header, log  # noqa: E402

RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Entry:
    name: str  # results file: bench/results/<name>.json
    script: str  # relative to the repository root
    quick: tuple[str, ...]
    full: tuple[str, ...]


ENTRIES = (
    Entry("engine", "bench/engine.py", ("--quick",), ()),
    Entry("persistence", "bench/persistence.py", ("--quick",), ()),
    Entry(
        "profile_store",
        "bench/profile_store.py",
        ("--steps", "200", "--runs", "100", "--repeats", "3"),
        ("--steps", "1000", "--runs", "500", "--repeats", "5"),
    ),  # fmt: skip
    Entry("shapes", "bench/shapes.py", ("--quick", "--backends", "memory,sqlite"), ()),
    Entry("pages", "bench/pages.py", ("--sizes", "100,10000", "--repeats", "3"), ()),
    Entry(
        "live",
        "bench/live.py",
        (
            "--quick",
            "--layers",
            "webworker,redis",
            "--clients",
            "1,20,200",
            "--steps",
            "40",
            "--repeats",
            "3",
            "--sqlite-sizes",
            "100000",
            "--pg-sizes",
            "100000",
        ),  # ~2.5 min: 2 layers x 1/20/200 clients (200: the goal) x 3 runs of a 2 s chain, + ~30 s explorer
        ("--layers", "webworker,memory,redis", "--clients", "1,20,50,100,200", "--repeats", "5"),
    ),  # fmt: skip
    Entry(
        "load_drill",
        "bench/load_drill.py",
        # ~80 s: 3 drills of 8 s, each on a fresh cluster (~15 s to start, ~5 s to drain)
        ("--variants", "redis", "--runs", "20", "--duration", "8", "--repeats", "3"),
        ("--variants", "redis", "--repeats", "5"),  # 5 x (60 s drill + ~30 s cluster and drain)
    ),  # fmt: skip
    # The scripts below print their document (never pass their --out: all.py writes the file).
    # Quick estimates on a quiet 2-CPU machine in the comments (bench/README.md has the loaded timings).
    Entry(
        "search",
        "bench/search.py",
        ("--n", "100000", "--repeats", "3", "--writes", "100"),  # ~1.5-2 min: fills dominate; the table says 100,000
        ("--n", "1000000"),  # the goal's size
    ),  # fmt: skip
    Entry("stream", "bench/stream.py", ("--repeats", "3"), ()),  # ~40 s: two layers, 3 + 1 runs each
    Entry("tracing", "bench/tracing.py", ("--repeats", "3", "--rounds", "2"), ()),  # ~15 s: 8 processes
    Entry("experiments", "bench/experiments.py", ("--repeats", "3"), ()),  # ~10 s
    Entry("webhooks_sqlite", "bench/webhooks.py", ("--runs", "300"), ("--runs", "1000")),  # ~10 s
    Entry(
        "webhooks_postgres", "bench/webhooks.py", ("--runs", "300", "--postgres"), ("--runs", "1000", "--postgres")
    ),  # ~15 s
    Entry("code_version", "bench/code_version.py", (), ()),  # ~10 s: the 1,000-step manifest built 6 times
)


def python() -> str:
    venv = ROOT / ".venv-bench" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def parse_json(stdout: str) -> dict[str, object]:
    """The document a script printed: all of stdout, or else its last line."""
    try:
        doc = json.loads(stdout)
    except json.JSONDecodeError:
        doc = json.loads(stdout.strip().splitlines()[-1])
    if not isinstance(doc, dict):
        raise ValueError("the script printed JSON that is not an object")
    return doc


def run_entry(entry: Entry, mode: str, timeout: float) -> str:
    """Run one entry; return a one-line outcome."""
    script = ROOT / entry.script
    if not script.exists():
        return f"skipped: {entry.script} is not in this tree"
    args = entry.quick if mode == "quick" else entry.full
    cmd = [python(), str(script), *args]
    started = time.perf_counter()
    run = header(entry.name, mode, {"command": " ".join([Path(cmd[0]).name, entry.script, *args])})
    log("all", f"{entry.name}: {' '.join(cmd[1:])}")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"FAILED: over {timeout:.0f} s (results file left as it was)"
    if proc.returncode != 0:
        return f"FAILED: exit code {proc.returncode} (results file left as it was; see stderr above)"
    try:
        doc = parse_json(proc.stdout)
    except (ValueError, IndexError) as exc:
        return f"FAILED: no JSON document on stdout ({exc})"
    doc["run"] = finish(run, started)
    out = RESULTS / f"{entry.name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(out)
    return f"ok in {doc['run']['wall_s']} s -> {out.relative_to(ROOT)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--full", action="store_true")
    mode.add_argument("--tables-only", action="store_true", help="only regenerate README's tables")
    parser.add_argument("--only", help="comma list of entry names")
    parser.add_argument("--skip", default="", help="comma list of entry names")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per entry")
    parser.add_argument("--no-tables", action="store_true", help="do not rewrite README")
    args = parser.parse_args(argv)

    outcomes: dict[str, str] = {}
    started = time.perf_counter()
    if not args.tables_only:
        wanted = set(args.only.split(",")) if args.only else {e.name for e in ENTRIES}
        skipped = set(args.skip.split(","))
        unknown = (wanted | skipped) - {e.name for e in ENTRIES} - {""}
        if unknown:
            parser.error(f"unknown entries: {', '.join(sorted(unknown))}")
        for entry in ENTRIES:
            if entry.name in wanted and entry.name not in skipped:
                outcomes[entry.name] = run_entry(entry, "quick" if args.quick else "full", args.timeout)
                log("all", f"{entry.name}: {outcomes[entry.name]}")
    if not args.no_tables:
        proc = subprocess.run([python(), str(BENCH / "tables.py")], cwd=ROOT)
        outcomes["tables"] = "ok: README.md rewritten" if proc.returncode == 0 else f"FAILED: exit {proc.returncode}"
        proc = subprocess.run([python(), str(BENCH / "plots.py")], cwd=ROOT, stdout=subprocess.DEVNULL)
        outcomes["plots"] = "ok: plots redrawn" if proc.returncode == 0 else f"FAILED: exit {proc.returncode}"
    print(f"bench/all.py finished in {time.perf_counter() - started:.0f} s")
    for name, outcome in outcomes.items():
        print(f"  {name:12} {outcome}")
    return 1 if any(o.startswith("FAILED") for o in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
