"""A workflow's steps and events as a graph, for drawing."""

from __future__ import annotations

from typing import Any

from .workflow import Workflow


def workflow_graph(workflow: Workflow) -> dict[str, Any]:
    """Nodes (steps and event types) and edges (event -> step accepts, step -> event returns)."""
    nodes: list[dict[str, str]] = []
    edges: list[dict[str, str]] = []
    events: set[str] = set()
    for name, cfg in workflow.steps.items():
        nodes.append({"id": f"step:{name}", "kind": "step", "label": name})
        for ev in cfg.accepted_events:
            events.add(ev.__name__)
            edges.append({"source": f"event:{ev.__name__}", "target": f"step:{name}"})
        for ev in cfg.return_types:
            events.add(ev.__name__)
            edges.append({"source": f"step:{name}", "target": f"event:{ev.__name__}"})
    nodes.extend({"id": f"event:{e}", "kind": "event", "label": e} for e in sorted(events))
    return {"nodes": nodes, "edges": edges}
