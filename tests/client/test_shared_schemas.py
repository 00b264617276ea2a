"""Server and client read one definition of the API's types (wfdash/api_schemas.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from runs import api, api_experiments, api_fork_preview, live
from wfdash import api_schemas
from wfdash.client import models as client_models


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


@pytest.mark.parametrize(
    "module, name",
    [
        (api_experiments, "SweepIn"),
        (api_experiments, "SweepOut"),
        (api_experiments, "ExperimentOut"),
        (api_fork_preview, "ForkPreviewOut"),
        (api_fork_preview, "ConflictOut"),
    ],
)
def test_sweeps_and_fork_previews_use_the_shared_schemas(module: Any, name: str) -> None:
    assert getattr(module, name) is getattr(api_schemas, name)


@pytest.mark.parametrize(
    "name", ["SweepIn", "SweepOut", "ExperimentOut", "VariantOut", "ChangeOut", "ForkPreviewOut", "SchemaChangeOut"]
)
def test_the_client_reads_the_servers_own_schemas(name: str) -> None:
    assert getattr(client_models, name) is getattr(api_schemas, name)


def test_the_experiment_schema_has_every_field_the_server_sends() -> None:
    fields = set(api_schemas.ExperimentOut.model_fields)
    assert {"name", "counts", "finished", "created_by"} <= fields
    assert {"changes", "error", "result_truncated", "fork_edits", "url"} <= set(api_schemas.VariantOut.model_fields)
    assert "name" in api_schemas.SweepIn.model_fields


def test_the_openapi_document_names_the_shared_schemas() -> None:
    """The routes answer with these models: the API's own document says so."""
    doc = api.api.get_openapi_schema()
    sweep = doc["paths"]["/api/checkpoints/{checkpoint_id}/sweep/"]["post"]
    assert sweep["responses"][201]["content"]["application/json"]["schema"]["$ref"].endswith("/SweepOut")
    experiment = doc["paths"]["/api/experiments/{experiment_id}/"]["get"]
    assert experiment["responses"][200]["content"]["application/json"]["schema"]["$ref"].endswith("/ExperimentOut")
