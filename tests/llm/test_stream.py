"""Streaming LLM calls against the fake server's server-sent events: deltas, usage, errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_openai import FakeOpenAI, fake_openai_server
from wfdash.llm import LLM, LLMError
from wfdash.workflow.usage import begin_step

SECRET = "sk-test-SECRET-do-not-store-0123456789"
JOKE = FakeOpenAI.answer("Write your best joke about owls.")

pytestmark = pytest.mark.engine_only


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with fake_openai_server() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("WFDASH_LLM_MODEL", "fake-model")
        yield server


async def test_it_streams_each_piece_with_the_text_so_far(fake: FakeOpenAI) -> None:
    pieces = [r async for r in LLM().astream_complete("Write your best joke about owls.")]
    assert [r.delta for r in pieces] == [w + " " for w in JOKE.split()[:-1]] + [JOKE.split()[-1]]
    assert [r.text for r in pieces] == ["".join(p.delta or "" for p in pieces[: i + 1]) for i in range(len(pieces))]
    assert str(pieces[-1]) == JOKE and pieces[-1].model == "fake-model"
    body = fake.requests[0]["body"]
    assert fake.requests[0]["path"] == "/v1/chat/completions"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_it_streams_chats_and_the_completions_api(fake: FakeOpenAI) -> None:
    chat = [r.delta async for r in LLM().astream_chat([{"role": "user", "content": "hi there"}])]
    assert "".join(d or "" for d in chat) == "Analysis: hi there"
    legacy = [r.delta async for r in LLM(completions_api=True).astream_complete("plain prompt")]
    assert "".join(d or "" for d in legacy) == "Analysis: plain prompt"
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions", "/v1/completions"]


async def test_it_can_be_awaited_first_as_llama_index_does(fake: FakeOpenAI) -> None:
    stream = await LLM().astream_complete("Write your best joke about owls.")
    assert [r.text async for r in stream][-1] == JOKE


async def test_it_records_the_usage_of_the_final_chunk_for_the_step(fake: FakeOpenAI) -> None:
    usage = begin_step()
    async for _ in LLM().astream_complete("Write your best joke about owls."):
        pass
    assert len(usage) == 1
    assert usage[0]["prompt_tokens"] == 6 and usage[0]["completion_tokens"] == len(JOKE.split())
    assert usage[0]["model"] == "fake-model" and usage[0]["streamed"] is True


async def test_it_asks_for_no_usage_chunk_when_told_the_server_refuses_it(fake: FakeOpenAI) -> None:
    usage = begin_step()
    async for _ in LLM(stream_usage=False).astream_complete("hello"):
        pass
    assert "stream_options" not in fake.requests[0]["body"]
    assert usage[0]["prompt_tokens"] == usage[0]["completion_tokens"] == 0


async def test_it_fails_a_401_before_any_piece_with_no_key_in_the_message(fake: FakeOpenAI) -> None:
    fake.fail_next(401, f"Incorrect API key provided: {SECRET}")
    with pytest.raises(LLMError) as info:
        async for _ in LLM().astream_complete("hello"):
            pass
    assert "authentication failed (401)" in str(info.value) and SECRET not in str(info.value)


async def test_it_retries_a_429_before_the_stream_starts(fake: FakeOpenAI) -> None:
    fake.fail_next(429, "slow down", {"Retry-After": "0"})
    pieces = [r async for r in LLM(max_retries=2).astream_complete("Write your best joke about owls.")]
    assert pieces[-1].text == JOKE and len(fake.requests) == 2


async def test_an_error_event_mid_stream_fails_after_the_pieces_so_far_with_no_key(fake: FakeOpenAI) -> None:
    fake.break_stream_after(3, f"upstream model crashed; key {SECRET}")
    got: list[str] = []
    with pytest.raises(LLMError) as info:
        async for r in LLM().astream_complete("Write your best joke about owls."):
            got.append(r.delta or "")
    assert "".join(got) == "Why did the "
    assert "stream failed after 3 pieces" in str(info.value) and "upstream model crashed" in str(info.value)
    assert SECRET not in str(info.value)


async def test_it_says_when_the_server_cannot_be_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard: nothing listens
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with pytest.raises(LLMError) as info:
        async for _ in LLM(max_retries=0, timeout=5).astream_complete("hello"):
            pass
    assert "cannot reach the LLM server" in str(info.value) and SECRET not in str(info.value)
