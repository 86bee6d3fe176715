"""Claude Agent SDK messages → normalized provider events, and result → error classification.

One :class:`ClaudeTurn` follows a single run (one user turn of one CLI process). It turns
each typed SDK message into zero or more :class:`ProviderEvent` s and, at the end, either a
:class:`ProviderResult` or an :class:`AsmError`. Kept free of process handling so it can be
tested message by message.

Event payloads (``data``):

* ``run_started``: ``provider_session_id``, ``model``, ``tools``, ``cwd``, ``permission_mode``,
  ``claude_code_version`` (from the ``system/init`` message).
* ``message_streamed``: ``delta`` (the new text) and ``content`` (the text of the current
  assistant message so far), ``message_id``; from ``stream_event`` text deltas.
* ``message_received``: ``role: "assistant"``, ``content``, ``message_id``, ``model`` — one
  per assistant text block (the CLI sends one ``assistant`` line per content block).
* ``tool_call_started``: ``tool_call_id``, ``tool_name``, ``tool_input``.
* ``tool_call_completed`` / ``tool_call_failed``: ``tool_call_id``, ``tool_name``,
  ``tool_input``, ``tool_output`` (text); failed adds ``is_error: True`` and ``error``.
* ``token_usage_updated``: ``input_tokens``, ``output_tokens``, ``cache_read_tokens``,
  ``cache_creation_tokens``, ``total_tokens`` (from the ``result`` message: the run's usage).

Errors: the CLI reports API failures as ``result`` with ``subtype: "success"`` and
``is_error: true`` (see provider_wire_formats §1.2), so failure is judged by ``is_error``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from ..core import AsmError, ErrorCode, EventType, TokenUsage
from ..ports import ProviderEvent, ProviderResult
from ._common import code_for_status, redact, token_usage_from

__all__ = ("ClaudeTurn", "classify_result_error", "code_for_status", "usage_from_result")

# ``AssistantMessage.error`` kinds (the CLI's synthetic API-error message) → codes.
_KIND_CODES: dict[str, ErrorCode] = {
    "authentication_failed": ErrorCode.PROVIDER_AUTHENTICATION_FAILED,
    "rate_limit": ErrorCode.PROVIDER_RATE_LIMITED,
    "server_error": ErrorCode.PROVIDER_UNAVAILABLE,
    "billing_error": ErrorCode.PROVIDER_QUOTA_EXCEEDED,
}
# Result subtypes / terminal reasons that are limits, not provider faults; reported as
# ``provider_error`` with ``details["reason"]`` so callers can tell them apart.
_REASONS: dict[str, str] = {
    "error_max_turns": "max_turns",
    "max_turns": "max_turns",
    "error_max_budget_usd": "max_budget_usd",
    "budget_exhausted": "max_budget_usd",
    "error_max_structured_output_retries": "max_structured_output_retries",
    "prompt_too_long": "prompt_too_long",
}


def usage_from_result(usage: Mapping[str, Any] | None) -> TokenUsage:
    """The :class:`TokenUsage` of a ``result`` message's ``usage`` (summed over the turn)."""
    return token_usage_from(usage)


def _error_text(result: ResultMessage) -> str:
    errors = [e.strip() for e in result.errors or [] if isinstance(e, str) and e.strip()]
    if errors:
        return "; ".join(errors)
    if isinstance(result.result, str) and result.result.strip():
        return result.result.strip()
    if result.api_error_status is not None:
        return f"API error (HTTP {result.api_error_status})"
    return f"Claude Code reported an error result ({result.subtype})"


