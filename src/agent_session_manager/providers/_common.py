"""Helpers shared by the provider adapters: prompt extraction, options, redaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core import AsmError, ErrorCode, PermissionMode, Run, Session
from ..core.redaction import redact

__all__ = (
    "conversation_from_input",
    "normalize_permission_mode",
    "prompt_from_input",
    "redact",
    "resume_id_for",
)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        parts = []
        for block in content:
            if isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, str):
                parts.append(block)
        return "\n".join(parts)
    return "" if content is None else str(content)


def conversation_from_input(run: Run, session: Session | None = None) -> list[dict[str, str]]:
    """Messages of the run's input as ``[{"role", "content"}]`` (prior transcript first).

    Accepts ``{"messages": [...]}``, ``{"prompt": "..."}`` and a plain ``{"content": ...}``.
    When ``session.context["transcript"]`` holds replayed messages (continuation), they
    are placed before the run's own messages.
    """
    messages: list[dict[str, str]] = []
    if session is not None:
        transcript = session.context.get("transcript")
        raw = transcript.get("messages") if isinstance(transcript, Mapping) else transcript
        if isinstance(raw, Sequence) and not isinstance(raw, str):
            for msg in raw:
                if isinstance(msg, Mapping):
                    text = _content_text(msg.get("content"))
                    if text:
                        messages.append({"role": str(msg.get("role") or "user"), "content": text})
    data = run.input
    raw_messages = data.get("messages")
    if isinstance(raw_messages, Sequence) and not isinstance(raw_messages, str):
        for msg in raw_messages:
            if isinstance(msg, Mapping):
                text = _content_text(msg.get("content"))
                if text:
                    messages.append({"role": str(msg.get("role") or "user").lower(), "content": text})
    elif isinstance(data.get("prompt"), str) and data["prompt"]:
        messages.append({"role": "user", "content": data["prompt"]})
    elif isinstance(data.get("content"), str) and data["content"]:
        messages.append({"role": "user", "content": data["content"]})
    return messages


def prompt_from_input(run: Run, session: Session | None = None) -> str:
    """One prompt string for CLIs that take a single prompt.

    With a single user message (and no replayed transcript) this is its content. Otherwise
    earlier messages are rendered as a transcript block followed by the last user message.

    Raises:
        AsmError: ``invalid_input`` when the input has no message text.
    """
    messages = conversation_from_input(run, session)
    if not messages:
        raise AsmError(
            ErrorCode.INVALID_INPUT,
            "run input has no prompt: give {'prompt': str} or {'messages': [...]}",
        )
    if len(messages) == 1:
        return messages[0]["content"]
    *history, last = messages
    lines = ["<conversation_so_far>"]
    lines += [f"{m['role']}: {m['content']}" for m in history]
    lines.append("</conversation_so_far>")
    lines.append("")
    lines.append(last["content"])
    return "\n".join(lines)


def normalize_permission_mode(value: PermissionMode | str | None) -> PermissionMode | None:
    """Validate a permission mode; raises ``AsmError(validation_error)`` for unknown ones."""
    if value is None:
        return None
    try:
        return PermissionMode(value)
    except ValueError:
        valid = ", ".join(m.value for m in PermissionMode)
        raise AsmError(
            ErrorCode.VALIDATION_ERROR, f"invalid permission_mode {value!r}; expected one of {valid}"
        ) from None


def resume_id_for(session: Session, provider: str) -> str | None:
    """The provider-native session/thread id recorded on ``session`` for ``provider``."""
    sessions = session.metadata.get("provider_sessions")
    if isinstance(sessions, Mapping):
        entry = sessions.get(provider)
        if isinstance(entry, Mapping):
            value = entry.get("provider_session_id")
            return value if isinstance(value, str) and value else None
    return None
