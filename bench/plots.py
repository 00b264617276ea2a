"""Growth curves from the bench results: PNGs next to the JSON in bench/results/.

    .venv-bench/bin/python bench/plots.py

Reads engine.json (cost per step vs run length), persistence.json and live.json when present.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ENGINES = {"wfdash": "wfdash", "llama_index_workflows": "llama-index-workflows 1.3", "langgraph": "LangGraph 1.2"}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def engine_growth(data: dict[str, Any]) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, shape, title in (
        (axes[0], "chain_loop", "one step looping N times"),
        (axes[1], "chain_distinct", "N distinct steps"),
    ):
        for key, label in ENGINES.items():
            rows = data.get(shape, {}).get(key, {})
            for mode, style in (("checkpointed", "-o"), ("bare", ":x")):
                points = [(int(n), _num(v.get(f"{mode}_us_per_step"))) for n, v in rows.items() if isinstance(v, dict)]
                points = [(n, v) for n, v in sorted(points) if v is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], style, label=f"{label}, {mode}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("run length (steps)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("microseconds per step")
    axes[1].legend(fontsize=7)
    fig.suptitle("Engine cost per step against run length (in-memory checkpoints)")
    fig.tight_layout()
    out = RESULTS / "engine_growth.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def snapshot_growth(data: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = data.get("snapshot_bytes", {})
    for key, label in ENGINES.items():
        row = sizes.get(key, {})
        points = [(int(n), _num(v)) for n, v in row.items() if _num(v) is not None]
        if points:
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], "-o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step number")
    ax.set_ylabel("bytes per checkpoint snapshot")
    ax.set_title("Snapshot size against run length")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = RESULTS / "snapshot_growth.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def store_growth(data: dict[str, Any]) -> Path:
    """Bytes per durable step, logical and physical, small state and an unchanging 100 KB value."""
    engines = {"wfdash": "wfdash", "langgraph_sync": "LangGraph (sync saver)", "dbos": "DBOS Transact"}
    fig, ax = plt.subplots(figsize=(8, 4))
    labels: list[str] = []
    bars: dict[str, list[float]] = {e: [] for e in engines}
    for backend in ("sqlite", "postgresql"):
        for key, what in (
            ("logical_bytes_per_step", "logical"),
            ("physical_bytes_per_step", "physical"),
            ("logical_bytes_per_step_100kb", "logical\n+100 KB"),
            ("physical_bytes_per_step_100kb", "physical\n+100 KB"),
        ):
            labels.append(f"{backend}\n{what}")
            for engine in engines:
                fig_ = data.get("results", {}).get(backend, {}).get(engine, {}).get("figures", {}).get(key, {})
                bars[engine].append(_num(fig_.get("median")) or 0.0)
    xs = range(len(labels))
    width = 0.8 / len(engines)
    for i, (engine, label) in enumerate(engines.items()):
        ax.bar([x + (i - 1) * width for x in xs], bars[engine], width, label=label)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("bytes per durable step (median)")
    ax.set_title("Stored bytes per step, logical and physical (tables + indexes)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = RESULTS / "store_growth.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def viewers_growth(data: dict[str, Any]) -> Path:
    """Step-completion-to-client latency against the number of connected clients, per channel
    layer (the median of the repeats' p50 and p99; older single-run files: their one value)."""

    def median(fig: Any) -> float:
        return float(fig["median"]) if isinstance(fig, dict) else float(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for layer, row in data.get("latency", {}).items():
        points = []
        for key, value in row.items():
            if not (key.startswith("clients_") and isinstance(value, dict)):
                continue
            measured = value.get("from_step_completion") or value.get("from_commit")
            if measured:
                points.append((int(key.removeprefix("clients_")), measured))
        points.sort()
        if not points:
            continue
        xs = [p[0] for p in points]
        (line,) = ax.plot(xs, [median(p[1]["p99_ms"]) for p in points], "-o", label=f"{layer} p99")
        ax.plot(xs, [median(p[1]["p50_ms"]) for p in points], ":x", color=line.get_color(), label=f"{layer} p50")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("clients watching the run")
    ax.set_ylabel("ms from step completion to client")
    ax.set_title("Live delivery latency against the number of viewers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = RESULTS / "viewers_growth.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main() -> None:
    written = []
    engine = _load("engine.json")
    if engine:
        written += [engine_growth(engine), snapshot_growth(engine)]
    persistence = _load("persistence.json")
    if persistence and persistence.get("bench") == "persistence":
        written.append(store_growth(persistence))
    live = _load("live.json")
    if live:
        written.append(viewers_growth(live))
    print(json.dumps({"written": [str(p.relative_to(RESULTS.parent.parent)) for p in written]}))


if __name__ == "__main__":
    main()
