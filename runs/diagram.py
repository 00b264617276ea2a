"""The workflow drawn as an SVG graph of steps and events, laid out in layers."""

from __future__ import annotations

from collections import deque

from django.utils.html import escape

from wfdash.workflow import HumanResponseEvent, InputRequiredEvent, Workflow
from wfdash.workflow.graph import workflow_graph

COL_W, ROW_H, BOX_W, BOX_H = 190, 56, 160, 34


def _is(workflow: Workflow, node_id: str, cls: type) -> bool:
    name = node_id.removeprefix("event:")
    return name in workflow.event_registry and issubclass(workflow.event_registry.get(name), cls)


def workflow_svg(workflow: Workflow) -> str:
    graph = workflow_graph(workflow)
    nodes = {n["id"]: n for n in graph["nodes"]}
    out: dict[str, list[str]] = {nid: [] for nid in nodes}
    for e in graph["edges"]:
        out[e["source"]].append(e["target"])
    # For layout only: a human answer follows the question, so place it after it.
    for asked in [n for n in nodes if n.startswith("event:") and _is(workflow, n, InputRequiredEvent)]:
        out[asked].extend(n for n in nodes if n.startswith("event:") and _is(workflow, n, HumanResponseEvent))
    start = f"event:{workflow.start_event_class.__name__}"
    layer: dict[str, int] = {start: 0}
    queue = deque([start])
    while queue:
        nid = queue.popleft()
        for target in out[nid]:
            if target not in layer:
                layer[target] = layer[nid] + 1
                queue.append(target)
    last = max(layer.values(), default=0)
    for nid in nodes:  # anything still unreachable goes after the rest
        if nid not in layer:
            last += 1
            layer[nid] = last
    columns: dict[int, list[str]] = {}
    for nid in sorted(nodes, key=lambda n: (layer[n], n)):
        columns.setdefault(layer[nid], []).append(nid)
    pos: dict[str, tuple[int, int]] = {}
    for col, ids in columns.items():
        for row, nid in enumerate(ids):
            pos[nid] = (10 + col * COL_W, 10 + row * ROW_H)
    width = 20 + (max(columns) + 1) * COL_W
    height = 20 + max(len(ids) for ids in columns.values()) * ROW_H
    parts = [
        f'<svg class="wf-graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'role="img" aria-label="workflow graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" /></marker></defs>',
    ]
    for e in graph["edges"]:
        (x1, y1), (x2, y2) = pos[e["source"]], pos[e["target"]]
        back = x2 <= x1
        sx, sy = x1 + BOX_W, y1 + BOX_H // 2
        tx, ty = (x2 if not back else x2 + BOX_W // 2), (y2 + BOX_H // 2 if not back else y2 + BOX_H)
        if back:
            sx, sy = x1 + BOX_W // 2, y1 + BOX_H
            path = f"M {sx} {sy} C {sx} {sy + 30}, {tx} {ty + 30}, {tx} {ty}"
        else:
            path = f"M {sx} {sy} C {sx + 20} {sy}, {tx - 20} {ty}, {tx} {ty}"
        parts.append(f'<path class="edge" d="{path}" marker-end="url(#arrow)" />')
    for nid, node in nodes.items():
        x, y = pos[nid]
        label = escape(node["label"])
        if node["kind"] == "step":
            parts.append(
                f'<g class="node step" data-step="{label}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" '
                f'rx="6" /><text x="{x + BOX_W // 2}" y="{y + 22}" text-anchor="middle">{label}</text></g>'
            )
        else:
            parts.append(
                f'<g class="node event" data-event="{label}"><rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" '
                f'rx="17" /><text x="{x + BOX_W // 2}" y="{y + 22}" text-anchor="middle">{label}</text></g>'
            )
    parts.append("</svg>")
    return "".join(parts)
