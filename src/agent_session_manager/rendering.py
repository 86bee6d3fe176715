"""Terminal rendering of events (rich): one readable line per event, deltas streamed inline."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.text import Text

from .core import Event, EventType

__all__ = ("EventRenderer", "summarize_event")

_STYLE: dict[str, str] = {
    "session": "magenta",
    "run": "bold cyan",
    "message": "green",
    "tool": "yellow",
    "error": "bold red",
    "token": "blue",
    "policy": "red",
    "workspace": "blue",
}
_FAILED = {EventType.RUN_FAILED, EventType.RUN_TIMEOUT, EventType.SESSION_FAILED, EventType.TOOL_CALL_FAILED}


def _short(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize_event(event: Event) -> str:
    """A one-line human summary of an event's data."""
    d = event.data
    t = event.type
    if t in (EventType.MESSAGE_SENT, EventType.MESSAGE_RECEIVED):
        return f"{d.get('role', '')}: {_short(d.get('content', ''))}"
    if t is EventType.MESSAGE_STREAMED:
        return _short(d.get("delta") or d.get("content") or "")
    if t is EventType.TOOL_CALL_STARTED:
        return f"{d.get('tool_name')} {_short(d.get('tool_input', {}), 60)}"
    if t in (EventType.TOOL_CALL_COMPLETED, EventType.TOOL_CALL_FAILED):
        return f"{d.get('tool_name')} → {_short(d.get('tool_output', ''), 60)}"
    if t is EventType.TOKEN_USAGE_UPDATED:
        return f"in={d.get('input_tokens', 0)} out={d.get('output_tokens', 0)}"
    if t is EventType.RUN_STARTED:
        parts = [f"provider={d.get('provider')}"]
        if d.get("model"):
            parts.append(f"model={d['model']}")
        return " ".join(parts)
    if t is EventType.RUN_COMPLETED:
        usage = d.get("token_usage") or {}
        return f"stop={d.get('stop_reason')} tokens={usage.get('total_tokens', 0)}"
    if "error_code" in d:
        return f"{d['error_code']}: {_short(d.get('error_message', ''))}"
    return _short(d) if d else ""


class EventRenderer:
    """Prints events to a console; consecutive ``message_streamed`` deltas print inline."""

    def __init__(self, console: Console | None = None, *, stream_deltas: bool = True) -> None:
        self.console = console or Console(highlight=False)
        self.stream_deltas = stream_deltas
        self._streaming = False

    def __call__(self, event: Event) -> None:
        """Render one event."""
        if event.type is EventType.MESSAGE_STREAMED and self.stream_deltas:
            if not self._streaming:
                self.console.print(self._prefix(event), end="")
                self._streaming = True
            delta = event.data.get("delta") or event.data.get("content") or ""
            self.console.print(Text(str(delta), style="green"), end="")
            return
        self.close_stream()
        line = self._prefix(event)
        line.append(summarize_event(event))
        self.console.print(line)

    def close_stream(self) -> None:
        """End an inline delta line, if one is open."""
        if self._streaming:
            self.console.print()
            self._streaming = False

    def _prefix(self, event: Event) -> Text:
        group = event.type.value.split("_", 1)[0]
        style = "bold red" if event.type in _FAILED else _STYLE.get(group, "white")
        text = Text()
        text.append(f"{event.sequence_number or '-':>5} ", style="dim")
        text.append(event.timestamp.strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
        text.append(f"{event.type.value:<22}", style=style)
        return text
