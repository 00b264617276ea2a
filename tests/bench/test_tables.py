"""bench/tables.py: README's Performance tables come from the results files, ratios and goals included."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tables", BENCH / "tables.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def _figure(median: float, lo: float, hi: float) -> dict[str, float]:
    return {"median": median, "min": lo, "max": hi, "n": 3}


def _persistence(tmp_path: Path) -> None:
    engines = {
        "wfdash": {"figures": {"step_p50_us": _figure(300, 280, 350), "step_p99_us": _figure(900, 800, 1200)}},
        "langgraph_sync": {"figures": {"step_p50_us": _figure(500, 450, 520), "step_p99_us": _figure(800, 700, 950)}},
        "dbos": {"status": "error: exit code 1 (see stderr)"},
    }
    doc = {
        "bench": "persistence",
        "mode": "quick",
        "git_commit": "0123456789abcdef",
        "git_dirty": False,
        "started_at": "2026-11-29T12:00:00Z",
        "machine": {"cpu_model": "Test CPU", "cores": 2, "ram_gib": 24.0},
        "loadavg_before": [0.5, 0.4, 0.3],
        "loadavg_after": [0.9, 0.5, 0.3],
        "settings": {"sizes": {"repeats": 3, "runs": 100, "concurrent": 100}},
        "results": {"sqlite": engines},
        "ratios_vs_best_peer": {
            "sqlite": {"step_p50_us": {"best_peer": "langgraph_sync", "peer": 500, "wfdash": 300, "ratio": 0.6}}
        },  # fmt: skip
        "goals": {
            "sqlite.step_p50_us": {
                "max_ratio": 0.5,
                "best_peer": "langgraph_sync",
                "peer": 500,
                "wfdash": 300,
                "ratio": 0.6,
                "met": False,
            },  # fmt: skip
        },
    }
    (tmp_path / "persistence.json").write_text(json.dumps(doc))


def test_it_replaces_only_what_is_between_the_markers(tables: ModuleType, tmp_path: Path) -> None:
    _persistence(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:table durable-sqlite -->\nold 928 us\n<!-- /bench -->\noutro\n")
    assert tables.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- bench:table durable-sqlite -->\n") and text.endswith("<!-- /bench -->\noutro\n")
    assert "928" not in text
    assert "300 (280-350)" in text and "500 (450-520)" in text
    assert "error: exit code 1" in text  # a peer that failed says so instead of a number
    assert "0.60 (LangGraph `SqliteSaver`)" in text


def test_each_table_states_commit_date_machine_and_load(tables: ModuleType, tmp_path: Path) -> None:
    _persistence(tmp_path)
    first = tables.TABLES["durable-sqlite"]()[0]
    assert "commit 0123456789" in first and "2026-11-29" in first and "quick run" in first
    assert "Test CPU, 2 cores, 24.0 GiB" in first and "load 0.5 before, 0.9 after" in first


def test_a_missed_goal_reads_missed(tables: ModuleType, tmp_path: Path) -> None:
    _persistence(tmp_path)
    row = [line for line in tables.durable_goals() if line.startswith("| sqlite")][0]
    assert "**MISSED**" in row and "≤ 0.5" in row


def test_check_fails_when_readme_differs_from_the_results(tables: ModuleType, tmp_path: Path) -> None:
    _persistence(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:table durable-goals -->\nhand-typed\n<!-- /bench -->\n")
    assert tables.main(["--readme", str(readme), "--check"]) == 1
    tables.main(["--readme", str(readme)])
    assert tables.main(["--readme", str(readme), "--check"]) == 0


def test_a_missing_results_file_is_named_not_invented(tables: ModuleType) -> None:
    assert "no results yet" in tables.TABLES["durable-postgresql"]()[0]


# -- the tables of the scripts that write their own headers ----------------------------------


def _write(tmp_path: Path, name: str, doc: dict[str, object]) -> None:
    (tmp_path / f"{name}.json").write_text(json.dumps(doc))


def _run_header() -> dict[str, object]:
    """What bench/all.py adds as `run`: it wins over whatever the script recorded."""
    return {
        "mode": "quick",
        "git_commit": "fedcba9876543210",
        "git_dirty": True,
        "started_at": "2026-11-29T13:00:00Z",
        "machine": {"cpu_model": "Test CPU", "cores": 2, "ram_gib": 8.0},
        "loadavg_before": [1.5, 1.0, 1.0],
        "loadavg_after": [2.5, 1.0, 1.0],
        "settings": {"command": "python bench/search.py --n 100000 --repeats 3"},
    }


def _query(median: float, goal: bool, rows: int = 2) -> dict[str, object]:
    return {
        "params": {"q": "q004242"},
        "goal_query": goal,
        "median_ms": median,
        "min_ms": median - 1,
        "max_ms": median + 1,
        "rows": rows,
        "highlight_ms": 0.5,
    }


def test_search_says_when_the_size_measured_is_below_the_goals(tables: ModuleType, tmp_path: Path) -> None:
    doc = {
        "run": _run_header(),
        "sqlite": {
            "n": 100_000,
            "queries": {"rare_word": _query(12.0, True), "common": _query(250.0, False, 50)},
            "sizes": {"fts5_index_bytes": 8_000_000},
            "write_cost": {"with_wall_us": 900, "without_wall_us": 300},
        },
        "postgresql": {"n": 100_000, "queries": {"rare_word": _query(240.0, True)}},
        "goals": {
            "sqlite": {"worst_selective_median_ms": 12.0, "met": True},
            "postgresql": {"worst_selective_median_ms": 240.0, "met": False},
        },
    }
    _write(tmp_path, "search", doc)
    text = "\n".join(tables.TABLES["search"]())
    assert "commit fedcba9876 (uncommitted changes)" in text and "quick run" in text and "of 3 repeats" in text
    assert "Measured at 100,000: the goal is stated at 1,000,000" in text and "--full" in text
    assert "12.0 (11.0-13.0), 2 rows" in text and "8.0 MB" in text and "900 / 300" in text
    sqlite_goal = next(line for line in text.splitlines() if line.startswith("| sqlite | 100,000"))
    assert "not decided" in sqlite_goal and "met" not in sqlite_goal.replace("measured", "")
    assert "**MISSED**" in next(line for line in text.splitlines() if line.startswith("| postgresql | 100,000"))


def test_search_at_the_goals_size_reads_met(tables: ModuleType, tmp_path: Path) -> None:
    doc = {
        "commit": "abc1234 (with uncommitted changes)",
        "machine": {"cpus": 2, "loadavg_at_start": [3.0], "loadavg_at_end": [4.0]},
        "sqlite": {"n": 1_000_000, "queries": {"rare_word": _query(30.0, True)}},
    }
    _write(tmp_path, "search", doc)
    lines = tables.TABLES["search"]()
    assert "commit abc1234 (uncommitted changes)" in lines[0] and "standalone run" in lines[0]
    assert "load 3.0 before, 4.0 after" in lines[0]
    assert not any("goal is stated" in line for line in lines)
    assert lines[-1] == "| sqlite | 1,000,000 | 30.0 | met |"  # worst selective median from the queries


def _stream_fig(median: float, lo: float, hi: float) -> dict[str, object]:
    return {"median": median, "range": [lo, hi], "n": 3}


def test_stream_marks_each_goal(tables: ModuleType, tmp_path: Path) -> None:
    doc = {
        "commit": "6c180bc+uncommitted changes",
        "settings": {"repeats": 3},
        "machine_at_start": {"cpus": 2, "loadavg": [4.0, 3.0, 2.0]},
        "machine_at_end": {"cpus": 2, "loadavg": [5.0, 3.0, 2.0]},
        "goal_ms": 50.0,
        "layers": {
            "memory": {
                "first_token_ms": _stream_fig(14.2, 2.0, 32.5),
                "token_ms_p50": {"n": 0},
                "checkpoint_from_commit_ms_p50": _stream_fig(130.0, 128.0, 134.0),
                "cpu_s": {"webworker": 3.5},
            },
            "redis": {"error": "Traceback ..."},
        },
    }
    _write(tmp_path, "stream", doc)
    lines = tables.TABLES["stream"]()
    text = "\n".join(lines)
    assert "commit 6c180bc (uncommitted changes)" in lines[0] and "load 4.0 before, 5.0 after" in lines[0]
    assert "14.2 (2.0-32.5)" in text and "none reached the page" in text and "error (see stderr)" in text
    goals = {line.split(" | ")[0]: line for line in lines if "< 50 ms" in line}
    assert goals["| first token on the embedded page"].endswith("| met |")
    assert goals["| first token on the page over Redis"].endswith("| not measured | **MISSED** |")
    assert goals["| embedded live checkpoint p50, from commit"].endswith("| 130 ms | **MISSED** |")


def _tracing_variant(median: float, lo: float, hi: float) -> dict[str, object]:
    return {"us_per_step_median": median, "us_per_step_min": lo, "us_per_step_max": hi, "runs": 6}


@pytest.mark.parametrize(("installed", "verdict"), [((233, 148, 316), "met"), ((300, 280, 320), "**MISSED**")])
def test_tracing_off_must_be_within_not_installeds_min_max(
    tables: ModuleType, tmp_path: Path, installed: tuple[float, float, float], verdict: str
) -> None:
    doc = {
        "commit": "6c180bc",
        "uncommitted_changes": False,
        "steps_per_run": 1000,
        "variants": {
            "off_not_installed": _tracing_variant(229, 129, 274),
            "off_installed": _tracing_variant(*installed),
            "on": _tracing_variant(1097, 774, 1521),
        },
        "on_minus_off_us_per_step": 864.4,
        "machine": {"cpus": 2, "loadavg_at_start": [11.7, 1, 1], "loadavg_at_end": [12.7, 1, 1]},
    }
    _write(tmp_path, "tracing", doc)
    lines = tables.TABLES["tracing"]()
    assert "commit 6c180bc," in lines[0] and "1,000-step chain" in lines[0]
    assert "| not installed (imports blocked) | 229 (129-274) | 6 |" in lines
    assert "1,097 (774-1,521)" in "\n".join(lines) and "| on minus installed-off (median) | 864 | |" in lines
    assert lines[-1].endswith(f"| {verdict} |")


def test_experiments_lists_every_case(tables: ModuleType, tmp_path: Path) -> None:
    case = {
        "variants": 100,
        "result_chars": 10000,
        "create_sweep_ms": 123.02,
        "matrix_poll_ms": 45.5,
        "matrix_poll_bytes": 177846,
        "unchanged_poll_ms": 16.21,
    }
    _write(tmp_path, "experiments", {"python": "3.12.1", "cpus": 2, "cases": [case]})
    lines = tables.TABLES["experiments"]()
    assert "commit not recorded" in lines[0] and "load not recorded" in lines[0] and "2 cores" in lines[0]
    assert lines[-1] == "| 100 | 10,000 | 123 | 45.5 | 177,846 | 16.2 |"


def test_webhooks_reads_both_files_and_computes_the_triggers_cost(tables: ModuleType, tmp_path: Path) -> None:
    _write(
        tmp_path,
        "webhooks_sqlite",
        {
            "database": "sqlite",
            "runs": 300,
            "status_change_us_no_endpoint": 250.9,
            "status_change_us_with_endpoint": 306.2,
            "dispatch_per_s": 1728,
            "deliver_per_s": 112,
            "loadavg": [11.29, 11.1, 10.3],
        },
    )
    lines = tables.TABLES["webhooks"]()
    assert "sqlite, 300 runs" in lines[0] and "load 11.3 at the end" in lines[0]
    assert "| what the trigger adds, µs | 55.3 |" in lines
    assert "| deliveries signed, POSTed and recorded per second (one worker) | 112 |" in lines
    _write(tmp_path, "webhooks_postgres", {"database": "postgresql", "runs": 300, "run": _run_header()})
    lines = tables.TABLES["webhooks"]()
    assert any("postgresql, 300 runs" in line and "commit fedcba9876" in line for line in lines)
    assert "| what the trigger adds, µs | 55.3 | – |" in lines  # fields an older file lacks read "–"


def test_code_version_lists_each_workflow(tables: ModuleType, tmp_path: Path) -> None:
    doc = {
        "machine": {"loadavg_at_start": 11.97, "loadavg_at_end": 12.37},
        "Distinct1000": {
            "steps": 1001,
            "manifest_first_build_ms": 3222.5,
            "manifest_cached_us": 0.18,
            "manifest_json_bytes": 468720,
            "compare_ms": 74.119,
        },
    }
    _write(tmp_path, "code_version", doc)
    lines = tables.TABLES["code-version"]()
    assert "load 12.0 before, 12.4 after" in lines[0]
    assert lines[-1] == "| Distinct1000 | 1,001 | 3,222 | 0.18 | 468,720 | 74.12 |"


@pytest.mark.parametrize("name", ["search", "stream", "tracing", "experiments", "webhooks", "code-version"])
def test_the_new_tables_name_a_missing_results_file(tables: ModuleType, name: str) -> None:
    assert "no results yet" in tables.TABLES[name]()[0]


# -- live and load drill: repeated figures, and the old single-run files ---------------------


def _fig(median: float, lo: float, hi: float, samples: list[float]) -> dict[str, object]:
    return {"median": median, "min": lo, "max": hi, "n": len(samples), "samples": samples}


def _live_cell(p50: float, p99: float, lost: int = 0) -> dict[str, object]:
    return {
        "p50_ms": _fig(p50, p50 - 1, p50 + 2, [p50 - 1, p50, p50 + 2]),
        "p99_ms": _fig(p99, p99 - 5, p99 + 5, [p99 - 5, p99, p99 + 5]),
        "p99_from_commit_ms": _fig(3.0, 2.0, 4.0, [2.0, 3.0, 4.0]),
        "repeats": 3,
        "lost": lost,
        "duplicates": 0,
        "out_of_order": 0,
        "lost_per_run": [lost, 0, 0],
    }


def _live(tmp_path: Path, clients: tuple[int, ...], redis_p99: float = 30.0) -> None:
    summary = {
        "webworker": {f"clients_{c}": _live_cell(4.0, 12.0) for c in clients},
        "redis": {f"clients_{c}": _live_cell(8.0, redis_p99) for c in clients},
    }
    summary["webworker"]["processes"] = "one `manage.py webworker`"
    _write(tmp_path, "live", {"bench": "live", "latency_summary": summary, "run": _run_header()})


def test_live_shows_median_min_max_and_what_each_column_measures(tables: ModuleType, tmp_path: Path) -> None:
    _live(tmp_path, (1, 20))
    lines = tables.TABLES["live"]()
    text = "\n".join(lines)
    assert "median (min-max) of 3 runs per cell" in lines[0]
    assert "from the step's completion" in text and "from the batch commit" in text
    row = [line for line in lines if line.startswith("| embedded default")][0]
    assert "4.0 (3.0-6.0) / 12.0 (7.0-17.0) (commit p99 3.0 (2.0-4.0))" in row
    assert "not measured at 200 clients" in text
    assert "embedded live p50 under 50 ms (20 clients): 4.0 (3.0-6.0) ms, met" in text


def test_live_decides_the_redis_goal_at_200_clients(tables: ModuleType, tmp_path: Path) -> None:
    _live(tmp_path, (1, 200), redis_p99=60.0)
    text = "\n".join(tables.TABLES["live"]())
    assert "with 200 clients on Redis: 60.0 (55.0-65.0) ms, **MISSED**" in text
    _live(tmp_path, (1, 200), redis_p99=30.0)
    assert "with 200 clients on Redis: 30.0 (25.0-35.0) ms, met" in "\n".join(tables.TABLES["live"]())


def test_live_reads_an_old_single_run_file(tables: ModuleType, tmp_path: Path) -> None:
    cell = {"p50_ms": 5.5, "p99_ms": 40.0, "p99_from_commit_ms": 9.0, "lost": 1, "duplicates": 0}
    _write(tmp_path, "live", {"latency_summary": {"memory": {"clients_1": cell}}, "run": _run_header()})
    lines = tables.TABLES["live"]()
    assert "single run per cell" in lines[0] and "wall clock" in lines[0]
    row = [line for line in lines if line.startswith("| daphne + separate wfworker")][0]
    assert "5.5 / 40.0 (commit p99 9.0) **LOSS**" in row
    assert "embedded live p50 under 50 ms: not measured" in lines[-1]


def _drill_dist(p50: float, p99: float) -> dict[str, object]:
    return {"p50_ms": _fig(p50, p50 - 1, p50 + 1, [p50 - 1, p50, p50 + 1]), "p99_ms": _fig(p99, p99 - 2, p99 + 9, [])}


def test_load_drill_shows_repeated_figures_from_step_completion_first(tables: ModuleType, tmp_path: Path) -> None:
    delivery = {
        "received": 3000,
        "lost": 0,
        "duplicates": 0,
        "out_of_order": 0,
        "lost_per_run": [0, 0, 0],
        "from_step_completion": _drill_dist(12.0, 40.0),
        "from_commit": _drill_dist(3.0, 20.0),
        "from_created_at": _drill_dist(99.0, 99.0),
    }
    variant = {
        "repeats": 3,
        "config": {"runs": 20, "duration_s": 8.0},
        "clients": 40,
        "delivery": delivery,
        "committed_per_s_during_drill": _fig(150, 140, 160, [140, 150, 160]),
    }
    _write(tmp_path, "load_drill", {"variants": {"redis": variant}, "run": _run_header()})
    lines = tables.TABLES["load-drill"]()
    assert "variant redis, median (min-max) of 3 drills" in lines[0]
    done = [i for i, line in enumerate(lines) if "from the step's completion" in line][0]
    commit = [i for i, line in enumerate(lines) if "from the batch commit" in line][0]
    assert done < commit
    assert "| 12.0 (11.0-13.0) / 40.0 (38.0-49.0) |" in lines[done] and "99.0" not in "\n".join(lines)
    assert "out of order (summed) | 3,000, 0, 0, 0 (per drill [0, 0, 0])" in "\n".join(lines)
    assert "| checkpoints committed per second | 150 (140-160) |" in lines


def test_load_drill_reads_an_old_single_run_file(tables: ModuleType, tmp_path: Path) -> None:
    delivery = {
        "received": 100,
        "lost": 0,
        "duplicates": 0,
        "out_of_order": 0,
        "from_created_at": {"p50_ms": 7.5, "p99_ms": 33.0},
        "from_commit": {"p50_ms": 2.0, "p99_ms": 9.0, "min_ms": -0.4},
    }
    variant = {"config": {"runs": 100, "duration_s": 60}, "clients": 200, "delivery": delivery,
               "at_cutoff": {"committed": 600, "elapsed_s": 60}}  # fmt: skip
    _write(tmp_path, "load_drill", {"variants": {"redis": variant}, "run": _run_header()})
    lines = tables.TABLES["load-drill"]()
    assert "variant redis, single run" in lines[0]
    assert any("from the step's completion" in line and "| 7.5 / 33.0 |" in line for line in lines)
    assert any("(min -0.4: the commit stamp" in line and "| 2.0 / 9.0 |" in line for line in lines)
    assert "| checkpoints committed per second | 10 |" in lines
