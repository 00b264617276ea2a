"""Code versions in the engine: manifests, their digests, changed steps and schema compatibility."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel

from wfdash.workflow import Context, Event, StartEvent, StopEvent, Workflow, step
from wfdash.workflow.code_version import changed_steps, digest, manifest, pending, schema_changes

pytestmark = pytest.mark.engine_only


class Counted(Event):
    n: int


class CountFlow(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Counted:
        return Counted(n=1)

    @step
    async def finish(self, ev: Counted, ctx: Context) -> StopEvent:
        return StopEvent(result=ev.n)


def _flow(body: str) -> type[Workflow]:
    """CountFlow with `finish` built by exec: a step whose source cannot be read."""
    namespace: dict[str, Any] = {}
    exec(f"async def finish(self, ev: Counted) -> StopEvent:\n    {body}\n", globals(), namespace)
    return type("DynamicFlow", (Workflow,), {"start": CountFlow.start, "finish": step(namespace["finish"])})


def test_it_records_each_steps_source_and_event_types() -> None:
    found = manifest(CountFlow)
    finish = found["steps"]["finish"]
    assert finish["source"].startswith("@step\nasync def finish(self, ev: Counted, ctx: Context)")
    assert finish["accepts"] == ["Counted"] and finish["returns"] == ["StopEvent"]
    assert found["events"]["Counted"]["properties"]["n"]["type"] == "integer"


def test_it_gives_the_same_digest_for_the_same_code_and_caches_it_per_class() -> None:
    assert manifest(CountFlow) is manifest(CountFlow())
    assert digest(CountFlow) == manifest(CountFlow)["digest"] and len(digest(CountFlow)) == 64


def test_it_falls_back_to_a_bytecode_hash_for_steps_without_source() -> None:
    one, other = manifest(_flow("return StopEvent(result=1)")), manifest(_flow("return StopEvent(result=2)"))
    assert "source unavailable" in one["steps"]["finish"]["source"]
    assert one["steps"]["finish"]["hash"] != other["steps"]["finish"]["hash"]
    assert one["steps"]["start"]["hash"] == other["steps"]["start"]["hash"]


def test_it_describes_events_pydantic_cannot_put_in_a_json_schema() -> None:
    class Opaque:
        pass

    class Holding(Event):
        thing: Opaque

    class HoldingFlow(Workflow):
        @step
        async def make(self, ev: StartEvent) -> Holding:
            return Holding(thing=Opaque())

        @step
        async def use(self, ev: Holding) -> StopEvent:
            return StopEvent()

    schema = manifest(HoldingFlow)["events"]["Holding"]
    assert "Opaque" in schema["properties"]["thing"]["annotation"] and schema["required"] == ["thing"]


def _changed(old: dict[str, Any], step_name: str, source: str) -> dict[str, Any]:
    new = copy.deepcopy(old)
    new["steps"][step_name] = {**new["steps"][step_name], "source": source, "hash": "x" * 64}
    return new


def test_it_reports_a_changed_step_with_a_unified_diff() -> None:
    old = manifest(CountFlow)
    source = old["steps"]["finish"]["source"].replace("result=ev.n", "result=ev.n + 1")
    (change,) = changed_steps(old, _changed(old, "finish", source))
    assert change.step == "finish" and change.status == "changed"
    assert "-    return StopEvent(result=ev.n)\n" in change.diff
    assert "+    return StopEvent(result=ev.n + 1)\n" in change.diff
    assert change.diff.startswith("--- finish (checkpoint's run)\n+++ finish (now)\n")


def test_it_reports_added_and_removed_steps() -> None:
    old = manifest(CountFlow)
    new = copy.deepcopy(old)
    new["steps"]["audit"] = new["steps"].pop("finish")
    statuses = {c.step: c.status for c in changed_steps(old, new)}
    assert statuses == {"audit": "added", "finish": "removed"}


def test_it_reports_no_change_between_equal_manifests() -> None:
    assert changed_steps(manifest(CountFlow), manifest(CountFlow)) == []


# -- schema compatibility ------------------------------------------------------------


def _events(**models: type[BaseModel]) -> dict[str, Any]:
    return {"events": {name: cls.model_json_schema() for name, cls in models.items()}}


class V1(Event):
    n: int
    label: str = ""


def _compare(new: type[BaseModel], events: tuple[str, ...] = ("E",)) -> list[tuple[str, str | None, str]]:
    return [(c.severity, c.field, c.change) for c in schema_changes(_events(E=V1), _events(E=new), events)]


def test_a_removed_field_is_an_error() -> None:
    class V2(Event):
        n: int

    assert _compare(V2) == [("error", "label", "field 'label' removed")]


def test_a_removed_field_is_fine_when_the_new_event_keeps_extra_values() -> None:
    class V2(StartEvent):
        n: int

    assert [(s, f) for s, f, _ in _compare(V2)] == [("info", "label")]


def test_a_retyped_field_is_an_error() -> None:
    class V2(Event):
        n: str
        label: str = ""

    ((severity, field, change),) = _compare(V2)
    assert (severity, field) == ("error", "n") and '"integer"' in change and '"string"' in change


def test_a_field_made_required_is_an_error() -> None:
    class V2(Event):
        n: int
        label: str

    assert _compare(V2) == [("error", "label", "field 'label' is now required")]


def test_a_new_required_field_is_an_error_and_one_with_a_default_is_info() -> None:
    class V2(Event):
        n: int
        label: str = ""
        kind: str
        note: str = "-"

    assert _compare(V2) == [
        ("error", "kind", "field 'kind' added and required"),
        ("info", "note", "field 'note' added with a default"),
    ]


def test_a_changed_description_or_default_is_no_change() -> None:
    from pydantic import Field

    class V2(Event):
        n: int = Field(description="the count")
        label: str = "none"

    assert _compare(V2) == []


def test_a_changed_nested_model_is_an_error() -> None:
    class Inner1(BaseModel):
        x: int

    class Inner2(BaseModel):
        x: str

    class A(Event):
        inner: Inner1

    class B(Event):
        inner: Inner2

    changes = schema_changes(_events(E=A), _events(E=B), ["E"])
    assert [(c.severity, c.field) for c in changes] == [("error", "inner")]


def test_a_removed_event_type_is_an_error_only_when_the_checkpoint_holds_it() -> None:
    old, new = _events(E=V1, F=V1), _events(F=V1)
    assert [(c.event, c.severity) for c in schema_changes(old, new, ["E"])] == [("E", "error")]
    assert schema_changes(old, new, ["F"]) == []


def test_pending_names_the_event_types_and_steps_of_a_state_without_decoding() -> None:
    state = {
        "version": 1,
        "store": {"kept": {"__event__": {"type": "Kept", "data": {}}}, "plain": {"type": "NotAnEvent"}},
        "queued": [{"step": "finish", "events": [{"type": "Counted", "data": {"n": "not even an int"}}]}],
        "in_flight": [{"step": "start", "event": {"type": "StartEvent", "data": {}}}],
        "unsent": [{"type": "Loose", "data": {}}],
        "collect": [{"expected": ["Part"], "events": [{"type": "Part", "data": {}}]}],
        "waiters": [],
        "awaiting_input": False,
    }
    found = pending(state)
    assert found.event_types == {"Kept", "Counted", "StartEvent", "Loose", "Part"}
    assert found.steps == ["start", "finish"]  # in-flight first: restored first
    assert found.unsent_types == ["Loose"]
