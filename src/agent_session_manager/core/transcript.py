"""Transcripts: the conversation a session's events describe (pure).

Built from persisted events: ``message_sent``/``message_received`` become user/assistant
messages, ``message_streamed`` deltas accumulate into one assistant message (replaced by the
final ``message_received`` text when it arrives), ``tool_call_started`` becomes an assistant
tool call and ``tool_call_completed``/``tool_call_failed`` a tool message. Incremental updates
(:meth:`Transcript.extend`) take only events after ``last_sequence``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ._base import DomainModel
from .enums import EventType
from .errors import AsmError, ErrorCode
from .models import Event

__all__ = ("Transcript", "TranscriptMessage", "build_transcript")


class TranscriptMessage(DomainModel):
    """One message of a transcript."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_call_id: str | None = None
    tool_name: str | None = None
    tool_input: dict[str, Any] | None = None
    tool_output: Any = None
    sequence_number: int | None = None
    run_id: str | None = None


class Transcript(DomainModel):
    """Messages of a session plus the cursor they were built up to."""

    session_id: str
    messages: list[TranscriptMessage] = Field(default_factory=list)
    last_sequence: int = 0
    last_timestamp: datetime | None = None
    pending_stream: str = ""

    def extend(
        self,
        events: Iterable[Event],
        *,
        max_messages: int | None = None,
        max_chars: int | None = None,
        max_tokens_approx: int | None = None,
    ) -> Transcript:
        """Return a transcript with ``events`` after ``last_sequence`` applied, then truncated.

        Truncation keeps the most recent messages within every limit given (``max_chars`` and
        ``max_tokens_approx`` — about 4 characters a token — count text, tool names, inputs
        and outputs). Limits are positive integers or ``None``; anything else raises
        ``AsmError(validation_error)``. Extending a truncated transcript with the same limits
        gives the same messages as rebuilding from every event.
        """
        messages = list(self.messages)
        buffer = self.pending_stream
        last_seq = self.last_sequence
        last_ts = self.last_timestamp
        # Stored events by sequence number; events not (yet) stored after them, in time order.
        for event in sorted(
            events, key=lambda e: (e.sequence_number is None, e.sequence_number or 0, e.timestamp)
        ):
            seq = event.sequence_number or 0
            if seq and seq <= self.last_sequence:
                continue
            buffer = _apply(messages, buffer, event)
            last_seq = max(last_seq, seq)
            last_ts = event.timestamp
        return Transcript(
            session_id=self.session_id,
            messages=_truncate(
                messages, max_messages=max_messages, max_chars=max_chars, max_tokens_approx=max_tokens_approx
            ),
            last_sequence=last_seq,
            last_timestamp=last_ts,
            pending_stream=buffer,
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else repr(value))


def _first(data: dict[str, Any], *keys: str) -> Any:
    """The first non-None value among ``keys`` (canonical key first, then provider aliases)."""
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _opt_str(value: Any) -> str | None:
    return None if value is None else _text(value)


def _tool_call_id(data: dict[str, Any]) -> str | None:
    return _opt_str(_first(data, "tool_call_id", "tool_use_id", "call_id"))


def _apply(messages: list[TranscriptMessage], buffer: str, event: Event) -> str:
    data = event.data
    common = {"sequence_number": event.sequence_number, "run_id": event.run_id}
    kind = event.type
    if kind is EventType.MESSAGE_STREAMED:
        if data.get("kind") in (None, "text"):
            return buffer + _text(data.get("delta") or data.get("content"))
        return buffer
    if kind in (EventType.MESSAGE_SENT, EventType.MESSAGE_RECEIVED):
        default = "user" if kind is EventType.MESSAGE_SENT else "assistant"
        role = str(data.get("role") or default)
        content = _text(data.get("content")) or (buffer if role == "assistant" else "")
        if role not in ("system", "user", "assistant", "tool"):
            role = default
        if buffer and role != "assistant":
            # Deltas of an answer that never got its final message stay before the next turn.
            messages.append(TranscriptMessage(role="assistant", content=buffer, **common))
        if content:
            messages.append(TranscriptMessage(role=role, content=content, **common))
        return ""
    if kind is EventType.TOOL_CALL_STARTED:
        tool_input = _first(data, "tool_input", "input", "arguments")
        messages.append(
            TranscriptMessage(
                role="assistant",
                tool_call_id=_tool_call_id(data),
                tool_name=_opt_str(data.get("tool_name")),
                tool_input=tool_input if isinstance(tool_input, dict) else None,
                **common,
            )
        )
    elif kind in (EventType.TOOL_CALL_COMPLETED, EventType.TOOL_CALL_FAILED):
        messages.append(
            TranscriptMessage(
                role="tool",
                tool_call_id=_tool_call_id(data),
                tool_name=_opt_str(data.get("tool_name")),
                tool_output=_first(data, "tool_output", "output", "content", "result"),
                **common,
            )
        )
    elif kind in (
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_TIMEOUT,
    ):
        if buffer:
            messages.append(TranscriptMessage(role="assistant", content=buffer, **common))
        return ""
    return buffer


def _size(msg: TranscriptMessage) -> int:
    """Characters a message costs against a budget: its text, tool name, input and output."""
    size = len(msg.content or "") + len(msg.tool_name or "")
    if msg.tool_input:
        size += len(json.dumps(msg.tool_input, default=str))
    if msg.tool_output is not None:
        output = msg.tool_output
        size += len(output) if isinstance(output, str) else len(json.dumps(output, default=str))
    return size


def _check_limit(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR, f"{name} must be a positive integer or None, got {value!r}"
        )
    return value


def _truncate(
    messages: list[TranscriptMessage],
    *,
    max_messages: int | None = None,
    max_chars: int | None = None,
    max_tokens_approx: int | None = None,
) -> list[TranscriptMessage]:
    """Keep the longest suffix within every given limit (tokens are approximated as chars / 4)."""
    max_messages = _check_limit("max_messages", max_messages)
    max_chars = _check_limit("max_chars", max_chars)
    max_tokens_approx = _check_limit("max_tokens_approx", max_tokens_approx)
    if max_messages is not None:
        messages = messages[-max_messages:]
    budgets = [b for b in (max_chars, max_tokens_approx * 4 if max_tokens_approx else None) if b is not None]
    if not budgets:
        return messages
    budget = min(budgets)
    kept: list[TranscriptMessage] = []
    used = 0
    for msg in reversed(messages):
        size = _size(msg)
        if used + size > budget:
            break
        used += size
        kept.append(msg)
    kept.reverse()
    return kept


def build_transcript(
    events: Iterable[Event],
    *,
    session_id: str | None = None,
    max_messages: int | None = None,
    max_chars: int | None = None,
    max_tokens_approx: int | None = None,
) -> Transcript:
    """Build a :class:`Transcript` from events (in any order; sorted by sequence number)."""
    events = list(events)
    sid = session_id or (events[0].session_id if events else "unknown")
    return Transcript(session_id=sid).extend(
        events, max_messages=max_messages, max_chars=max_chars, max_tokens_approx=max_tokens_approx
    )
