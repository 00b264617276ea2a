"""workflow_graph: steps and event types as nodes, accept/return relations as edges."""

import pytest

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step
from wfdash.workflow.graph import workflow_graph

pytestmark = pytest.mark.engine_only


class Question(Event):
    text: str


class Answer(Event):
    text: str


class QAFlow(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> Question:
        return Question(text=ev.q)

    @step(num_workers=2)
    async def answer(self, ev: Question, ctx: Context) -> Answer | StopEvent | None:
        return Answer(text=ev.text)

    @step
    async def finish(self, ev: Answer) -> StopEvent:
        return StopEvent(result=ev.text)


def test_it_lists_step_and_event_nodes() -> None:
    graph = workflow_graph(QAFlow())
    steps = {n["id"]: n for n in graph["nodes"] if n["kind"] == "step"}
    events = {n["id"]: n for n in graph["nodes"] if n["kind"] == "event"}
    assert set(steps) == {"step:ask", "step:answer", "step:finish"}
    assert steps["step:answer"]["label"] == "answer"
    assert set(events) == {"event:StartEvent", "event:Question", "event:Answer", "event:StopEvent"}
    assert events["event:Question"]["label"] == "Question"
    assert {n["kind"] for n in graph["nodes"]} == {"step", "event"}
    assert len(graph["nodes"]) == 7


def test_it_links_accepted_events_to_steps_and_steps_to_returned_events() -> None:
    edges = {(e["source"], e["target"]) for e in workflow_graph(QAFlow())["edges"]}
    assert edges == {
        ("event:StartEvent", "step:ask"),
        ("step:ask", "event:Question"),
        ("event:Question", "step:answer"),
        ("step:answer", "event:Answer"),
        ("step:answer", "event:StopEvent"),
        ("event:Answer", "step:finish"),
        ("step:finish", "event:StopEvent"),
    }
    node_ids = {n["id"] for n in workflow_graph(QAFlow())["nodes"]}
    assert all(s in node_ids and t in node_ids for s, t in edges)
