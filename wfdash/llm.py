"""LLM calls for workflow steps, through the official `openai` client.

Configured by OPENAI_API_KEY, OPENAI_BASE_URL (any OpenAI-compatible server:
vLLM, Ollama, llama.cpp) and WFDASH_LLM_MODEL, read when the first call is made.
The key stays in the client: it is never part of an event, a snapshot or a log line.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from wfdash import telemetry
from wfdash.workflow.usage import record_usage

DEFAULT_MODEL = "gpt-4o-mini"
NOT_CONFIGURED = (
    "no LLM is configured: set OPENAI_API_KEY for api.openai.com, or OPENAI_BASE_URL "
    "(with OPENAI_API_KEY if the server needs one) for an OpenAI-compatible server such as "
    "vLLM, Ollama or llama.cpp, and WFDASH_LLM_MODEL to choose the model"
)


class LLMError(RuntimeError):
    """An LLM call failed; the message never contains the API key."""


@dataclass
class CompletionResponse:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # Streaming: the text this piece added (`text` is everything so far).
    delta: str | None = None

    def __str__(self) -> str:
        return self.text


def is_configured() -> bool:
    return bool(os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"))


class LLM:
    """`await llm.acomplete(prompt)` and `await llm.achat(messages)`.

    Retries 429 and 5xx with exponential backoff (the openai client's own retry
    loop, which honours Retry-After); other errors fail the step at once.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        completions_api: bool = False,
        stream_usage: bool = True,
        **defaults: Any,
    ) -> None:
        self._model = model
        self._api_key = api_key
        self._base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self.completions_api = completions_api
        # Ask streams for a final usage chunk (stream_options); off for servers that refuse it.
        self.stream_usage = stream_usage
        self.defaults = defaults
        self._client: openai.AsyncOpenAI | None = None
        self._client_config: tuple[str | None, str | None] | None = None

    @property
    def model(self) -> str:
        return self._model or os.environ.get("WFDASH_LLM_MODEL") or DEFAULT_MODEL

    def _client_for_call(self) -> openai.AsyncOpenAI:
        key = self._api_key or os.environ.get("OPENAI_API_KEY") or None
        url = self._base_url or os.environ.get("OPENAI_BASE_URL") or None
        if not key and not url:
            raise LLMError(NOT_CONFIGURED)
        # Rebuild when the environment changed (tests, a reconfigured worker).
        if self._client is None or self._client_config != (key, url):
            self._client = openai.AsyncOpenAI(
                # Local servers often need no key, but the client insists on one.
                api_key=key or "not-needed",
                base_url=url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            self._client_config = (key, url)
        return self._client

    async def acomplete(self, prompt: str, **kwargs: Any) -> CompletionResponse:
        """Complete `prompt` (as one user message, or via /v1/completions if `completions_api`)."""
        if self.completions_api:
            return await self._call("completions", prompt=prompt, **kwargs)
        return await self.achat([{"role": "user", "content": prompt}], **kwargs)

    async def achat(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> CompletionResponse:
        return await self._call("chat", messages=list(messages), **kwargs)

    async def _call(self, api: str, **kwargs: Any) -> CompletionResponse:
        client = self._client_for_call()
        params = {"model": self.model, **self.defaults, **kwargs}
        operation = "chat" if api == "chat" else "text_completion"
        with telemetry.llm_span(operation, str(params["model"]), server=_server(client)) as span:
            result, response = await self._request(client, api, params)
            span.record(
                response_model=result.model,
                input_tokens=result.prompt_tokens,
                output_tokens=result.completion_tokens,
                response_id=getattr(response, "id", None),
                finish_reasons=[str(c.finish_reason) for c in response.choices if getattr(c, "finish_reason", None)],
            )
        return result

    async def _request(
        self, client: openai.AsyncOpenAI, api: str, params: dict[str, Any]
    ) -> tuple[CompletionResponse, Any]:
        """One call, recorded as the step's usage; returns the response too."""
        started = time.perf_counter()
        try:
            if api == "chat":
                response: Any = await client.chat.completions.create(**params)
                text = response.choices[0].message.content or ""
            else:
                response = await client.completions.create(**params)
                text = response.choices[0].text or ""
        except openai.AuthenticationError as exc:
            raise LLMError(self._scrub(f"LLM authentication failed (401): check OPENAI_API_KEY: {exc}")) from None
        except openai.APIStatusError as exc:
            raise LLMError(self._scrub(f"LLM call failed with HTTP {exc.status_code}: {exc}")) from None
        except openai.APIConnectionError as exc:
            raise LLMError(self._scrub(f"cannot reach the LLM server at {client.base_url}: {exc}")) from None
        latency_ms = (time.perf_counter() - started) * 1000.0
        usage = getattr(response, "usage", None)
        result = CompletionResponse(
            text=text,
            model=str(getattr(response, "model", None) or params["model"]),
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        )
        record_usage(
            {
                "model": result.model,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "latency_ms": round(latency_ms, 2),
            }
        )
        return result, response

    def astream_complete(self, prompt: str, **kwargs: Any) -> CompletionStream:
        """Stream the completion of `prompt`: `async for r in llm.astream_complete(p)` gives
        responses whose `delta` is the new text and `text` all of it so far."""
        if self.completions_api:
            return CompletionStream(self._stream("completions", prompt=prompt, **kwargs))
        return self.astream_chat([{"role": "user", "content": prompt}], **kwargs)

    def astream_chat(self, messages: Sequence[dict[str, str]], **kwargs: Any) -> CompletionStream:
        """`achat`, streamed like `astream_complete`."""
        return CompletionStream(self._stream("chat", messages=list(messages), **kwargs))

    async def _stream(self, api: str, **kwargs: Any) -> AsyncIterator[CompletionResponse]:
        client = self._client_for_call()
        params: dict[str, Any] = {"model": self.model, **self.defaults, **kwargs, "stream": True}
        if self.stream_usage:
            params["stream_options"] = {"include_usage": True}
        started = time.perf_counter()
        model = str(params["model"])
        parts: list[str] = []
        usage: Any = None
        finished = False
        operation = "chat" if api == "chat" else "text_completion"
        with telemetry.llm_span(operation, model, server=_server(client), current=False) as span:
            try:
                # aclosing: a caller that stops early closes the HTTP stream now, not at GC.
                async with aclosing(self._pieces(client, api, params, parts)) as pieces:
                    async for piece in pieces:
                        model = piece.model
                        usage = piece.usage or usage
                        if piece.response is not None:
                            yield piece.response
                finished = True
            finally:
                span.record(
                    response_model=model,
                    input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                )
                # Also when the caller stops early: the tokens so far were paid for.
                if finished or parts:
                    record_usage(
                        {
                            "model": model,
                            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
                            "latency_ms": round((time.perf_counter() - started) * 1000.0, 2),
                            "streamed": True,
                        }
                    )

    async def _pieces(
        self, client: openai.AsyncOpenAI, api: str, params: dict[str, Any], parts: list[str]
    ) -> AsyncGenerator[_Piece, None]:
        """The stream's chunks as pieces (text so far appended to `parts`), errors mapped."""
        model = str(params["model"])
        try:
            if api == "chat":
                stream: Any = await client.chat.completions.create(**params)
            else:
                stream = await client.completions.create(**params)
            async with stream:
                async for chunk in stream:
                    model = str(getattr(chunk, "model", None) or model)
                    usage = getattr(chunk, "usage", None)
                    if not chunk.choices:
                        yield _Piece(model, usage, None)  # the usage chunk
                        continue
                    choice = chunk.choices[0]
                    delta = (choice.delta.content if api == "chat" else choice.text) or ""
                    if delta:
                        parts.append(delta)
                        # Joined per piece: a piece is a token or a few, and a step streams
                        # thousands at most, so this stays well under the network's pace.
                        yield _Piece(model, usage, CompletionResponse(text="".join(parts), model=model, delta=delta))
        except openai.AuthenticationError as exc:
            raise LLMError(self._scrub(f"LLM authentication failed (401): check OPENAI_API_KEY: {exc}")) from None
        except openai.APIStatusError as exc:
            raise LLMError(self._scrub(f"LLM call failed with HTTP {exc.status_code}: {exc}")) from None
        except openai.APIConnectionError as exc:
            raise LLMError(self._scrub(f"cannot reach the LLM server at {client.base_url}: {exc}")) from None
        except (openai.APIError, httpx.HTTPError) as exc:
            # An error event inside the stream, or the connection broke off mid-stream.
            raise LLMError(self._scrub(f"the LLM stream failed after {len(parts)} pieces: {exc}")) from None

    def _scrub(self, message: str) -> str:
        key = self._client_config[0] if self._client_config else None
        return message.replace(key, "***") if key else message


def _server(client: openai.AsyncOpenAI) -> tuple[str, int] | None:
    """The LLM server's host and port, for the call's span."""
    url = client.base_url
    if not url.host:
        return None
    return url.host, url.port or (443 if url.scheme == "https" else 80)


@dataclass
class _Piece:
    """One chunk of a stream: the model it names, its usage (the last chunk's), its text."""

    model: str
    usage: Any
    response: CompletionResponse | None


class CompletionStream:
    """What `astream_complete`/`astream_chat` return: an async iterator of responses.

    `async for r in llm.astream_complete(p)`, or llama-index's way,
    `gen = await llm.astream_complete(p)` then `async for r in gen`.
    """

    def __init__(self, responses: AsyncIterator[CompletionResponse]) -> None:
        self._responses = responses

    def __aiter__(self) -> CompletionStream:
        return self

    async def __anext__(self) -> CompletionResponse:
        return await self._responses.__anext__()

    def __await__(self) -> Generator[Any, None, CompletionStream]:
        async def itself() -> CompletionStream:
            return self

        return itself().__await__()

    async def aclose(self) -> None:
        """Stop early: closes the HTTP stream."""
        closer = getattr(self._responses, "aclose", None)
        if closer is not None:
            await closer()
