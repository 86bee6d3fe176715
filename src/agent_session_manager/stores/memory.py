"""InMemorySessionStore: the reference implementation of the store contract."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import anyio

from ..core import AsmError, ErrorCode, Event, Run, RunStatus, Session, SessionStatus
from ..ports import SessionStore
from ..ports._query import (
    EventQuery,
    check_events,
)

__all__ = ("InMemorySessionStore",)


class _Log:
    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []


class _Signal:
    """Wakes a session's long-pollers; dropped once set or once its last waiter leaves."""

    __slots__ = ("event", "waiters")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.waiters = 0


class InMemorySessionStore(SessionStore):
    """A process-local store; fast (no I/O), not durable.

    Appends are O(1) (event ids are indexed); reads with ``after`` bisect the log. All
    methods must be called from the event loop that uses the store.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._runs: dict[str, Run] = {}
        self._logs: dict[str, _Log] = {}
        # Kept apart from the logs so that polling an unknown (or deleted) session leaves
        # nothing behind once the poll ends.
        self._signals: dict[str, _Signal] = {}
        self._event_ids: dict[str, Event] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise AsmError(ErrorCode.STORAGE_CONNECTION_FAILED, "store is closed")

    async def save_session(self, session: Session) -> None:  # noqa: D102
        self._check_open()
        self._sessions[session.id] = session

    async def get_session(self, session_id: str) -> Session:  # noqa: D102
        self._check_open()
        try:
            return self._sessions[session_id]
        except KeyError:
            raise AsmError(ErrorCode.SESSION_NOT_FOUND, f"Session not found: {session_id}") from None

    async def _list_sessions(
        self,
        wanted: SessionStatus | None,
        agent_id: str | None,
        tags: Sequence[str] | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        self._check_open()
        need = set(tags or ())
        rows = [
            s
            for s in self._sessions.values()
            if (wanted is None or s.status is wanted)
            and (agent_id is None or s.agent_id == agent_id)
            and need.issubset(s.tags)
        ]
        rows.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        end = None if limit is None else offset + limit
        return rows[offset:end]

    async def delete_session(self, session_id: str) -> None:  # noqa: D102
        self._check_open()
        self._sessions.pop(session_id, None)
        for run_id in [r.id for r in self._runs.values() if r.session_id == session_id]:
            del self._runs[run_id]
        log = self._logs.pop(session_id, None)
        if log is not None:
            for event in log.events:
                self._event_ids.pop(event.id, None)
        self._notify(session_id)

    async def save_run(self, run: Run) -> None:  # noqa: D102
        self._check_open()
        self._runs[run.id] = run

    async def get_run(self, run_id: str) -> Run:  # noqa: D102
        self._check_open()
        try:
            return self._runs[run_id]
        except KeyError:
            raise AsmError(ErrorCode.RUN_NOT_FOUND, f"Run not found: {run_id}") from None

    async def _list_runs(self, session_id: str, wanted: RunStatus | None, limit: int | None) -> list[Run]:
        self._check_open()
        rows = [
            r
            for r in self._runs.values()
            if r.session_id == session_id and (wanted is None or r.status is wanted)
        ]
        rows.sort(key=lambda r: (r.created_at, r.id))
        return rows if limit is None else rows[:limit]

    async def get_active_run(self, session_id: str) -> Run | None:  # noqa: D102
        running = await self.list_runs(session_id, status=RunStatus.RUNNING, limit=1)
        return running[0] if running else None

    def _append(self, event: Event) -> Event:
        stored = self._event_ids.get(event.id)
        if stored is not None:
            return stored
        log = self._logs.get(event.session_id)
        if log is None:
            log = self._logs[event.session_id] = _Log()
        stored = event.with_sequence(len(log.events) + 1)
        log.events.append(stored)
        self._event_ids[stored.id] = stored
        return stored

    def _notify(self, session_id: str) -> None:
        signal = self._signals.pop(session_id, None)
        if signal is not None:
            signal.event.set()

    async def append_event(self, event: Event) -> Event:  # noqa: D102
        self._check_open()
        if not isinstance(event, Event):
            check_events([event])  # raises the typed validation error
        stored = self._append(event)
        self._notify(event.session_id)
        return stored

    async def append_events(self, events: Sequence[Event]) -> list[Event]:  # noqa: D102
        self._check_open()
        # Every item is checked first: Events are validated at construction, so once the
        # batch is known to hold only Events it cannot fail half-way.
        events = check_events(events)
        stored = [self._append(e) for e in events]
        for session_id in {e.session_id for e in events}:
            self._notify(session_id)
        return stored

    def _read(self, query: EventQuery) -> list[Event]:
        log = self._logs.get(query.session_id)
        if log is None:
            return []
        start = (
            0
            if query.after is None
            else bisect.bisect_right(log.events, query.after, key=lambda e: e.sequence_number or 0)
        )
        return query.apply(log.events[start:])

    async def _get_events(self, query: EventQuery) -> list[Event]:
        self._check_open()
        session_id = query.session_id
        found = self._read(query)
        if found or query.wait_timeout <= 0:
            return found
        with anyio.move_on_after(query.wait_timeout):
            while not found and not self._closed:
                await self._wait_for_change(session_id)
                if self._closed:
                    return []
                found = self._read(query)
        return found

    async def _wait_for_change(self, session_id: str) -> None:
        signal = self._signals.get(session_id)
        if signal is None:
            signal = self._signals[session_id] = _Signal()
        signal.waiters += 1
        try:
            await signal.event.wait()
        finally:
            signal.waiters -= 1
            if not signal.waiters and self._signals.get(session_id) is signal:
                del self._signals[session_id]

    async def get_latest_sequence(self, session_id: str) -> int:  # noqa: D102
        self._check_open()
        log = self._logs.get(session_id)
        return len(log.events) if log else 0

    async def close(self) -> None:  # noqa: D102
        if self._closed:
            return
        self._closed = True
        signals, self._signals = self._signals, {}
        for signal in signals.values():
            signal.event.set()
