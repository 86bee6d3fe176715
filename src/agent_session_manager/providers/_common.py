"""Pure helpers shared by the provider adapters.

Prompt extraction, permission-mode validation, provider-session lookup, usage conversion,
error classification (HTTP status / error message → :class:`ErrorCode`) and redaction. No I/O:
process and environment helpers live in :mod:`._subprocess`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..core import AsmError, ErrorCode, PermissionMode, Run, Session, TokenUsage
from ..core.redaction import redact

__all__ = (
    "classify_error_message",
    "code_for_status",
    "conversation_from_input",
    "max_turns_error",
    "normalize_max_turns",
    "normalize_permission_mode",
    "prompt_from_input",
    "provider_session_entry",
    "redact",
    "resume_id_for",
    "token_usage_from",
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


def normalize_max_turns(value: Any) -> int | None:
    """Validate a ``max_turns`` option: a positive ``int`` or ``None`` (no limit).

    Raises ``AsmError(validation_error)`` otherwise (``bool`` is rejected although it is an int).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"max_turns must be a positive int or None, got {value!r}")
    return value


def max_turns_error(provider: str, max_turns: int, num_turns: int, **details: Any) -> AsmError:
    """The error of a run stopped by ``max_turns``: what ClaudeAdapter raises for ``error_max_turns``.

    ``provider_error`` with ``details["reason"] == "max_turns"``, the limit in
    ``details["max_turns"]`` and the turn that crossed it in ``details["num_turns"]``.
    """
    return AsmError(
        ErrorCode.PROVIDER_ERROR,
        f"{provider} run stopped: reached max_turns={max_turns}",
        {
            "provider": provider,
            **details,
            "reason": "max_turns",
            "max_turns": max_turns,
            "num_turns": num_turns,
        },
    )


def provider_session_entry(session: Session, provider: str) -> Mapping[str, Any] | None:
    """``session.metadata["provider_sessions"][provider]`` when it is a mapping, else ``None``."""
    sessions = session.metadata.get("provider_sessions")
    entry = sessions.get(provider) if isinstance(sessions, Mapping) else None
    return entry if isinstance(entry, Mapping) else None


def resume_id_for(session: Session, provider: str) -> str | None:
    """The provider-native session/thread id recorded on ``session`` for ``provider``."""
    entry = provider_session_entry(session, provider)
    value = entry.get("provider_session_id") if entry is not None else None
    return value if isinstance(value, str) and value else None


def token_usage_from(
    raw: Any,
    *,
    cache_read_key: str = "cache_read_input_tokens",
    cache_creation_key: str = "cache_creation_input_tokens",
) -> TokenUsage:
    """A :class:`TokenUsage` from a provider usage object (``input_tokens``, ``output_tokens``, …).

    The defaults are the Anthropic field names (Claude, Amp); Codex passes its own cache keys.
    Anything that is not a mapping (``None``, garbage) gives zero usage; missing, negative or
    non-numeric counts count as 0 and floats are truncated.
    """
    if not isinstance(raw, Mapping):
        return TokenUsage()

    def num(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) and value > 0 else 0

    return TokenUsage(
        input_tokens=num("input_tokens"),
        output_tokens=num("output_tokens"),
        cache_read_tokens=num(cache_read_key),
        cache_creation_tokens=num(cache_creation_key),
    )


# -- error classification ------------------------------------------------------------------

_AUTH_STATUSES = frozenset({401, 403})
_QUOTA_STATUSES = frozenset({402})
_TIMEOUT_STATUSES = frozenset({408})


def code_for_status(status: int | None) -> ErrorCode | None:
    """The error code an HTTP status of a model API maps to (``None``: no opinion).

    401/403 → ``provider_authentication_failed``, 402 → ``provider_quota_exceeded``, 408 →
    ``provider_timeout``, 429 → ``provider_rate_limited``, 5xx (529 "overloaded" included) →
    ``provider_unavailable``; other statuses (and ``None``) → ``None``.
    """
    if status is None:
        return None
    if status in _AUTH_STATUSES:
        return ErrorCode.PROVIDER_AUTHENTICATION_FAILED
    if status in _QUOTA_STATUSES:
        return ErrorCode.PROVIDER_QUOTA_EXCEEDED
    if status in _TIMEOUT_STATUSES:
        return ErrorCode.PROVIDER_TIMEOUT
    if status == 429:
        return ErrorCode.PROVIDER_RATE_LIMITED
    if status >= 500:
        return ErrorCode.PROVIDER_UNAVAILABLE
    return None


# Checked in order: quota before rate limit because OpenAI's ``insufficient_quota`` arrives as
# a 429 that retrying cannot fix.
_MESSAGE_CLASSIFIERS: tuple[tuple[ErrorCode, re.Pattern[str]], ...] = (
    (
        ErrorCode.PROVIDER_AUTHENTICATION_FAILED,
        re.compile(
            r"\b401\b|\b403\b|unauthori[sz]ed|forbidden|invalid[ _-]?api[ _-]?key|incorrect api key|"
            r"authenticat|not logged in|no (?:codex )?credentials|login required|no api key",
            re.I,
        ),
    ),
    (ErrorCode.PROVIDER_QUOTA_EXCEEDED, re.compile(r"quota|insufficient[_ ]credits|billing", re.I)),
    (ErrorCode.PROVIDER_RATE_LIMITED, re.compile(r"\b429\b|rate[ _-]?limit|too many requests", re.I)),
    (
        ErrorCode.PROVIDER_UNAVAILABLE,
        re.compile(
            r"\b5\d\d\b|overloaded|high demand|unavailable|internal server error|server_error|"
            r"bad gateway|gateway timeout|reconnecting|connection (?:refused|reset)|couldn't connect|"
            r"could not connect|stream disconnected|network",
            re.I,
        ),
    ),
)


def classify_error_message(message: str) -> ErrorCode:
    """Map a provider's free-text error message to an :class:`ErrorCode`.

    For CLIs that report failures as text only (Codex ``turn.failed``, Amp error results and
    stderr). 401/403/invalid key → ``provider_authentication_failed``; quota/billing (OpenAI's
    ``insufficient_quota`` arrives as a 429, but retrying cannot help) →
    ``provider_quota_exceeded``; 429/rate limit → ``provider_rate_limited``; 5xx, overloaded,
    "high demand", connection failures → ``provider_unavailable``; anything else →
    ``provider_error``. When a numeric HTTP status is known, use :func:`code_for_status`.
    """
    for code, pattern in _MESSAGE_CLASSIFIERS:
        if pattern.search(message):
            return code
    return ErrorCode.PROVIDER_ERROR
