"""A loopback mock of the Anthropic Messages API (``POST /v1/messages``, SSE streaming).

Reusable by any test that points a real client (the Claude Code CLI, the ``anthropic``
package) at ``http://127.0.0.1:<port>``. Each test scripts the replies:

    with MockAnthropicServer() as server:
        server.script(text_reply(["Hel", "lo"]))
        env = server.cli_env(tmp_path)       # ANTHROPIC_BASE_URL, key, isolated HOME, ...
        ...
        assert server.requests[0].body["stream"] is True

Replies are consumed in order, one per *main* request (a request carrying ``tools``);
auxiliary requests (title generation, quota probes: no ``tools``) get a short default text
answer so they never eat a scripted reply. When the script runs out the server answers
with ``default`` (a short text reply). The stream shapes follow
``provider_wire_formats.md`` §5: message_start, content_block_start/delta/stop,
message_delta (cumulative usage), message_stop, with a ``ping`` after message_start.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = (
    "ErrorReply",
    "MockAnthropicServer",
    "RecordedRequest",
    "StreamReply",
    "error_reply",
    "text_reply",
    "tool_use_reply",
)

TEST_API_KEY = "sk-ant-test-0000000000000000000000000000"


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 12
    output_tokens: int = 24
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


@dataclass(frozen=True)
class StreamReply:
    """A streamed assistant message: a list of content blocks.

    A block is ``("text", [delta, ...])`` or ``("tool_use", (id, name, input_json_chunks))``.
    ``delay`` seconds are slept before each delta (for cancel-mid-stream tests).
    """

    blocks: tuple[tuple[str, Any], ...]
    stop_reason: str = "end_turn"
    usage: Usage = field(default_factory=Usage)
    model: str = "claude-sonnet-4-5"
    delay: float = 0.0


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error with the Anthropic JSON error body."""

    status: int
    error_type: str
    message: str


Reply = StreamReply | ErrorReply


def text_reply(
    deltas: Sequence[str], *, usage: Usage | None = None, delay: float = 0.0, stop_reason: str = "end_turn"
) -> StreamReply:
    """A text answer split into ``deltas``."""
    return StreamReply(
        blocks=(("text", tuple(deltas)),), stop_reason=stop_reason, usage=usage or Usage(), delay=delay
    )


def tool_use_reply(
    name: str,
    tool_input: dict[str, Any],
    *,
    preamble: str | None = None,
    tool_id: str | None = None,
    usage: Usage | None = None,
) -> StreamReply:
    """A turn asking for one tool call (optionally preceded by a text block)."""
    raw = json.dumps(tool_input)
    half = len(raw) // 2
    blocks: list[tuple[str, Any]] = []
    if preamble:
        blocks.append(("text", (preamble,)))
    blocks.append(
        ("tool_use", (tool_id or f"toolu_{uuid.uuid4().hex[:24]}", name, ("", raw[:half], raw[half:])))
    )
    return StreamReply(blocks=tuple(blocks), stop_reason="tool_use", usage=usage or Usage())


def error_reply(status: int) -> ErrorReply:
    """A canned API error for ``status`` (401, 403, 429, 500, 529, ...)."""
    kinds = {
        400: ("invalid_request_error", "bad request"),
        401: ("authentication_error", "invalid x-api-key"),
        403: ("permission_error", "forbidden"),
        429: ("rate_limit_error", "Number of requests has exceeded your rate limit"),
        500: ("api_error", "Internal server error"),
        529: ("overloaded_error", "Overloaded"),
    }
    kind, message = kinds.get(status, ("api_error", f"error {status}"))
    return ErrorReply(status=status, error_type=kind, message=message)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the mock received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def is_main(self) -> bool:
        """A main agent-loop request (it carries the tool list)."""
        return bool(self.body.get("tools"))

    def last_user_content(self) -> Any:
        """The content of the last user message in the request."""
        for message in reversed(self.body.get("messages") or []):
            if message.get("role") == "user":
                return message.get("content")
        return None


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _stream_events(reply: StreamReply) -> Iterator[tuple[bool, bytes]]:
    """(is_delta, bytes) pairs of the SSE stream of ``reply``."""
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    u = reply.usage
    yield (
        False,
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": reply.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": u.input_tokens,
                        "cache_creation_input_tokens": u.cache_creation_input_tokens,
                        "cache_read_input_tokens": u.cache_read_input_tokens,
                        "output_tokens": 1,
                        "service_tier": "standard",
                    },
                },
            }
        ),
    )
    yield False, _sse({"type": "ping"})
    for index, (kind, payload) in enumerate(reply.blocks):
        if kind == "text":
            yield (
                False,
                _sse(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                ),
            )
            for delta in payload:
                yield (
                    True,
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": delta},
                        }
                    ),
                )
        else:
            tool_id, name, chunks = payload
            yield (
                False,
                _sse(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
                    }
                ),
            )
            for chunk in chunks:
                yield (
                    True,
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": chunk},
                        }
                    ),
                )
        yield False, _sse({"type": "content_block_stop", "index": index})
    yield (
        False,
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {
                    "input_tokens": u.input_tokens,
                    "cache_creation_input_tokens": u.cache_creation_input_tokens,
                    "cache_read_input_tokens": u.cache_read_input_tokens,
                    "output_tokens": u.output_tokens,
                },
            }
        ),
    )
    yield False, _sse({"type": "message_stop"})


