"""Server and client read one definition of the API's types (wfdash/api_schemas.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from runs import api, live
from wfdash import api_schemas


@pytest.mark.parametrize("name", ["RunPage", "RunIn", "CheckpointPage", "CheckpointDetailOut", "ForkIn", "RespondIn"])
def test_the_api_uses_the_shared_schema(name: str) -> None:
    assert getattr(api, name) is getattr(api_schemas, name)


def test_the_apis_run_schema_only_adds_how_it_reads_a_row() -> None:
    assert issubclass(api.RunOut, api_schemas.RunOut)
    assert api.RunOut.model_fields.keys() == api_schemas.RunOut.model_fields.keys()


@pytest.mark.parametrize(
    "message, model",
    [
        (live.CheckpointMessage, api_schemas.LiveCheckpoint),
        (live.SkippedMessage, api_schemas.LiveSkipped),
        (live.RunMessage, api_schemas.LiveRun),
    ],
)
def test_the_live_models_carry_every_field_of_the_sockets_messages(message: Any, model: type[BaseModel]) -> None:
    assert set(message.__annotations__) == set(model.model_fields)
