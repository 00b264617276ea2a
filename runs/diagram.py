"""The workflow drawn as a graph of steps and events, laid out by Graphviz's `dot` as SVG.

The SVG is drawn at its natural size (one SVG unit per CSS pixel, text 12-14 px) and the
page scrolls it inside its box: scaled down to fit a column, labels became unreadable.
Each step node links to the run page filtered to that step; the page colours nodes by
status (done, running, failed) through their `step` class and `data-step`-like id.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import graphviz
from django.utils.html import escape

from wfdash.workflow import HumanResponseEvent, InputRequiredEvent, Workflow
from wfdash.workflow.graph import workflow_graph

from . import registry
from .models import Checkpoint, Run

FONT = "Helvetica,Arial,sans-serif"
STEP_FONT_SIZE = 14  # px, as drawn: SVG units are made CSS pixels below
EVENT_FONT_SIZE = 12
DOT_MISSING = (
    "The workflow graph needs Graphviz's `dot` program, which this server does not have: "
    "install Graphviz (for example `apt-get install graphviz`) and reload."
)


class DiagramUnavailable(Exception):
    """The graph cannot be drawn here (no `dot`, or it failed); the message says why."""


@dataclass
class Diagram:
    svg: str
    accepts: dict[str, list[str]] = field(default_factory=dict)
    """Event type -> the steps that accept it: the page marks them running when it is emitted."""


_cache: dict[tuple[str, str], Diagram] = {}
_lock = threading.Lock()


def _is(workflow: Workflow, name: str, cls: type) -> bool:
    return name in workflow.event_registry and issubclass(workflow.event_registry.get(name), cls)


def workflow_diagram(workflow: Workflow) -> Diagram:
    """The workflow's graph as SVG, laid out once per workflow class and process."""
    key = (type(workflow).__module__, type(workflow).__qualname__)
    with _lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    diagram = _draw(workflow)
    with _lock:
        _cache[key] = diagram
    return diagram


def workflow_svg(workflow: Workflow) -> str:
    return workflow_diagram(workflow).svg


def _draw(workflow: Workflow) -> Diagram:
    graph = workflow_graph(workflow)
    dot = graphviz.Digraph(
        graph_attr={"rankdir": "LR", "nodesep": "0.3", "ranksep": "0.45", "bgcolor": "transparent"},
        node_attr={"fontname": FONT},
        edge_attr={"arrowsize": "0.7"},
    )
    ids: dict[str, str] = {}
    accepts: dict[str, list[str]] = {}
    for i, node in enumerate(graph["nodes"]):
        ids[node["id"]] = f"n{i}"
        label = node["label"]
        if node["kind"] == "step":
            dot.node(
                f"n{i}",
                label=label,
                shape="box",
                style="rounded",
                fontsize=str(STEP_FONT_SIZE),
                id=f"step-{label}",
                href=f"?step={quote(label)}#checkpoints",
                tooltip=f"step {label}: show its checkpoints",
                **{"class": "step"},
            )
        else:
            dot.node(
                f"n{i}",
                label=label,
                shape="ellipse",
                fontsize=str(EVENT_FONT_SIZE),
                id=f"event-{label}",
                tooltip=f"event {label}",
                **{"class": "event"},
            )
    for e in graph["edges"]:
        dot.edge(ids[e["source"]], ids[e["target"]])
        if e["source"].startswith("event:"):
            accepts.setdefault(e["source"].removeprefix("event:"), []).append(e["target"].removeprefix("step:"))
    # A human's answer follows the question: an invisible edge ranks it after it.
    events = [n["label"] for n in graph["nodes"] if n["kind"] == "event"]
    for asked in (e for e in events if _is(workflow, e, InputRequiredEvent)):
        for answer in (e for e in events if _is(workflow, e, HumanResponseEvent)):
            dot.edge(ids[f"event:{asked}"], ids[f"event:{answer}"], style="dashed", constraint="true")
    try:
        raw = dot.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise DiagramUnavailable(DOT_MISSING) from None
    except Exception as exc:  # a crash or a timeout of dot: the page still shows the rest
        raise DiagramUnavailable(f"Graphviz could not lay out this workflow: {exc}") from None
    return Diagram(svg=_clean(raw), accepts=accepts)


_PT = re.compile(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"')


def _clean(raw: str) -> str:
    """dot's SVG as an inline element: no XML prolog, comments or node titles (hover shows
    the links' tooltips instead), and sized in px so that one unit is one CSS pixel."""
    svg = raw[raw.index("<svg") :]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    svg = re.sub(r"<title>.*?</title>\n?", "", svg, flags=re.S)
    m = re.search(r'viewBox="[\d.]+ [\d.]+ ([\d.]+) ([\d.]+)"', svg)
    if m:
        svg = _PT.sub(f'<svg width="{m.group(1)}px" height="{m.group(2)}px"', svg, count=1)
    return svg.replace("<svg ", '<svg class="wf-graph" role="img" aria-label="workflow graph" ', 1)


FAILED_STEP = re.compile(r"step '([^']+)'")


def failed_step(error: str) -> str:
    """The step a failed run's error names ("step 'fetch' failed: ..."), or ""."""
    m = FAILED_STEP.search(error or "")
    return m.group(1) if m else ""


@dataclass
class RunGraph:
    svg: str | None
    message: str
    """Why there is no graph, when there is none."""
    state: dict[str, Any]
    """accepts (event type -> steps), done, running and failed steps: the page colours the
    nodes from it and keeps them coloured from the live messages."""


def run_graph(run: Run, done: list[str]) -> RunGraph:
    """The run's workflow graph with its steps' status: `done` have checkpoints; `running`
    were in flight at the latest checkpoint or accept its output (while the run runs);
    `failed` is the step a failed run's error names."""
    try:
        workflow = registry.get_workflow(run.workflow)
    except Exception:  # a workflow removed from the registry still shows its history
        return RunGraph(None, "This workflow is no longer registered: its graph cannot be drawn.", {})
    try:
        diagram = workflow_diagram(workflow)
    except DiagramUnavailable as exc:
        return RunGraph(None, str(exc), {})
    running: list[str] = []
    if run.status == "running":
        latest = Checkpoint.objects.filter(run=run).defer("input_event").order_by("-seq").first()
        if latest is None:
            running = list(diagram.accepts.get(workflow.start_event_class.__name__, []))
        else:
            running = list(diagram.accepts.get(latest.output_event_type, []))
            try:
                running += [str(e.get("step")) for e in latest.context_state().get("in_flight", []) if e.get("step")]
            except Exception:  # a damaged row: what its output implies is still shown
                pass
    failed = failed_step(run.error) if run.status == "failed" else ""
    state = {"accepts": diagram.accepts, "done": done, "running": sorted(set(running)), "failed": failed}
    return RunGraph(_coloured(diagram.svg, state), "", state)


def _coloured(svg: str, state: dict[str, Any]) -> str:
    """Status classes on the step nodes, so the graph reads right before (or without) JS."""
    classes: dict[str, list[str]] = {}
    for step in state["done"]:
        classes.setdefault(step, []).append("done")
    for step in state["running"]:
        classes.setdefault(step, []).append("running")
    if state["failed"]:
        classes.setdefault(state["failed"], []).append("failed")
    for step, names in classes.items():
        node = f'id="step&#45;{escape(step)}" class="node step"'
        svg = svg.replace(node, f'{node[:-1]} {" ".join(names)}"', 1)
    return svg