class MockAnthropicServer:
    """Threaded loopback HTTP server speaking the Messages API; see module docstring."""

    def __init__(self, default: Reply | None = None) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = []
        self.default: Reply = default or text_reply(["ok"])
        self.requests: list[RecordedRequest] = []
        self.stream_started = threading.Event()
        self.client_disconnected = threading.Event()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mock-anthropic",
            daemon=True,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- scripting ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next main requests, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def main_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.is_main]

    def cli_env(self, home: Path) -> dict[str, str]:
        """Environment for the Claude Code CLI: talk only to this mock, isolated config."""
        home.mkdir(parents=True, exist_ok=True)
        config = home / ".claude"
        config.mkdir(exist_ok=True)
        return {
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": TEST_API_KEY,
            "HOME": str(home),
            "CLAUDE_CONFIG_DIR": str(config),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "CLAUDE_CODE_MAX_RETRIES": "0",
            "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "HTTPS_PROXY": "",
            "HTTP_PROXY": "",
        }

    # -- serving -----------------------------------------------------------------------------
    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            if not request.is_main:
                return text_reply(["ok"])
            if self._script:
                return self._script.pop(0)
            return self.default

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _send_json(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("request-id", f"req_mock_{uuid.uuid4().hex[:12]}")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                request = RecordedRequest(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body if isinstance(body, dict) else {},
                )
                if not self.path.split("?")[0].endswith("/v1/messages"):
                    with server._lock:
                        server.requests.append(request)
                    if "count_tokens" in self.path:
                        self._send_json(200, {"input_tokens": 10})
                    else:
                        self._send_json(
                            404, {"type": "error", "error": {"type": "not_found_error", "message": "no"}}
                        )
                    return
                reply = server._next_reply(request)
                if isinstance(reply, ErrorReply):
                    self._send_json(
                        reply.status,
                        {"type": "error", "error": {"type": reply.error_type, "message": reply.message}},
                    )
                    return
                if not body.get("stream"):
                    self._send_message(reply)
                    return
                self._stream(reply, request.is_main)

            def _send_message(self, reply: StreamReply) -> None:
                content: list[dict[str, Any]] = []
                for kind, payload in reply.blocks:
                    if kind == "text":
                        content.append({"type": "text", "text": "".join(payload)})
                    else:
                        tool_id, name, chunks = payload
                        content.append(
                            {
                                "type": "tool_use",
                                "id": tool_id,
                                "name": name,
                                "input": json.loads("".join(chunks)),
                            }
                        )
                u = reply.usage
                self._send_json(
                    200,
                    {
                        "id": f"msg_{uuid.uuid4().hex[:24]}",
                        "type": "message",
                        "role": "assistant",
                        "model": reply.model,
                        "content": content,
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": None,
                        "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens},
                    },
                )

            def _stream(self, reply: StreamReply, is_main: bool) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("request-id", f"req_mock_{uuid.uuid4().hex[:12]}")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for is_delta, chunk in _stream_events(reply):
                        if is_delta and reply.delay and server._stop.wait(reply.delay):
                            return
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if is_delta and is_main:
                            server.stream_started.set()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    server.client_disconnected.set()

        return Handler
