"""Sweeps and fork previews through the client, sync and async, against a live daphne and a real
worker: the answers parse into the server's own schemas (wfdash.api_schemas)."""

from __future__ import annotations

import pytest

from wfdash.client import AsyncClient, Client, NotFound, ValidationFailed
from wfdash.client.models import ExperimentOut, ForkPreviewOut, SweepOut

TIMEOUT = 60
VARIANTS = [{"output_event": {"n": 1}}, {"output_event": {"n": 2}}, {"store": {"steps": 5}}]


def _check_matrix(out: ExperimentOut, swept: SweepOut, checkpoint: object, base_run: object) -> None:
    assert out.id == swept.experiment and out.name == "three ways"
    assert out.checkpoint == checkpoint and out.base_run == base_run and out.created_by == "owner"
    assert out.finished and out.counts == {"succeeded": 3}
    assert [r.id for r in out.runs] == swept.runs and [r.variant for r in out.runs] == [0, 1, 2]
    assert [r.edits for r in out.runs] == VARIANTS
    assert out.runs[1].fork_edits == {"output_event": {"type": "Tick", "data": {"n": 2}}}
    assert [r.result for r in out.runs] == [{"ticks": 3}, {"ticks": 3}, {"ticks": 5}]
    assert [r.changes for r in out.runs][:2] == [[], []]
    changed = out.runs[2].changes
    assert changed and [(c.path, c.base, c.variant) for c in changed] == [("result.ticks", "3", "5")]
    assert all(r.error == "" and not r.result_truncated and r.url == f"/api/runs/{r.id}/" for r in out.runs)


def _check_preview(found: ForkPreviewOut, checkpoint: object) -> None:
    assert found.checkpoint == checkpoint and found.workflow == "chain"
    assert found.compatible and found.load_error is None and found.schema_changes == []
    assert found.will_run == ["tick"] and found.code_version


@pytest.mark.usefixtures("worker")
def test_it_sweeps_a_checkpoint_and_reads_the_finished_matrix(client: Client) -> None:
    run = client.wait(client.start("chain", steps=3).id, TIMEOUT)
    begin = next(client.checkpoints(run=str(run.id), step="begin"))

    swept = client.sweep(begin.id, VARIANTS, name="three ways")
    assert swept.url == f"/api/experiments/{swept.experiment}/" and len(swept.runs) == 3
    for run_id in swept.runs:
        client.wait(run_id, TIMEOUT)

    _check_matrix(client.experiment(swept.experiment), swept, begin.id, run.id)


@pytest.mark.usefixtures("worker")
def test_it_previews_a_fork_and_refuses_bad_sweeps(client: Client) -> None:
    run = client.wait(client.start("chain", steps=2).id, TIMEOUT)
    begin = next(client.checkpoints(run=str(run.id), step="begin"))

    _check_preview(client.fork_preview(begin.id), begin.id)
    with pytest.raises(ValidationFailed) as refused:
        client.sweep(begin.id, [{"store": {"steps": 2}}, {"output_event": {"n": "x"}}])
    assert refused.value.code == "invalid_variant" and refused.value.field == "variants[1].output_event.n"
    with pytest.raises(NotFound):
        client.fork_preview("00000000-0000-0000-0000-000000000000")


@pytest.mark.usefixtures("worker")
async def test_the_async_client_sweeps_reads_the_matrix_and_previews(aclient: AsyncClient) -> None:
    run = await aclient.wait((await aclient.start("chain", steps=3)).id, TIMEOUT)
    begin = [c async for c in aclient.checkpoints(run=str(run.id), step="begin")][0]

    _check_preview(await aclient.fork_preview(begin.id), begin.id)
    swept = await aclient.sweep(begin.id, VARIANTS, name="three ways")
    for run_id in swept.runs:
        await aclient.wait(run_id, TIMEOUT)

    _check_matrix(await aclient.experiment(swept.experiment), swept, begin.id, run.id)