def classify_result_error(result: ResultMessage, assistant_error: str | None = None) -> AsmError:
    """The :class:`AsmError` for a failed ``result`` (``is_error`` or an ``error_*`` subtype).

    HTTP status first (:func:`~._common.code_for_status`: 401/403 →
    ``provider_authentication_failed``, 402 → ``provider_quota_exceeded``, 408 →
    ``provider_timeout``, 429 → ``provider_rate_limited``, 5xx/529 → ``provider_unavailable``),
    then the kind of the CLI's synthetic error message (``authentication_failed``,
    ``rate_limit``, ``server_error``, ``billing_error``), then limits (``error_max_turns`` etc.
    → ``provider_error`` with ``details["reason"]``);
    anything else is ``provider_error``. The message is redacted.
    """
    status = result.api_error_status
    reason = _REASONS.get(result.subtype) or _REASONS.get(result.terminal_reason or "")
    code = code_for_status(status) or _KIND_CODES.get(assistant_error or "") or ErrorCode.PROVIDER_ERROR
    details: dict[str, Any] = {
        "provider": "claude",
        "subtype": result.subtype,
        "terminal_reason": result.terminal_reason,
        "api_error_status": status,
        "provider_session_id": result.session_id,
        "num_turns": result.num_turns,
    }
    if assistant_error:
        details["api_error_kind"] = assistant_error
    if reason and code is ErrorCode.PROVIDER_ERROR:
        details["reason"] = reason
    if result.errors:
        details["errors"] = [redact(str(e)) for e in result.errors][:10]
    return AsmError(code, redact(_error_text(result)), details)


def _tool_output_text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, Mapping) and isinstance(block.get("text"), str):
            parts.append(block["text"])
        else:
            parts.append(json.dumps(block, default=str))
    return "\n".join(parts)


@dataclass
class _ToolCall:
    id: str
    name: str
    input: dict[str, Any]
    output: str | None = None
    is_error: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "input": self.input,
            "output": self.output,
            "is_error": self.is_error,
        }


