"""Cost of code versions: building a workflow's manifest (once per class per process), and
comparing two manifests as a fork preview does. Prints JSON; takes a few seconds.

    .venv/bin/python bench/code_version.py
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wfdash.workflow import Event, StartEvent, StopEvent, Workflow, step  # noqa: E402
from wfdash.workflow.code_version import (  # noqa: E402
    _manifests,
    changed_steps,
    manifest,
    schema_changes,
)


def _distinct_steps(n: int) -> type[Workflow]:
    """A chain of n steps, each with its own event type (as bench/engine.py builds them)."""
    events = [type(f"E{i}", (Event,), {"__annotations__": {"n": int, "label": str}, "label": ""}) for i in range(n)]
    namespace: dict[str, Any] = {"StartEvent": StartEvent, "StopEvent": StopEvent, **{e.__name__: e for e in events}}
    body = ["async def s0(self, ev: StartEvent) -> E0:\n    return E0(n=0)\n"]
    for i in range(n - 1):
        body.append(f"async def s{i + 1}(self, ev: E{i}) -> E{i + 1}:\n    return E{i + 1}(n=ev.n + 1)\n")
    body.append(f"async def s{n}(self, ev: E{n - 1}) -> StopEvent:\n    return StopEvent(result=ev.n)\n")
    exec("".join(body), namespace)  # noqa: S102 - generated benchmark code
    attrs = {f"s{i}": step(namespace[f"s{i}"]) for i in range(n + 1)}
    return type(f"Distinct{n}", (Workflow,), attrs)


def _ms(fn: Any, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def _cached_us(cls: type[Workflow], n: int = 10_000) -> float:
    start = time.perf_counter()
    for _ in range(n):
        manifest(cls)
    return round((time.perf_counter() - start) / n * 1e6, 3)


def main() -> None:
    from runs.examples.chain import ChainFlow
    from runs.examples.mapreduce import MapFlow

    out: dict[str, Any] = {"machine": {"loadavg_at_start": os.getloadavg()[0]}}
    for cls in (ChainFlow, MapFlow, _distinct_steps(100), _distinct_steps(1000)):

        def build(cls: type[Workflow] = cls) -> None:
            _manifests.pop(cls, None)
            manifest(cls)

        built = manifest(cls)
        changed = copy.deepcopy(built)
        for name in list(changed["steps"])[::10]:  # a tenth of the steps changed
            changed["steps"][name]["source"] += "    # changed\n"
            changed["steps"][name]["hash"] = "0" * 64
        for schema in list(changed["events"].values())[::10]:
            schema.get("properties", {}).pop("label", None)
        out[cls.__name__] = {
            "steps": len(built["steps"]),
            "manifest_first_build_ms": _ms(build),
            "manifest_cached_us": _cached_us(cls),
            "manifest_json_bytes": len(json.dumps(built)),
            "compare_ms": _ms(
                lambda built=built, changed=changed: (
                    changed_steps(changed, built),
                    schema_changes(changed, built, built["events"]),
                )
            ),
        }
    out["machine"]["loadavg_at_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
