"""A loopback mock of the OpenAI Responses API (SSE), scripted per request.

The real Codex CLI is pointed at it with a custom model provider (see :meth:`MockOpenAI.codex_config`).
Each ``POST /v1/responses`` pops the next :class:`Reply` from the script:

* ``Reply.text("Hello")`` streams a text answer (``response.created`` → ``output_item.added`` →
  ``output_text.delta``… → ``output_item.done`` → ``response.completed`` with ``usage``);
* ``Reply.shell("echo hi")`` answers with a ``function_call`` for whichever shell tool the request
  offered (``shell`` / ``shell_command`` / ``exec_command``);
* ``Reply.error(429, ...)`` answers with an HTTP error status and an OpenAI error body;
* ``Reply.hang(...)`` streams a first delta and then blocks until the server stops (for cancel tests).

Every request body is recorded in :attr:`MockOpenAI.requests` so tests can assert, e.g., that Codex
sent the ``function_call_output`` back. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ("MockOpenAI", "Reply")

_ids = itertools.count(1)


@dataclass
class Reply:
    """One scripted answer to one ``POST /responses``."""

    kind: str
    text: str = ""
    command: str = ""
    status: int = 200
    error_body: dict[str, Any] = field(default_factory=dict)
    input_tokens: int = 100
    output_tokens: int = 10
    cached_tokens: int = 0
    chunks: int = 3

    @classmethod
    def text_answer(
        cls, text: str, *, input_tokens: int = 100, output_tokens: int = 10, cached: int = 0
    ) -> Reply:
        return cls(
            "text", text=text, input_tokens=input_tokens, output_tokens=output_tokens, cached_tokens=cached
        )

    @classmethod
    def shell(cls, command: str, *, input_tokens: int = 100, output_tokens: int = 10) -> Reply:
        return cls("shell", command=command, input_tokens=input_tokens, output_tokens=output_tokens)

    @classmethod
    def error(
        cls, status: int, message: str, code: str = "server_error", etype: str = "server_error"
    ) -> Reply:
        body = {"error": {"message": message, "type": etype, "code": code, "param": None}}
        return cls("error", status=status, error_body=body)

    @classmethod
    def drop(cls, text: str = "partial") -> Reply:
        """Stream one delta, then close the connection without ``response.completed``."""
        return cls("drop", text=text)

    @classmethod
    def hang(cls, text: str = "partial") -> Reply:
        return cls("hang", text=text)


def _sse(handler: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
    data = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
    handler.wfile.write(data)
    handler.wfile.flush()


class MockOpenAI:
    """Scripted Responses API server on 127.0.0.1 (use as a context manager)."""

    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque(replies or [])
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.hanging = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        mock = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                with mock._lock:
                    mock.paths.append(f"GET {self.path}")
                self._plain(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with mock._lock:
                    mock.paths.append(f"POST {self.path}")
                    if not self.path.rstrip("/").endswith("/responses"):
                        reply: Reply | None = None
                    else:
                        mock.requests.append(body)
                        reply = mock.replies.popleft() if mock.replies else None
                if reply is None:
                    self._plain(
                        404, {"error": {"message": "no scripted reply", "type": "invalid_request_error"}}
                    )
                    return
                if reply.kind == "error":
                    self._plain(reply.status, reply.error_body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    mock._stream(self, reply, body)
                except (BrokenPipeError, ConnectionResetError):
                    return

            def _plain(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="mock-openai", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def codex_config(self, env_key: str = "ASM_MOCK_OPENAI_KEY", *, stream_retries: int = 0) -> list[str]:
        """``-c`` arguments that route Codex to this server (no WebSocket attempt)."""
        provider = (
            f'{{name="mock",base_url="{self.base_url}",env_key="{env_key}",'
            f'wire_api="responses",supports_websockets=false,request_max_retries=0,'
            f"stream_max_retries={stream_retries},stream_idle_timeout_ms=20000}}"
        )
        return ["-c", f"model_providers.mock={provider}", "-c", 'model_provider="mock"']

    def __enter__(self) -> MockOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- streaming -------------------------------------------------------------------------------

    def _stream(self, handler: BaseHTTPRequestHandler, reply: Reply, body: dict[str, Any]) -> None:
        n = next(_ids)
        resp_id = f"resp_{n}"
        model = str(body.get("model") or "mock-model")
        base = {
            "id": resp_id,
            "object": "response",
            "created_at": 1_700_000_000,
            "model": model,
            "output": [],
        }
        _sse(handler, {"type": "response.created", "response": {**base, "status": "in_progress"}})
        if reply.kind == "shell":
            item = self._function_call(n, reply.command, body)
            _sse(handler, {"type": "response.output_item.added", "output_index": 0, "item": item})
            _sse(handler, {"type": "response.output_item.done", "output_index": 0, "item": item})
            output = [item]
        else:
            msg_id = f"msg_{n}"
            added = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            _sse(handler, {"type": "response.output_item.added", "output_index": 0, "item": added})
            part = {"type": "output_text", "text": "", "annotations": []}
            _sse(
                handler,
                {
                    "type": "response.content_part.added",
                    "item_id": msg_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                },
            )
            text = reply.text
            step = max(1, -(-len(text) // max(1, reply.chunks)))
            for i in range(0, len(text), step):
                _sse(
                    handler,
                    {
                        "type": "response.output_text.delta",
                        "item_id": msg_id,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": text[i : i + step],
                    },
                )
                if reply.kind == "drop":
                    return
                if reply.kind == "hang":
                    self.hanging.set()
                    self._stop.wait(60)
                    return
            done = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
            _sse(handler, {"type": "response.output_item.done", "output_index": 0, "item": done})
            output = [done]
        usage = {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": reply.cached_tokens},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }
        completed = {**base, "status": "completed", "output": output, "usage": usage}
        _sse(handler, {"type": "response.completed", "response": completed})

    @staticmethod
    def _function_call(n: int, command: str, body: dict[str, Any]) -> dict[str, Any]:
        names = [str(t.get("name")) for t in body.get("tools", []) if isinstance(t, dict) and t.get("name")]
        args: dict[str, Any]
        if "shell" in names:
            name, args = "shell", {"command": ["bash", "-lc", command]}
        elif "shell_command" in names:
            name, args = "shell_command", {"command": command}
        elif "exec_command" in names:
            name, args = "exec_command", {"cmd": command}
        else:  # pragma: no cover - depends on the CLI version
            name, args = "shell", {"command": ["bash", "-lc", command]}
        return {
            "id": f"fc_{n}",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_{n}",
            "name": name,
            "arguments": json.dumps(args),
        }

    def stop_hanging(self) -> None:
        """Release any ``Reply.hang`` stream (also done on exit)."""
        with contextlib.suppress(Exception):
            self._stop.set()
