"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests: real HTTP, scripted answers."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeOpenAI:
    """Answers /v1/chat/completions and /v1/completions; `fail_next(status)` scripts errors."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[tuple[int, dict[str, Any], dict[str, str]]] = deque()
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
def fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