@dataclass
class ClaudeTurn:
    """State of one run's turn; feed it SDK messages with :meth:`events_for`."""

    provider_session_id: str | None = None
    model: str | None = None
    started: bool = False
    result: ResultMessage | None = None
    assistant_error: str | None = None
    last_text: str = ""
    _stream_text: str = ""
    _stream_message_id: str | None = None
    _tool_calls: dict[str, _ToolCall] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """A ``result`` message has been seen."""
        return self.result is not None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls seen so far (``id, name, input, output, is_error``), in order."""
        return [call.as_dict() for call in self._tool_calls.values()]

    def events_for(self, message: object) -> list[ProviderEvent]:
        """Normalized events for one SDK message (unknown messages yield none)."""
        if isinstance(message, StreamEvent):
            return self._stream_event(message)
        if isinstance(message, AssistantMessage):
            return self._assistant(message)
        if isinstance(message, UserMessage):
            return self._user(message)
        if isinstance(message, SystemMessage):
            return self._system(message)
        if isinstance(message, ResultMessage):
            return self._result(message)
        return []

    # -- per message type ---------------------------------------------------------------------
    def _system(self, message: SystemMessage) -> list[ProviderEvent]:
        if message.subtype != "init" or self.started:
            return []
        data = message.data
        self.started = True
        session_id = data.get("session_id")
        self.provider_session_id = session_id if isinstance(session_id, str) else None
        model = data.get("model")
        self.model = model if isinstance(model, str) else None
        tools = data.get("tools")
        return [
            ProviderEvent(
                type=EventType.RUN_STARTED,
                data={
                    "provider_session_id": self.provider_session_id,
                    "model": self.model,
                    "tools": [t for t in tools if isinstance(t, str)] if isinstance(tools, list) else [],
                    "cwd": data.get("cwd"),
                    "permission_mode": data.get("permissionMode"),
                    "claude_code_version": data.get("claude_code_version"),
                },
            )
        ]

    def _stream_event(self, message: StreamEvent) -> list[ProviderEvent]:
        if message.parent_tool_use_id is not None:
            return []  # a sub-agent's stream; its tool calls still arrive as messages
        event = message.event
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message")
            msg_id = msg.get("id") if isinstance(msg, Mapping) else None
            self._stream_message_id = msg_id if isinstance(msg_id, str) else None
            self._stream_text = ""
            return []
        if kind != "content_block_delta":
            return []
        delta = event.get("delta")
        if not isinstance(delta, Mapping) or delta.get("type") != "text_delta":
            return []
        text = delta.get("text")
        if not isinstance(text, str) or not text:
            return []
        self._stream_text += text
        return [
            ProviderEvent(
                type=EventType.MESSAGE_STREAMED,
                data={"delta": text, "content": self._stream_text, "message_id": self._stream_message_id},
            )
        ]

    def _assistant(self, message: AssistantMessage) -> list[ProviderEvent]:
        if message.error is not None:
            # The CLI's synthetic message for an API failure; the result carries the error.
            self.assistant_error = str(message.error)
            return []
        events: list[ProviderEvent] = []
        for block in message.content:
            if isinstance(block, TextBlock) and block.text:
                if message.parent_tool_use_id is None:
                    self.last_text = block.text
                    events.append(
                        ProviderEvent(
                            type=EventType.MESSAGE_RECEIVED,
                            data={
                                "role": "assistant",
                                "content": block.text,
                                "message_id": message.message_id,
                                "model": message.model,
                            },
                        )
                    )
            elif isinstance(block, ToolUseBlock):
                tool_input = block.input if isinstance(block.input, dict) else {}
                self._tool_calls[block.id] = _ToolCall(block.id, block.name, tool_input)
                events.append(
                    ProviderEvent(
                        type=EventType.TOOL_CALL_STARTED,
                        data={"tool_call_id": block.id, "tool_name": block.name, "tool_input": tool_input},
                    )
                )
        return events

    def _user(self, message: UserMessage) -> list[ProviderEvent]:
        if isinstance(message.content, str):
            return []
        events: list[ProviderEvent] = []
        for block in message.content:
            if not isinstance(block, ToolResultBlock):
                continue
            call = self._tool_calls.get(block.tool_use_id)
            if call is None:
                call = _ToolCall(block.tool_use_id, "unknown", {})
                self._tool_calls[block.tool_use_id] = call
            call.output = _tool_output_text(block.content)
            call.is_error = bool(block.is_error)
            data: dict[str, Any] = {
                "tool_call_id": call.id,
                "tool_name": call.name,
                "tool_input": call.input,
                "tool_output": call.output,
            }
            if call.is_error:
                data.update(is_error=True, error=call.output)
                events.append(ProviderEvent(type=EventType.TOOL_CALL_FAILED, data=data))
            else:
                events.append(ProviderEvent(type=EventType.TOOL_CALL_COMPLETED, data=data))
        return events

    def _result(self, message: ResultMessage) -> list[ProviderEvent]:
        self.result = message
        if self.provider_session_id is None and message.session_id:
            self.provider_session_id = message.session_id
        usage = usage_from_result(message.usage)
        return [
            ProviderEvent(
                type=EventType.TOKEN_USAGE_UPDATED,
                data={
                    **usage.model_dump(mode="json"),
                    "cost_usd": message.total_cost_usd,
                    "num_turns": message.num_turns,
                },
            )
        ]

    # -- outcome ------------------------------------------------------------------------------
    def failed(self) -> bool:
        """The result reports a failure (``is_error`` or a non-success subtype)."""
        return self.result is not None and (self.result.is_error or self.result.subtype != "success")

    def error(self) -> AsmError:
        """The error of a failed result (see :func:`classify_result_error`)."""
        assert self.result is not None
        return classify_result_error(self.result, self.assistant_error)

    def provider_result(self) -> ProviderResult:
        """The :class:`ProviderResult` of a successful turn."""
        assert self.result is not None
        result = self.result
        content = result.result if isinstance(result.result, str) else self.last_text
        return ProviderResult(
            output={
                "content": content,
                "tool_calls": self.tool_calls,
                "stop_reason": result.stop_reason or "end_turn",
            },
            token_usage=usage_from_result(result.usage),
            cost_usd=result.total_cost_usd if result.total_cost_usd is not None else None,
            provider_session_id=self.provider_session_id,
            model=self.model,
            turn_count=max(0, result.num_turns),
        )
