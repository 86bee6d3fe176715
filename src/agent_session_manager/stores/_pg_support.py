"""Helpers of the PostgreSQL store: error mapping, row codecs, append statements, waiters."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout
from pydantic_core import PydanticSerializationError, to_json

from ..core import AsmError, ErrorCode, Event
from . import _pg_sql as sql

AsyncConn = psycopg.AsyncConnection[TupleRow]
AsyncCur = psycopg.AsyncCursor[TupleRow]
T = TypeVar("T")

_MIGRATION_LOCK = 0x61736D5F736368  # "asm_sch": advisory lock key serializing schema migrations
_RETRYABLE_STATES = frozenset({"40001", "40P01", "23505"})  # serialization, deadlock, unique_violation
_ATTEMPTS = 8
_FIRST_POOL_WAIT = 1.0
# UTC timestamps; generic plans, because custom plans re-plan the append statement every time.
_SERVER_OPTIONS = "-c TimeZone=UTC -c plan_cache_mode=force_generic_plan"
_BATCH_KEYS = ("ids", "sids", "types", "runs", "ts", "data", "meta", "prov")
_CONNECTION_STATES = frozenset({"57P01", "57P02", "57P03", "3D000", "28000", "28P01"})


def _normalize_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and scheme.startswith(("postgresql+", "postgres+")):
        return "postgresql://" + rest
    return url


def _is_connection_failure(exc: BaseException) -> bool:
    if isinstance(exc, PoolTimeout | PoolClosed | psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in _CONNECTION_STATES


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _translate(exc: BaseException, operation: str, code: ErrorCode) -> AsmError:
    if isinstance(exc, AsmError):
        return exc
    details: dict[str, Any] = {"operation": operation, "error_type": type(exc).__name__}
    if isinstance(exc, psycopg.Error) and exc.sqlstate:
        details["sqlstate"] = exc.sqlstate
    if _is_connection_failure(exc):
        code = ErrorCode.STORAGE_CONNECTION_FAILED
    return AsmError(code, f"PostgreSQL {operation} failed: {_describe(exc)}", details)


async def _check_pooled(conn: AsyncConn) -> None:
    """Pool ``check``: discard connections that died while idle, without a round trip.

    An idle pooled connection never has input pending; a readable socket means the server
    sent an error (e.g. the backend was terminated) or closed it, so only then is the
    connection verified with an empty query (which raises if it is broken).
    """
    if _looks_broken(conn):
        await AsyncConnectionPool.check_connection(conn)


class _Waiters:
    """Per-session wake-up events for long-pollers (replaced after every wake)."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}
        self._refs: dict[str, int] = {}
        self._wanted: anyio.Event | None = None

    @property
    def active(self) -> bool:
        """Whether any long-poller is waiting."""
        return bool(self._refs)

    async def until_active(self) -> None:
        """Return once a long-poller is waiting."""
        self._wanted = anyio.Event()
        if not self._refs:
            await self._wanted.wait()

    def acquire(self, session_id: str) -> None:
        self._refs[session_id] = self._refs.get(session_id, 0) + 1
        if self._wanted is not None:
            self._wanted.set()

    def release(self, session_id: str) -> None:
        left = self._refs[session_id] - 1
        if left:
            self._refs[session_id] = left
        else:
            del self._refs[session_id]
            self._events.pop(session_id, None)

    def current(self, session_id: str) -> anyio.Event:
        event = self._events.get(session_id)
        if event is None:
            event = self._events[session_id] = anyio.Event()
        return event

    def wake(self, session_id: str) -> None:
        event = self._events.pop(session_id, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        events = list(self._events.values())
        self._events.clear()
        for event in events:
            event.set()


_Row = tuple[str, str, str, str | None, datetime, str, str, str | None]


class _Append:
    """One caller's append request waiting in the group-commit queue."""

    __slots__ = ("error", "events", "result", "rows", "signal")

    def __init__(self, events: list[Event], rows: list[_Row]) -> None:
        self.events = events
        self.rows = rows
        self.result: list[Event] | None = None
        self.error: AsmError | None = None
        # Created by the caller right before it waits (the uncontended path never waits).
        self.signal: anyio.Event | None = None

    def finish(self) -> None:
        if self.signal is not None:
            self.signal.set()


def _encode(event: object) -> _Row:
    if not isinstance(event, Event):
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"expected an Event, got {type(event).__name__}")
    try:
        data = to_json(event.data).decode()
        metadata = to_json(event.metadata).decode()
    except PydanticSerializationError as exc:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR, f"event {event.id} is not JSON-serializable: {exc}"
        ) from exc
    return (
        event.id,
        event.session_id,
        event.type.value,
        event.run_id,
        event.timestamp,
        data,
        metadata,
        event.provider,
    )


def _event_from_row(row: Sequence[Any]) -> Event:
    return Event.model_validate(
        {
            "id": row[0],
            "type": row[1],
            "session_id": row[2],
            "run_id": row[3],
            "sequence_number": row[4],
            "timestamp": row[5],
            "data": row[6],
            "metadata": row[7],
            "provider": row[8],
        }
    )


async def _append_one(cur: AsyncCur, row: _Row, counted: bool) -> int | Event:
    """Append one event on a writer's cursor: its new sequence number, or the stored event.

    ``counted`` says the session's counter row is believed to exist: then the cheaper
    ``APPEND_NEXT_SQL`` runs first, falling back to the upsert when it finds no counter row.
    """
    event_id = row[0]
    params = (row[1], event_id, *row[1:], row[1])
    for attempt in range(_ATTEMPTS):
        try:
            if counted:
                await cur.execute(sql.APPEND_NEXT_SQL, params, prepare=True)
                got = await cur.fetchone()
                if got is not None:
                    return int(got[0])
                counted = False  # no counter row (first event, or the session was deleted)
            await cur.execute(sql.APPEND_ONE_SQL, params, prepare=True)
            got = await cur.fetchone()
            assert got is not None
            return int(got[0])
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "events_pkey":
                raise
            await cur.execute(f"SELECT {sql.EVENT_COLUMNS} FROM events WHERE id = %s", (event_id,))
            stored = await cur.fetchone()
            if stored is not None:
                return _event_from_row(stored)
        except psycopg.Error as exc:
            if exc.sqlstate not in _RETRYABLE_STATES or attempt == _ATTEMPTS - 1:
                raise
    raise AsmError(ErrorCode.STORAGE_WRITE_FAILED, f"could not append event {event_id}")


async def _append_batch(cur: AsyncCur, params: dict[str, list[Any]]) -> dict[str, int | Event]:
    for attempt in range(_ATTEMPTS):
        try:
            await cur.execute(sql.APPEND_SQL, params)
            rows = await cur.fetchall()
            break
        except psycopg.Error as exc:
            if exc.sqlstate not in _RETRYABLE_STATES or attempt == _ATTEMPTS - 1:
                raise
    result: dict[str, int | Event] = {}
    for row in rows:
        if row[0] is None:
            continue  # the NOTIFY row
        if row[2] is None:
            result[row[0]] = int(row[1])
        else:
            result[row[0]] = _event_from_row((row[0], row[2], row[3], row[4], row[1], *row[5:]))
    return result


def _looks_broken(conn: AsyncConn) -> bool:
    """An idle connection with input pending was told something (e.g. it was terminated)."""
    if conn.closed or conn.broken:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


async def _close_quietly(conn: AsyncConn) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()


def _resolve(event: Event, stored: int | Event) -> Event:
    return stored if isinstance(stored, Event) else event.with_sequence(stored)


def _json(value: Any) -> str | None:
    return None if value is None else to_json(value).decode()
