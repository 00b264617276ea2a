"""Events: start kwargs, stop result, typed custom events, the JSON codec."""

import json

import pydantic
import pytest

from wfdash.workflow import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from wfdash.workflow.serialization import EventRegistry, encode_event

pytestmark = pytest.mark.engine_only


class Scored(Event):
    name: str
    score: int
    tags: list[str] = []


REGISTRY = EventRegistry([StartEvent, StopEvent, InputRequiredEvent, HumanResponseEvent, Scored])


def test_it_exposes_start_event_kwargs_as_attributes() -> None:
    ev = StartEvent(topic="chemistry", count=3)
    assert ev.topic == "chemistry"
    assert ev.count == 3
    with pytest.raises(AttributeError):
        _ = ev.missing


def test_it_keeps_a_stop_event_result_through_encode_and_decode() -> None:
    ev = StopEvent(result={"answer": 42, "items": [1, "two", None]})
    payload = json.loads(json.dumps(encode_event(ev)))
    assert payload["type"] == "StopEvent"
    back = REGISTRY.decode(payload)
    assert type(back) is StopEvent
    assert back.result == {"answer": 42, "items": [1, "two", None]}


def test_it_round_trips_start_event_extra_fields() -> None:
    back = REGISTRY.decode(json.loads(json.dumps(encode_event(StartEvent(topic="biology", n=2)))))
    assert type(back) is StartEvent
    assert (back.topic, back.n) == ("biology", 2)


def test_it_validates_typed_fields_of_custom_events() -> None:
    ev = Scored(name="a", score="7")  # lax mode coerces a numeric string
    assert ev.score == 7
    with pytest.raises(pydantic.ValidationError):
        Scored(name="a", score="not a number")
    with pytest.raises(pydantic.ValidationError):
        Scored(score=1)  # name is required


def test_it_rejects_unknown_fields_on_custom_events() -> None:
    with pytest.raises(pydantic.ValidationError, match="scroe"):
        Scored(name="a", score=1, scroe=2)


def test_it_round_trips_custom_events_with_their_type() -> None:
    ev = Scored(name="x", score=3, tags=["t1", "t2"])
    back = REGISTRY.decode(json.loads(json.dumps(encode_event(ev))))
    assert type(back) is Scored
    assert back.model_dump() == {"name": "x", "score": 3, "tags": ["t1", "t2"]}


def test_it_compares_events_by_their_fields_even_after_encoding() -> None:
    ev = Scored(name="x", score=3)
    assert ev == Scored(name="x", score=3)
    encode_event(ev)  # caches the JSON form on the event
    assert ev == Scored(name="x", score=3)
    assert ev != Scored(name="x", score=4)
