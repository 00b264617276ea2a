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
