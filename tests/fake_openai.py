"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests: real HTTP, scripted answers."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """Answers /v1/chat/completions and /v1/completions; `fail_next(status)` scripts errors.

    With `"stream": true` it answers in server-sent events, a word per chunk, `token_delay`
    seconds apart; `hold_after(n)` stops each stream after n chunks until the returned
    event is set, and `break_stream_after(n, message)` sends an error event after n chunks.
    `sent` records (time.time(), text) as each chunk is written, for benchmarks.
    """

    def __init__(self, token_delay: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
        self.token_delay = token_delay
        self.hold: tuple[int, threading.Event] | None = None
        self.stream_error: tuple[int, str] | None = None
        self.sent: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def fail_next(self, status: int, message: str = "", headers: dict[str, str] | None = None) -> None:
        kinds = {401: "invalid_request_error", 429: "rate_limit_exceeded", 500: "server_error"}
        body = {"error": {"message": message or f"error {status}", "type": kinds.get(status, "error"), "code": None}}
        self.failures.append((status, body, headers or {}))

    def hold_after(self, chunks: int) -> threading.Event:
        """Pause every stream after `chunks` chunks until the returned event is set."""
        release = threading.Event()
        self.hold = (chunks, release)
        return release

    def break_stream_after(self, chunks: int, message: str) -> None:
        """The next streams send an error event after `chunks` chunks."""
        self.stream_error = (chunks, message)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests.append(
                        {"path": self.path, "body": body, "authorization": self.headers.get("Authorization")}
                    )
                    failure = fake.failures.popleft() if fake.failures else None
                if failure is not None:
                    status, payload, headers = failure
                    return self._send(status, payload, headers)
                if self.path.endswith("/chat/completions"):
                    prompt = " ".join(m.get("content", "") for m in body.get("messages", []))
                    text = fake.answer(prompt)
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    obj = "chat.completion"
                elif self.path.endswith("/completions"):
                    prompt = str(body.get("prompt", ""))
                    text = fake.answer(prompt)
                    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                    obj = "text_completion"
                else:
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                if body.get("stream"):
                    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                    return self._stream(obj, body.get("model", "fake-model"), text, usage if include_usage else None)
                return self._send(
                    200,
                    {
                        "id": f"cmpl-{len(fake.requests)}",
                        "object": obj,
                        "created": 1_700_000_000,
                        "model": body.get("model", "fake-model"),
                        "choices": [choice],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )

            def _stream(self, obj: str, model: str, text: str, usage: dict[str, Any] | None) -> None:
                chat = obj == "chat.completion"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                base = {
                    "id": f"cmpl-{len(fake.requests)}",
                    "object": "chat.completion.chunk" if chat else "text_completion",
                    "created": 1_700_000_000,
                    "model": model,
                }
                hold, error = fake.hold, fake.stream_error
                for i, piece in enumerate(re.findall(r"\S+\s*", text)):
                    if hold is not None and i == hold[0]:
                        hold[1].wait(timeout=60)
                    if error is not None and i == error[0]:
                        self._event({"error": {"message": error[1], "type": "server_error", "code": None}})
                        return
                    if i and fake.token_delay:
                        time.sleep(fake.token_delay)
                    if chat:
                        choice: dict[str, Any] = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        if i == 0:
                            choice["delta"]["role"] = "assistant"
                    else:
                        choice = {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}
                    self._event({**base, "choices": [choice]})
                    with fake.lock:
                        fake.sent.append((time.time(), piece))
                last = (
                    {"index": 0, "delta": {}, "finish_reason": "stop"}
                    if chat
                    else {"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}
                )
                self._event({**base, "choices": [last]})
                if usage is not None:
                    self._event({**base, "choices": [], "usage": usage})
                self.wfile.write(b"data: [DONE]\n\n")

            def _event(self, payload: dict[str, Any]) -> None:
                self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler

    @staticmethod
    def answer(prompt: str) -> str:
        if prompt.startswith("Write your best joke about"):
            topic = prompt.removeprefix("Write your best joke about").strip(" .")
            return f"Why did the {topic} cross the road? To get to the other side."
        return f"Analysis: {prompt[-80:]}"


@contextmanager
def fake_openai_server(token_delay: float = 0.0) -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(token_delay)
    fake.thread.start()
    try:
        yield fake
    finally:
        if fake.hold is not None:
            fake.hold[1].set()  # a held stream would keep its thread (and the shutdown) waiting
        fake.server.shutdown()
        fake.server.server_close()
