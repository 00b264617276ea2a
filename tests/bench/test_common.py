"""bench/common.py: the statistics every results file shares."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_median_min_max_skips_repeats_without_a_number(common: ModuleType) -> None:
    assert common.median_min_max([3.0, None, 1.0, float("nan"), 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert common.median_min_max([]) == {"median": None, "min": None, "max": None, "n": 0}


def test_figure_keeps_every_runs_sample_beside_the_median(common: ModuleType) -> None:
    fig = common.figure([12.5, None, 10.0, 30.0], 1)
    assert fig == {"median": 12.5, "min": 10.0, "max": 30.0, "n": 3, "samples": [12.5, None, 10.0, 30.0]}


def test_completion_to_durable_pairs_each_step_with_the_next_durable_write(common: ModuleType) -> None:
    waits = common.completion_to_durable([1.0, 2.0, 5.0], [1.5, 2.25, 3.0])
    assert waits == [0.5, 0.25]  # the step at 5.0 has no durable write after it


def test_physical_bytes_count_a_table_with_its_indexes(common: ModuleType, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.sqlite3")
    conn.execute("CREATE TABLE t (a TEXT)")
    conn.execute("CREATE TABLE other (a TEXT)")
    conn.commit()
    empty = common.sqlite_physical_bytes(conn, ["t"])
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 100,) for _ in range(1000)])
    conn.commit()
    table_only = common.sqlite_physical_bytes(conn, ["t"])
    conn.execute("CREATE INDEX t_a ON t (a)")
    conn.commit()
    with_index = common.sqlite_physical_bytes(conn, ["t"])
    assert empty < table_only < with_index
    assert common.sqlite_physical_bytes(conn, ["other"]) == 4096  # one page, untouched
    assert common.sqlite_physical_bytes(conn) >= with_index
