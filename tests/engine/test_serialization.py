"""Serialization: registry-only decoding, tampered snapshots, checkpoint records."""

import builtins
import copy
import importlib
import json
import sys
from typing import Any

import pytest

from wfdash.workflow import Context, Event, SerializationError, StartEvent, StopEvent, Workflow, step
from wfdash.workflow.checkpointer import Checkpoint, WorkflowCheckpointer
from wfdash.workflow.serialization import EventRegistry, encode_event, encode_value

pytestmark = pytest.mark.engine_only


class Parcel(Event):
    label: str
    weight: float = 1.0


class Delivered(Event):
    label: str


class ShipFlow(Workflow):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    @step
    async def pack(self, ev: StartEvent, ctx: Context) -> Parcel:
        self.calls.append("pack")
        await ctx.store.set("origin", ev.origin)
        await ctx.store.set("last", Parcel(label="stored", weight=2.5))
        return Parcel(label=ev.origin.upper())

    @step
    async def ship(self, ev: Parcel, ctx: Context) -> Delivered:
        self.calls.append("ship")
        return Delivered(label=ev.label)

    @step
    async def sign(self, ev: Delivered, ctx: Context) -> StopEvent:
        self.calls.append("sign")
        last = await ctx.store.get("last")
        return StopEvent(result={"label": ev.label, "stored": last.label})


REGISTRY = EventRegistry([StartEvent, StopEvent, Parcel, Delivered])


def _decode_recording_imports(payload: object) -> tuple[BaseException | None, list[str]]:
    """Decode `payload` while recording every import attempted (imports still happen)."""
    attempted: list[str] = []
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def recording_import(name: str, *args: Any, **kwargs: Any) -> Any:
        attempted.append(name)
        return real_import(name, *args, **kwargs)

    def recording_import_module(name: str, *args: Any, **kwargs: Any) -> Any:
        attempted.append(name)
        return real_import_module(name, *args, **kwargs)

    builtins.__import__, importlib.import_module = recording_import, recording_import_module
    try:
        REGISTRY.decode(payload)
    except BaseException as exc:
        return exc, attempted
    finally:
        builtins.__import__, importlib.import_module = real_import, real_import_module
    return None, attempted


@pytest.mark.parametrize(
    "type_name",
    ["os.system", "subprocess.Popen", "wfdash.workflow.events.StopEvent", "Workflow", "", None, 3],
)
def test_it_refuses_to_decode_an_unknown_event_type_without_importing(type_name: object) -> None:
    error, attempted = _decode_recording_imports({"type": type_name, "data": {}})
    assert isinstance(error, SerializationError)
    assert "unknown event type" in str(error)
    assert attempted == []


def test_it_does_not_load_a_module_named_by_a_stored_type() -> None:
    name = next(n for n in ("tabnanny", "pyclbr", "netrc") if n not in sys.modules)
    assert name not in sys.modules
    with pytest.raises(SerializationError):
        REGISTRY.decode({"type": f"{name}.Whatever", "data": {}})
    assert name not in sys.modules


@pytest.mark.parametrize(
    "payload",
    [None, "StopEvent", {"type": "Parcel"}, {"type": "Parcel", "data": "x"}, {"type": "Parcel", "data": {"wieght": 1}}],
)
def test_it_rejects_malformed_event_payloads(payload: object) -> None:
    with pytest.raises(SerializationError):
        REGISTRY.decode(payload)


def test_it_refuses_two_event_classes_with_the_same_name() -> None:
    from wfdash.workflow import WorkflowValidationError

    Clash = type("Parcel", (Event,), {"__annotations__": {"x": int}})
    with pytest.raises(WorkflowValidationError, match="Parcel"):
        EventRegistry([Parcel, Clash])


def test_it_names_the_key_of_an_unserializable_store_value() -> None:
    with pytest.raises(SerializationError, match="'conn'"):
        encode_value("conn", {"nested": object()})
    assert encode_value("ok", {"a": [1, 2]}) == {"a": [1, 2]}
    assert encode_value("ev", Parcel(label="p")) == {
        "__event__": {"type": "Parcel", "data": {"label": "p", "weight": 1.0}}
    }


# -- tampered snapshots --------------------------------------------------------


async def _checkpoint_after_pack() -> tuple[WorkflowCheckpointer, ShipFlow, Checkpoint]:
    wf = ShipFlow()
    ckptr = WorkflowCheckpointer(wf)
    handler = ckptr.run(origin="oslo")
    await handler
    return ckptr, wf, ckptr.checkpoints[handler.run_id][0]


def _without_version(state: dict[str, Any]) -> None:
    del state["version"]


def _future_version(state: dict[str, Any]) -> None:
    state["version"] = 99


def _unknown_step(state: dict[str, Any]) -> None:
    state["queued"].append({"step": "teleport", "event": {"type": "Parcel", "data": {"label": "x"}}})


