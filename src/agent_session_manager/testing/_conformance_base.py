"""Registry and helpers of the store conformance checks (see :mod:`.conformance`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core import AsmError, ErrorCode, Event, EventType, Run, RunStatus, Session, SessionStatus
from ..ports import SessionStore

__all__ = (
    "BASE_TIME",
    "CHECKS",
    "Check",
    "CheckFn",
    "append_many",
    "check",
    "expect_asm_error",
    "make_event",
    "make_run",
    "new_session",
    "seqs",
)

CheckFn = Callable[[SessionStore], Awaitable[None]]

#: A fixed, timezone-aware origin for timestamps the checks control.
BASE_TIME = datetime(2024, 5, 17, 12, 0, 0, 123456, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Check:
    """A named conformance check: an async function run against a fresh, empty store."""

    name: str
    fn: CheckFn
    description: str


#: Every check, in registration (= run) order.
CHECKS: list[Check] = []


def check(name: str) -> Callable[[CheckFn], CheckFn]:
    """Register the decorated coroutine function as the check ``name`` (names are unique)."""

    def register(fn: CheckFn) -> CheckFn:
        if any(c.name == name for c in CHECKS):
            raise ValueError(f"duplicate conformance check name: {name}")
        doc = (fn.__doc__ or "").strip().splitlines()
        CHECKS.append(Check(name, fn, doc[0] if doc else name))
        return fn

    return register


@contextmanager
def expect_asm_error(*codes: ErrorCode) -> Iterator[None]:
    """Assert that the body raises ``AsmError`` (with one of ``codes`` when given)."""
    try:
        yield
    except AsmError as exc:
        if codes and exc.code not in codes:
            wanted = ", ".join(c.value for c in codes)
            raise AssertionError(
                f"expected AsmError({wanted}), got AsmError({exc.code.value}): {exc}"
            ) from exc
        return
    wanted = ", ".join(c.value for c in codes) or "any code"
    raise AssertionError(f"expected AsmError({wanted}), but nothing was raised")


async def new_session(
    store: SessionStore,
    *,
    agent_id: str = "agent",
    status: SessionStatus = SessionStatus.PENDING,
    tags: Sequence[str] = (),
    created_at: datetime | None = None,
    **fields: Any,
) -> Session:
    """Save and return a new session."""
    extra: dict[str, Any] = dict(fields)
    if created_at is not None:
        extra["created_at"] = created_at
        extra.setdefault("updated_at", created_at)
    session = Session(agent_id=agent_id, status=status, tags=list(tags), **extra)
    await store.save_session(session)
    return session


def make_run(session: Session, *, status: RunStatus = RunStatus.PENDING, **fields: Any) -> Run:
    """A run of ``session`` (not saved)."""
    return Run(session_id=session.id, status=status, **fields)


def make_event(
    session_id: str,
    event_type: EventType = EventType.MESSAGE_STREAMED,
    *,
    run_id: str | None = None,
    offset_s: float = 0.0,
    **fields: Any,
) -> Event:
    """An event whose timestamp is ``BASE_TIME + offset_s`` seconds (not appended)."""
    fields.setdefault("timestamp", BASE_TIME + timedelta(seconds=offset_s))
    return Event(type=event_type, session_id=session_id, run_id=run_id, **fields)


async def append_many(
    store: SessionStore,
    session_id: str,
    count: int,
    event_type: EventType = EventType.MESSAGE_STREAMED,
    *,
    run_id: str | None = None,
) -> list[Event]:
    """Append ``count`` events one by one and return the stored events."""
    return [
        await store.append_event(make_event(session_id, event_type, run_id=run_id, offset_s=i, data={"i": i}))
        for i in range(count)
    ]


def seqs(events: Iterable[Event]) -> list[int | None]:
    """The sequence numbers of ``events``."""
    return [e.sequence_number for e in events]
