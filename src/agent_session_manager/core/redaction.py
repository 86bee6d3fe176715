"""Redaction of secrets (API keys, bearer tokens) from text and JSON-like data (pure)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ("redact", "redact_data")

_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{4,}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"sgamp_[A-Za-z0-9_\-]{8,}"),
)
# Cheap pre-check on the lower-cased text so ordinary text skips the regex passes.
_HINT = re.compile("sk-|bearer|key|token|secret|password|gh[pousr]_|sgamp_")
_MIN_SECRET = 8
_REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Replace known secret/token patterns in ``text`` with ``[REDACTED]``."""
    if len(text) < _MIN_SECRET:
        return text
    if _HINT.search(text.lower()) is None:
        return text
    for pattern in _SECRET_PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: f"{m.group(1)}{_REDACTED}", text)
        else:
            text = pattern.sub(_REDACTED, text)
    return text


def redact_data(value: Any) -> Any:
    """Return ``value`` with every string (recursively in dicts/lists) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value