def _unknown_event_type(state: dict[str, Any]) -> None:
    state["queued"].append({"step": "ship", "event": {"type": "os.system", "data": {}}})


def _unknown_event_in_store(state: dict[str, Any]) -> None:
    state["store"]["last"] = {"__event__": {"type": "subprocess.Popen", "data": {"args": "ls"}}}


def _invalid_event_data(state: dict[str, Any]) -> None:
    state["in_flight"].append({"step": "ship", "event": {"type": "Parcel", "data": {"label": 1, "extra": 2}}})


def _missing_section(state: dict[str, Any]) -> None:
    del state["queued"]


def _wrong_shape(state: dict[str, Any]) -> None:
    state["in_flight"] = [["ship", "Parcel"]]


def _store_not_a_dict(state: dict[str, Any]) -> None:
    state["store"] = ["origin"]


@pytest.mark.parametrize(
    "tamper",
    [
        _without_version,
        _future_version,
        _unknown_step,
        _unknown_event_type,
        _unknown_event_in_store,
        _invalid_event_data,
        _missing_section,
        _wrong_shape,
        _store_not_a_dict,
    ],
)
async def test_it_refuses_to_run_from_a_tampered_snapshot(tamper: Any) -> None:
    ckptr, wf, checkpoint = await _checkpoint_after_pack()
    state = copy.deepcopy(checkpoint.ctx_state)
    tamper(state)
    tampered = checkpoint.model_copy(update={"state_record": state, "snapshot_seq": checkpoint.seq})
    with pytest.raises(SerializationError):
        ckptr.run_from(tampered)
    with pytest.raises(SerializationError):
        ckptr.resume(tampered)
    assert wf.calls == ["pack", "ship", "sign"]
    assert len(ckptr.checkpoints) == 1


async def test_it_refuses_a_checkpoint_whose_step_is_not_in_the_workflow() -> None:
    ckptr, _, checkpoint = await _checkpoint_after_pack()
    with pytest.raises(SerializationError, match="'unpack'"):
        ckptr.run_from(checkpoint.model_copy(update={"last_completed_step": "unpack"}))


async def test_it_refuses_an_output_event_the_workflow_does_not_know() -> None:
    class Stranger(Event):
        pass

    ckptr, _, checkpoint = await _checkpoint_after_pack()
    with pytest.raises(SerializationError, match="Stranger"):
        ckptr.run_from(checkpoint, output_event=Stranger())


# -- checkpoint records --------------------------------------------------------


async def test_it_round_trips_a_checkpoint_record_through_json() -> None:
    ckptr, _, _ = await _checkpoint_after_pack()
    run_id = next(iter(ckptr.checkpoints))
    registry = ckptr.workflow.event_registry
    for original in ckptr.checkpoints[run_id]:
        record = json.loads(json.dumps(original.to_record()))
        back = Checkpoint.from_record(record, registry)
        assert back.id_ == original.id_
        assert back.run_id == original.run_id
        assert back.seq == original.seq
        assert back.last_completed_step == original.last_completed_step
        assert type(back.input_event) is type(original.input_event)
        assert back.input_event.model_dump() == original.input_event.model_dump()
        assert type(back.output_event) is type(original.output_event)
        assert back.output_event.model_dump() == original.output_event.model_dump()
        assert back.ctx_state == original.ctx_state
        assert back.created_at == original.created_at
        assert back.duration_ms == original.duration_ms
        assert back.to_record() == record


async def test_it_runs_from_a_checkpoint_rebuilt_from_its_record() -> None:
    ckptr, wf, checkpoint = await _checkpoint_after_pack()
    record = json.loads(json.dumps(checkpoint.to_record()))
    back = Checkpoint.from_record(record, ckptr.workflow.event_registry)
    assert await ckptr.run_from(back) == {"label": "OSLO", "stored": "stored"}
    assert wf.calls == ["pack", "ship", "sign", "ship", "sign"]


def test_it_rejects_a_corrupt_checkpoint_record() -> None:
    registry = ShipFlow().event_registry
    good = {
        "id": "c1",
        "run_id": "r1",
        "seq": 1,
        "last_completed_step": "pack",
        "input_event": encode_event(StartEvent(origin="x")),
        "output_event": {"type": "Parcel", "data": {"label": "X"}},
        "ctx_state": {},
        "created_at": "2024-01-01T00:00:00+00:00",
        "duration_ms": 1.0,
    }
    assert Checkpoint.from_record(good, registry).output_event.label == "X"
    for key, bad in [
        ("seq", "one"),
        ("created_at", "yesterday"),
        ("output_event", {"type": "builtins.eval", "data": {}}),
        ("input_event", None),
    ]:
        with pytest.raises(SerializationError):
            Checkpoint.from_record({**good, key: bad}, registry)
    incomplete = dict(good)
    del incomplete["run_id"]
    with pytest.raises(SerializationError):
        Checkpoint.from_record(incomplete, registry)
