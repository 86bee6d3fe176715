"""Argument validation and in-Python filtering shared by the store backends."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..core import AsmError, ErrorCode, Event, EventType, RunStatus, SessionStatus

__all__ = (
    "EventQuery",
    "check_events",
    "check_limit",
    "check_offset",
    "coerce_run_status",
    "coerce_session_status",
)


def _bad(message: str) -> AsmError:
    return AsmError(ErrorCode.VALIDATION_ERROR, message)


def _check_cursor(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{name} must be a non-negative integer, got {value!r}")
    return value


def check_events(events: Sequence[Event]) -> list[Event]:
    """Validate an ``append_events`` batch before anything is written (keeps it atomic)."""
    if isinstance(events, Event | str | bytes) or not isinstance(events, Sequence):
        raise _bad(f"events must be a sequence of Event, got {type(events).__name__}")
    for index, event in enumerate(events):
        if not isinstance(event, Event):
            raise _bad(f"events[{index}] is a {type(event).__name__}, not an Event")
    return list(events)


def check_limit(limit: int | None) -> int | None:
    """Validate a page size (``None`` = unlimited)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise _bad(f"limit must be a positive integer, got {limit!r}")
    return limit


def check_offset(offset: int) -> int:
    """Validate an offset."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise _bad(f"offset must be a non-negative integer, got {offset!r}")
    return offset


def coerce_session_status(status: SessionStatus | str | None) -> SessionStatus | None:
    """Validate a status filter."""
    if status is None:
        return None
    try:
        return SessionStatus(status)
    except ValueError:
        raise AsmError(ErrorCode.INVALID_STATUS, f"Invalid session status: {status!r}") from None


def coerce_run_status(status: RunStatus | str | None) -> RunStatus | None:
    """Validate a status filter."""
    if status is None:
        return None
    try:
        return RunStatus(status)
    except ValueError:
        raise AsmError(ErrorCode.INVALID_STATUS, f"Invalid run status: {status!r}") from None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A validated ``get_events`` query."""

    session_id: str
    after: int | None = None
    before: int | None = None
    limit: int | None = None
    run_id: str | None = None
    types: frozenset[EventType] | None = None
    since: datetime | None = None
    wait_timeout: float = 0.0

    @classmethod
    def build(
        cls,
        session_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        run_id: str | None = None,
        types: Sequence[EventType | str] | None = None,
        since: datetime | None = None,
        wait_timeout: float | None = None,
    ) -> EventQuery:
        """Validate every argument; raises ``AsmError(validation_error)``."""
        if not isinstance(session_id, str) or not session_id:
            raise _bad("session_id must be a non-empty string")
        type_set: frozenset[EventType] | None = None
        if types is not None:
            if isinstance(types, str):
                types = [types]
            try:
                type_set = frozenset(EventType(t) for t in types)
            except ValueError as exc:
                raise AsmError(ErrorCode.INVALID_EVENT_TYPE, str(exc)) from None
        if since is not None and (not isinstance(since, datetime) or since.tzinfo is None):
            raise _bad("since must be a timezone-aware datetime")
        wait = 0.0
        if wait_timeout is not None:
            if (
                isinstance(wait_timeout, bool)
                or not isinstance(wait_timeout, int | float)
                or not math.isfinite(wait_timeout)
                or wait_timeout < 0
            ):
                raise _bad(f"wait_timeout must be a non-negative number, got {wait_timeout!r}")
            wait = float(wait_timeout)
        return cls(
            session_id=session_id,
            after=_check_cursor("after", after),
            before=_check_cursor("before", before),
            limit=check_limit(limit),
            run_id=run_id,
            types=type_set,
            since=since,
            wait_timeout=wait,
        )

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes every filter (cursor bounds included)."""
        seq = event.sequence_number or 0
        if self.after is not None and seq <= self.after:
            return False
        if self.before is not None and seq >= self.before:
            return False
        if self.run_id is not None and event.run_id != self.run_id:
            return False
        if self.types is not None and event.type not in self.types:
            return False
        return not (self.since is not None and event.timestamp < self.since)

    def apply(self, events: Iterable[Event]) -> list[Event]:
        """Filter ``events`` (already in sequence order) and cap at ``limit``."""
        out: list[Event] = []
        for event in events:
            if self.matches(event):
                out.append(event)
                if self.limit is not None and len(out) >= self.limit:
                    break
        return out
