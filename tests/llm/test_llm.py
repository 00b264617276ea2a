"""The LLM helper and the seed's JokeFlow against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async

from runs.examples.joke import JokeFlow
from runs.executor import Worker
from runs.models import Checkpoint, Run, RunStatus, fork_run, start_run
from tests.fake_openai import FakeOpenAI, fake_openai_server
from wfdash.llm import LLM, LLMError
from wfdash.workflow import WorkflowRuntimeError
from wfdash.workflow.checkpointer import WorkflowCheckpointer

SECRET = "sk-test-SECRET-do-not-store-0123456789"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with fake_openai_server() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("WFDASH_LLM_MODEL", "fake-model")
        yield server


async def _drain() -> None:
    await asyncio.wait_for(Worker(poll_interval=0.05).run(exit_when_idle=True, install_signals=False), 60)


async def test_it_completes_and_chats_through_the_openai_client(fake: FakeOpenAI) -> None:
    llm = LLM()
    reply = await llm.acomplete("Write your best joke about owls.")
    assert "owls" in str(reply) and reply.prompt_tokens == 6 and reply.completion_tokens > 0
    chat = await llm.achat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    assert str(chat).startswith("Analysis:")
    legacy = await LLM(completions_api=True).acomplete("plain prompt")
    assert str(legacy) == "Analysis: plain prompt"
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions", "/v1/chat/completions", "/v1/completions"]
    assert fake.requests[0]["body"]["model"] == "fake-model"
    assert fake.requests[0]["authorization"] == f"Bearer {SECRET}"


async def test_it_retries_a_429_then_succeeds(fake: FakeOpenAI) -> None:
    fake.fail_next(429, "slow down", {"Retry-After": "0"})
    fake.fail_next(500, "oops", {"Retry-After": "0"})
    reply = await LLM(max_retries=3).acomplete("Write your best joke about rain.")
    assert "rain" in str(reply)
    assert len(fake.requests) == 3


async def test_it_fails_a_401_at_once_with_a_clear_message_and_no_key(fake: FakeOpenAI) -> None:
    fake.fail_next(401, f"Incorrect API key provided: {SECRET}")
    with pytest.raises(LLMError) as info:
        await LLM().acomplete("hello")
    assert "authentication failed (401)" in str(info.value) and "OPENAI_API_KEY" in str(info.value)
    assert SECRET not in str(info.value)
    assert len(fake.requests) == 1


async def test_it_says_how_to_configure_when_nothing_is(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(WorkflowRuntimeError) as info:
        await WorkflowCheckpointer(JokeFlow()).run(topic="cats")
    message = str(info.value)
    assert "generate_joke" in message and "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message
    assert "\n" not in message


async def test_it_replays_the_notebook_with_usage_on_each_checkpoint(fake: FakeOpenAI) -> None:
    checkpointer = WorkflowCheckpointer(workflow=JokeFlow())
    result = await checkpointer.run(topic="chemistry")
    assert "chemistry" in result
    [ckpts] = checkpointer.checkpoints.values()
    assert [c.last_completed_step for c in ckpts] == ["generate_joke", "critique_joke"]
    assert [len(c.usage) for c in ckpts] == [1, 1]
    assert ckpts[0].usage[0]["model"] == "fake-model" and ckpts[0].usage[0]["prompt_tokens"] == 6


@pytest.mark.django_db(transaction=True)
async def test_it_runs_jokeflow_through_a_worker_and_the_database(fake: FakeOpenAI) -> None:
    run = await sync_to_async(start_run)("joke", {"topic": "chemistry"})
    await _drain()
    await run.arefresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    rows = [c async for c in Checkpoint.objects.filter(run=run).order_by("seq")]
    assert [c.last_completed_step for c in rows] == ["generate_joke", "critique_joke"]
    joke = rows[0].output_event["data"]["joke"]
    assert "chemistry" in joke
    critique_prompt = fake.requests[1]["body"]["messages"][0]["content"]
    assert joke in critique_prompt
    assert run.llm_calls == 2
    assert run.prompt_tokens == sum(c.usage[0]["prompt_tokens"] for c in rows) > 0
    assert run.completion_tokens > 0
    # The key is never stored anywhere in the run.
    stored = json.dumps([run.start_event, run.result, run.error]) + "".join(
        json.dumps([c.input_event, c.output_event, c.state, c.usage]) for c in rows
    )
    assert SECRET not in stored

    # A fork from generate_joke's checkpoint calls the model once, not twice.
    before = len(fake.requests)
    child = await sync_to_async(fork_run)(rows[0].id)
    await _drain()
    await child.arefresh_from_db()
    assert child.status == RunStatus.SUCCEEDED
    assert len(fake.requests) == before + 1
    assert child.llm_calls == 1


@pytest.mark.django_db(transaction=True)
async def test_it_fails_the_step_on_401_through_the_worker(fake: FakeOpenAI) -> None:
    fake.fail_next(401, f"Incorrect API key provided: {SECRET}")
    run = await sync_to_async(start_run)("joke", {"topic": "x"})
    await _drain()
    run = await Run.objects.aget(pk=run.pk)
    assert run.status == RunStatus.FAILED
    assert "generate_joke" in run.error and "401" in run.error
    assert SECRET not in run.error and SECRET not in run.error_traceback
