"""PostgresSessionStore: the session store on PostgreSQL (psycopg 3 + psycopg_pool).

Design (see DESIGN §3 "Stores" and §6):

* **Appends** run as one SQL statement per batch (one round trip, one implicit transaction):
  the session's row in ``session_counters`` is incremented with ``INSERT … ON CONFLICT DO
  UPDATE … RETURNING`` (a lone append to a session known to have that row uses a plain
  ``UPDATE … RETURNING``, falling back to the upsert when the row is missing); its row lock
  serializes the session's appenders until commit, so commit order equals sequence order
  across processes and hosts. Each writer connection keeps one cursor and prepared
  statements. Ids already stored are returned as stored (idempotency); a concurrent insert of
  the same id fails the statement (nothing of it is kept, the counter bump included) and the
  batch is retried, now finding the stored row.
* **Group commit**: concurrent appends of one process are merged into one statement by a
  leader/follower queue (no background writer task): the first appender that finds a free
  writer slot flushes the queued requests of everyone, the others wait for their result. Each
  append is acknowledged only after the commit of the statement holding it. A merged batch
  that the server rejects is replayed request by request, so one bad request fails alone.
* **Long-poll** wakes in-process waiters directly after a commit and other processes through
  ``NOTIFY asm_events`` (sent by the appending statement itself, delivered at its commit). A dedicated
  autocommit connection listens; when it drops, a reader task reconnects with backoff and
  wakes every waiter to re-query, so no wake-up is lost.
* **Schema** is versioned (``schema_version``); forward migrations run on open under
  ``pg_advisory_xact_lock`` so concurrent openers are safe. A database whose schema is newer
  than this code is refused with ``AsmError(storage_error)``.
* **Errors**: driver exceptions become ``AsmError`` with ``storage_connection_failed``
  (unreachable, wrong credentials, database dropped, pool exhausted), ``storage_write_failed``
  or ``storage_read_failed``. Every operation is idempotent, so an operation whose connection
  broke is retried once when a fresh connection can be made; connects and pool waits are bounded.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Self, TypeVar

import anyio
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..core import AsmError, ErrorCode, Event, Run, RunStatus, Session, SessionStatus
from ..ports import SessionStore
from ..ports._query import EventQuery
from . import _pg_sql as sql
from ._pg_support import (
    _BATCH_KEYS,
    _FIRST_POOL_WAIT,
    _MIGRATION_LOCK,
    _SERVER_OPTIONS,
    AsyncConn,
    AsyncCur,
    _Append,
    _append_batch,
    _append_one,
    _check_pooled,
    _close_quietly,
    _describe,
    _encode,
    _event_from_row,
    _is_connection_failure,
    _json,
    _normalize_url,
    _resolve,
    _Row,
    _translate,
    _Waiters,
)

__all__ = ("PostgresSessionStore",)

T = TypeVar("T")

_COUNTED_MAX = 100_000  # sessions remembered as having a counter row


class PostgresSessionStore(SessionStore):
    """A durable, multi-process session store on PostgreSQL.

    Create it with ``store = await PostgresSessionStore.connect(url)`` or
    ``async with PostgresSessionStore(url) as store``. Reads use a connection pool, either the
    store's own or a caller's ``psycopg_pool.AsyncConnectionPool`` (``pool=``, not closed by the
    store); appends use up to ``max_writers`` dedicated connections and long-polls one
    listening connection, opened from ``url`` (default: the pool's conninfo string).

    Args:
        url: libpq URL (``postgresql://…``; ``postgresql+psycopg://`` is accepted) or conninfo.
        pool: A caller-owned pool to use for reads instead of creating one.
        min_size: Minimum connections of the store's own pool.
        max_size: Maximum connections of the store's own pool.
        connect_timeout: Seconds allowed for establishing a connection.
        pool_timeout: Seconds an operation may wait for a free pooled connection.
        command_timeout: Seconds one database operation may take before failing.
        max_batch: Most events merged into one group-commit statement.
        max_writers: Group-commit statements in flight at once.
        application_name: ``application_name`` reported to the server.
        listen_linger: Seconds the store keeps listening after its last long-poller left.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pool: AsyncConnectionPool[AsyncConn] | None = None,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        pool_timeout: float = 30.0,
        command_timeout: float = 60.0,
        max_batch: int = 500,
        max_writers: int = 1,
        application_name: str = "agent-session-manager",
        listen_linger: float = 2.0,
    ) -> None:
        if url is None and pool is not None and isinstance(pool.conninfo, str):
            url = pool.conninfo
        if url is None:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "a URL is required (or a pool with a conninfo string)")
        if max_batch < 1 or max_writers < 1 or min_size < 0 or max_size < max(1, min_size):
            raise AsmError(ErrorCode.VALIDATION_ERROR, "invalid pool or batch sizes")
        self._conninfo = _normalize_url(url)
        self._kwargs: dict[str, Any] = {"autocommit": True, "options": _SERVER_OPTIONS}
        if pool is not None and isinstance(pool.kwargs, dict):
            self._kwargs = {**pool.kwargs, "autocommit": True}
        self._kwargs["connect_timeout"] = max(1, math.ceil(connect_timeout))
        self._application_name = application_name
        self._pool = pool
        self._owns_pool = pool is None
        self._min_size, self._max_size = min_size, max_size
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._command_timeout = command_timeout
        self._linger = listen_linger
        self._max_batch = max_batch
        self._max_writers = max_writers
        self._waiters = _Waiters()
        self._queue: deque[_Append] = deque()
        self._idle_writers: list[AsyncCur] = []  # one reusable cursor per writer connection
        self._counted: set[str] = set()  # sessions whose counter row is known to exist
        self._writers = 0
        self._idle: anyio.Event | None = None
        self._open_lock = anyio.Lock()
        self._opened = False
        self._closed = False
        self._listen_conn: AsyncConn | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def connect(cls, url: str, **opts: Any) -> PostgresSessionStore:
        """Open a store on ``url`` (see the class for ``opts``); migrates the schema."""
        store = cls(url, **opts)
        await store.open()
        return store

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def open(self) -> Self:
        """Connect, apply migrations, start listening; idempotent.

        Raises:
            AsmError: ``storage_connection_failed`` (unreachable, bad credentials),
                ``storage_error`` (schema newer than this code).
        """
        async with self._open_lock:
            if self._opened:
                return self
            self._check_not_closed()
            conn = await self._connect(listener=True)
            try:
                await self._migrate(conn)
                if self._pool is None:
                    self._pool = AsyncConnectionPool(
                        self._conninfo,
                        kwargs={**self._kwargs, "application_name": self._application_name},
                        min_size=self._min_size,
                        max_size=self._max_size,
                        open=False,
                        check=_check_pooled,
                        timeout=self._pool_timeout,
                        name="agent-session-manager",
                    )
                    try:
                        await self._pool.open(wait=True, timeout=self._connect_timeout + 5)
                    except PoolTimeout as exc:
                        await self._pool.close()
                        raise _translate(exc, "connect", ErrorCode.STORAGE_CONNECTION_FAILED) from exc
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await conn.close()
                raise
            self._listen_conn = conn
            self._listener = asyncio.get_running_loop().create_task(self._listen_loop(conn))
            self._opened = True
            return self

    async def close(self) -> None:
        """Wake long-pollers, finish in-flight appends, stop listening, close the own pool."""
        if self._closed:
            return
        self._closed = True
        self._waiters.wake_all()
        with anyio.CancelScope(shield=True):
            while self._writers or self._queue:
                self._idle = anyio.Event()
                await self._idle.wait()
            if self._listener is not None:
                self._listener.cancel()
                await asyncio.wait({self._listener})
            if self._listen_conn is not None:
                await _close_quietly(self._listen_conn)
            while self._idle_writers:
                await _close_quietly(self._idle_writers.pop().connection)
            if self._owns_pool and self._pool is not None:
                await self._pool.close()

    def _check_not_closed(self) -> None:
        if self._closed:
            raise AsmError(ErrorCode.STORAGE_CONNECTION_FAILED, "store is closed")

    async def _ready(self) -> AsyncConnectionPool[AsyncConn]:
        self._check_not_closed()
        if not self._opened:
            await self.open()
        assert self._pool is not None
        return self._pool

    async def _connect(self, *, listener: bool) -> AsyncConn:
        """A dedicated autocommit connection (listener or writer), bounded in time.

        Writers get ``statement_timeout`` = ``command_timeout`` and TCP keepalives, so a hung
        server or a dead peer fails an append instead of blocking it forever.
        """
        name = f"{self._application_name}-listener" if listener else f"{self._application_name}-writer"
        kwargs: dict[str, Any] = {
            **self._kwargs,
            "autocommit": True,
            "application_name": name,
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        if not listener:
            timeout_ms = max(1, int(self._command_timeout * 1000))
            kwargs["options"] = f"{kwargs.get('options') or ''} -c statement_timeout={timeout_ms}".strip()
            kwargs["tcp_user_timeout"] = timeout_ms
        try:
            with anyio.fail_after(self._connect_timeout + 1):
                conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise AsmError(
                ErrorCode.STORAGE_CONNECTION_FAILED,
                f"cannot connect to PostgreSQL: {_describe(exc)}",
                {"operation": "connect", "error_type": type(exc).__name__},
            ) from exc
        return conn

    async def _migrate(self, conn: AsyncConn) -> None:
        try:
            cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
            row = await cur.fetchone()
            if row and row[0]:
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                got = await cur.fetchone()
                if got and got[0] == sql.SCHEMA_VERSION:
                    return
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
                got = await cur.fetchone()
                current = int(got[0]) if got else 0
                if current > sql.SCHEMA_VERSION:
                    raise AsmError(
                        ErrorCode.STORAGE_ERROR,
                        f"database schema version {current} is newer than this code supports "
                        f"({sql.SCHEMA_VERSION}); upgrade agent-session-manager",
                        {"database_version": current, "code_version": sql.SCHEMA_VERSION},
                    )
                for version, script in sql.MIGRATIONS:
                    if version > current:
                        await conn.execute(script.encode())
                        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        except psycopg.Error as exc:
            raise _translate(exc, "schema migration", ErrorCode.STORAGE_ERROR) from exc

    # -- listening -------------------------------------------------------------------------
    async def _listen_loop(self, conn: AsyncConn | None) -> None:
        """Own the LISTEN connection; listen only while some long-poller waits.

        Listening lazily keeps the NOTIFY traffic of every append away from processes that
        do not follow (a listening backend is woken for each notification). Correctness
        does not depend on timing: every change of the listening state (LISTEN established,
        connection lost, reconnect failed) wakes all waiters, and a waiter re-queries after
        each wake, so an event committed while nobody listened is found by that query.
        """
        delay = 0.05
        while not self._closed:
            try:
                if not self._waiters.active:
                    await self._waiters.until_active()
                    continue
                if conn is None:
                    conn = await self._connect(listener=True)
                    self._listen_conn = conn
                await conn.execute(f"LISTEN {sql.CHANNEL}")
                self._waiters.wake_all()
                delay = 0.05
                while True:
                    async for note in conn.notifies(timeout=self._linger):
                        self._waiters.wake(note.payload.rpartition(":")[0])
                    if not self._waiters.active:
                        break
                await conn.execute(f"UNLISTEN {sql.CHANNEL}")
                continue
            except Exception:
                pass  # any failure means "reconnect"; waiters re-query below
            self._waiters.wake_all()
            if conn is not None:
                await _close_quietly(conn)
                conn = None
            await anyio.sleep(delay)
            delay = min(delay * 2, 2.0)

    # -- plumbing --------------------------------------------------------------------------
    async def _probe(self) -> None:
        """Raise ``storage_connection_failed`` unless a fresh connection can be made."""
        await _close_quietly(await self._connect(listener=False))

    async def _run(self, operation: str, code: ErrorCode, fn: Callable[[AsyncConn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection, translating errors.

        The first wait for a pooled connection is short: if none comes, a direct connection
        tells whether the server refuses us (fail fast with its message, e.g. a dropped
        database) or the pool is merely busy (then wait up to ``pool_timeout``). An operation
        whose connection broke is retried once after such a probe (operations are idempotent).
        """
        pool = await self._ready()
        probed = retried = False
        while True:
            wait = self._pool_timeout if probed else min(self._pool_timeout, _FIRST_POOL_WAIT)
            try:
                with anyio.fail_after(self._command_timeout):
                    async with pool.connection(timeout=wait) as conn:
                        return await fn(conn)
            except TimeoutError as exc:
                message = f"PostgreSQL {operation} timed out after {self._command_timeout:g}s"
                raise AsmError(code, message) from exc
            except psycopg.Error as exc:
                if self._closed:
                    raise AsmError(ErrorCode.STORAGE_CONNECTION_FAILED, "store is closed") from exc
                if isinstance(exc, PoolTimeout) and not probed:
                    await self._probe()
                    probed = True
                    continue
                if _is_connection_failure(exc) and not isinstance(exc, PoolTimeout) and not retried:
                    await self._probe()
                    probed = retried = True
                    continue
                raise _translate(exc, operation, code) from exc

    async def _fetch(self, operation: str, query: str, params: Sequence[Any]) -> list[TupleRow]:
        async def go(conn: AsyncConn) -> list[TupleRow]:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

        return await self._run(operation, ErrorCode.STORAGE_READ_FAILED, go)

    async def _write(self, operation: str, query: str, params: Sequence[Any]) -> None:
        async def go(conn: AsyncConn) -> None:
            await conn.execute(query, params)

        await self._run(operation, ErrorCode.STORAGE_WRITE_FAILED, go)

    # -- sessions and runs -----------------------------------------------------------------
    async def save_session(self, session: Session) -> None:  # noqa: D102
        s = session
        await self._write(
            "save_session",
            sql.UPSERT_SESSION_SQL,
            (
                s.id,
                s.agent_id,
                s.status.value,
                _json(s.context),
                _json(s.metadata),
                list(s.tags),
                s.parent_session_id,
                s.created_at,
                s.updated_at,
            ),
        )

    async def get_session(self, session_id: str) -> Session:  # noqa: D102
        rows = await self._fetch(
            "get_session",
            f"SELECT {', '.join(sql.SESSION_COLUMNS)} FROM sessions WHERE id = %s",
            (session_id,),
        )
        if not rows:
            raise AsmError(ErrorCode.SESSION_NOT_FOUND, f"Session not found: {session_id}")
        return Session.model_validate(dict(zip(sql.SESSION_COLUMNS, rows[0], strict=True)))

    async def _list_sessions(
        self,
        wanted: SessionStatus | None,
        agent_id: str | None,
        tags: Sequence[str] | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if wanted is not None:
            where.append("status = %s")
            params.append(wanted.value)
        if agent_id is not None:
            where.append("agent_id = %s")
            params.append(agent_id)
        if tags:
            where.append("tags @> %s::text[]")
            params.append(list(tags))
        query = (
            f"SELECT {', '.join(sql.SESSION_COLUMNS)} FROM sessions WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC OFFSET %s"
        )
        params.append(offset)
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        rows = await self._fetch("list_sessions", query, params)
        return [Session.model_validate(dict(zip(sql.SESSION_COLUMNS, r, strict=True))) for r in rows]

    async def delete_session(self, session_id: str) -> None:  # noqa: D102
        async def go(conn: AsyncConn) -> None:
            async with conn.transaction():
                for table, column in (
                    ("session_counters", "session_id"),
                    ("events", "session_id"),
                    ("runs", "session_id"),
                    ("sessions", "id"),
                ):
                    await conn.execute(f"DELETE FROM {table} WHERE {column} = %s", (session_id,))

        await self._run("delete_session", ErrorCode.STORAGE_WRITE_FAILED, go)
        self._counted.discard(session_id)
        self._waiters.wake(session_id)

    async def save_run(self, run: Run) -> None:  # noqa: D102
        r = run
        await self._write(
            "save_run",
            sql.UPSERT_RUN_SQL,
            (
                r.id,
                r.session_id,
                r.status.value,
                _json(r.input),
                _json(r.output),
                _json(r.error),
                _json(r.token_usage.model_dump(mode="json")),
                r.turn_count,
                r.cost_usd,
                _json(r.metadata),
                r.created_at,
                r.started_at,
                r.ended_at,
            ),
        )

    async def get_run(self, run_id: str) -> Run:  # noqa: D102
        rows = await self._fetch(
            "get_run", f"SELECT {', '.join(sql.RUN_COLUMNS)} FROM runs WHERE id = %s", (run_id,)
        )
        if not rows:
            raise AsmError(ErrorCode.RUN_NOT_FOUND, f"Run not found: {run_id}")
        return Run.model_validate(dict(zip(sql.RUN_COLUMNS, rows[0], strict=True)))

    async def _list_runs(self, session_id: str, wanted: RunStatus | None, limit: int | None) -> list[Run]:
        query = f"SELECT {', '.join(sql.RUN_COLUMNS)} FROM runs WHERE session_id = %s"
        params: list[Any] = [session_id]
        if wanted is not None:
            query += " AND status = %s"
            params.append(wanted.value)
        query += " ORDER BY created_at, id"
        if limit is not None:
            query += " LIMIT %s"
            params.append(limit)
        rows = await self._fetch("list_runs", query, params)
        return [Run.model_validate(dict(zip(sql.RUN_COLUMNS, r, strict=True))) for r in rows]

    async def get_active_run(self, session_id: str) -> Run | None:  # noqa: D102
        running = await self.list_runs(session_id, status=RunStatus.RUNNING, limit=1)
        return running[0] if running else None

    # -- events: appends (group commit) ----------------------------------------------------
    async def append_event(self, event: Event) -> Event:  # noqa: D102
        if self._queue or self._writers >= self._max_writers or not self._opened or self._closed:
            return (await self._append([event]))[0]
        # Uncontended fast path: take the free writer slot directly, without queueing. Appends
        # arriving meanwhile queue up and are handed the slot when this one finishes.
        row = _encode(event)
        self._writers += 1
        try:
            stored = await self._append_single(row)
        finally:
            self._writers -= 1
            self._hand_off()
        self._waiters.wake(event.session_id)
        return _resolve(event, stored)

    async def append_events(self, events: Sequence[Event]) -> list[Event]:  # noqa: D102
        items = list(events)
        if not items:
            await self._ready()
            return []
        return await self._append(items)

    async def _append(self, events: list[Event]) -> list[Event]:
        rows = [_encode(e) for e in events]
        if not self._opened or self._closed:
            await self._ready()
        request = _Append(events, rows)
        self._queue.append(request)
        try:
            while request.result is None and request.error is None:
                if self._writers < self._max_writers:
                    await self._write_turn(request)
                else:
                    request.signal = anyio.Event()
                    await request.signal.wait()
        except BaseException:
            if request in self._queue:
                self._queue.remove(request)
                self._hand_off()
            raise
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]  # set when error is None

    async def _write_turn(self, own: _Append) -> None:
        """Flush one batch from the head of the queue while holding a writer slot."""
        self._writers += 1
        batch = self._take_batch()
        try:
            if len(batch) == 1 and batch[0] is own:
                await self._flush(batch)  # only the caller's append: its cancellation is its own
            else:
                # Shielded: the batch holds other callers' appends. Bounded by the writer
                # connections' statement_timeout and TCP timeouts (see _connect).
                with anyio.CancelScope(shield=True):
                    await self._flush(batch)
        finally:
            self._writers -= 1
            for request in batch:
                if request.result is None and request.error is None:
                    message = "PostgreSQL append interrupted before its outcome was known"
                    request.error = AsmError(ErrorCode.STORAGE_WRITE_FAILED, message)
                    request.finish()
            self._hand_off()

    def _take_batch(self) -> list[_Append]:
        batch: list[_Append] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].rows) <= self._max_batch):
            request = self._queue.popleft()
            batch.append(request)
            size += len(request.rows)
        return batch

    def _hand_off(self) -> None:
        """Let a queued caller become the next writer (or tell close() that we are idle)."""
        if self._queue:
            if self._writers < self._max_writers:
                self._queue[0].finish()
        elif not self._writers and self._idle is not None:
            self._idle.set()

    async def _flush(self, batch: list[_Append]) -> None:
        if not batch:
            return
        try:
            stored = await self._execute_append([row for request in batch for row in request.rows])
        except AsmError as exc:
            if len(batch) > 1 and exc.code is not ErrorCode.STORAGE_CONNECTION_FAILED:
                for request in batch:  # isolate the request the server rejected
                    await self._flush([request])
                return
            for request in batch:
                request.error = exc
        else:
            for request in batch:
                request.result = [_resolve(e, stored[e.id]) for e in request.events]
            for session_id in {e.session_id for request in batch for e in request.events}:
                self._waiters.wake(session_id)
        for request in batch:
            request.finish()

    async def _execute_append(self, rows: list[_Row]) -> dict[str, int | Event]:
        """Store ``rows`` in one statement; map each id to its new number or stored event."""
        unique = list({row[0]: row for row in rows}.values())
        if len(unique) == 1:
            return {unique[0][0]: await self._append_single(unique[0])}
        params = {k: list(v) for k, v in zip(_BATCH_KEYS, zip(*unique, strict=True), strict=True)}
        stored = await self._on_writer(lambda cur: _append_batch(cur, params))
        for session_id in params["sids"]:
            self._note_counted(session_id)
        return stored

    async def _append_single(self, row: _Row) -> int | Event:
        """Store one event; its new sequence number, or the stored event if its id exists."""
        session_id = row[1]
        counted = session_id in self._counted
        stored = await self._on_writer(lambda cur: _append_one(cur, row, counted))
        if not counted:
            self._note_counted(session_id)
        return stored

    def _note_counted(self, session_id: str) -> None:
        """Remember that ``session_id`` has a counter row (bounded; a stale entry costs a retry)."""
        if len(self._counted) >= _COUNTED_MAX:
            self._counted.clear()
        self._counted.add(session_id)

    async def _on_writer(self, fn: Callable[[AsyncCur], Awaitable[T]]) -> T:
        """Run ``fn`` on a dedicated writer connection (not pooled: the hot path stays lean).

        Called by the writer holding a group-commit slot, so at most ``max_writers``
        connections exist. A connection that broke is replaced and ``fn`` retried once (appends
        are idempotent by event id, so a commit whose acknowledgement was lost is not doubled).
        """
        for attempt in range(2):
            if self._idle_writers:
                cur = self._idle_writers.pop()
            else:
                cur = (await self._connect(listener=False)).cursor()
            conn = cur.connection
            try:
                result = await fn(cur)
            except psycopg.Error as exc:
                broken = conn.broken or conn.closed or _is_connection_failure(exc)
                if not broken:
                    self._idle_writers.append(cur)
                    raise _translate(exc, "append", ErrorCode.STORAGE_WRITE_FAILED) from exc
                await _close_quietly(conn)
                if attempt or self._closed:
                    raise _translate(exc, "append", ErrorCode.STORAGE_WRITE_FAILED) from exc
            except AsmError:
                self._idle_writers.append(cur)
                raise
            except BaseException:
                # Cancelled or failed mid-statement: the connection state is unknown.
                with anyio.CancelScope(shield=True):
                    await _close_quietly(conn)
                raise
            else:
                self._idle_writers.append(cur)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    # -- events: reads ---------------------------------------------------------------------
    async def _query_events(self, query: EventQuery) -> list[Event]:
        where = ["session_id = %s"]
        params: list[Any] = [query.session_id]
        if query.after is not None:
            where.append("sequence_number > %s")
            params.append(query.after)
        if query.before is not None:
            where.append("sequence_number < %s")
            params.append(query.before)
        if query.run_id is not None:
            where.append("run_id = %s")
            params.append(query.run_id)
        if query.types is not None:
            where.append("type = ANY(%s::text[])")
            params.append(sorted(t.value for t in query.types))
        if query.since is not None:
            where.append("ts >= %s")
            params.append(query.since)
        text = f"SELECT {sql.EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY sequence_number"
        if query.limit is not None:
            text += " LIMIT %s"
            params.append(query.limit)
        return [_event_from_row(r) for r in await self._fetch("get_events", text, params)]

    async def _get_events(self, query: EventQuery) -> list[Event]:
        session_id = query.session_id
        await self._ready()
        if query.wait_timeout <= 0:
            return await self._query_events(query)
        self._waiters.acquire(session_id)
        try:
            with anyio.move_on_after(query.wait_timeout):
                while not self._closed:
                    # Take the wake-up event *before* querying: an append committed after the
                    # query's snapshot sets this very event, so no wake-up is lost.
                    changed = self._waiters.current(session_id)
                    found = await self._query_events(query)
                    if found:
                        return found
                    await changed.wait()
        finally:
            self._waiters.release(session_id)
        return []

    async def get_latest_sequence(self, session_id: str) -> int:  # noqa: D102
        rows = await self._fetch(
            "get_latest_sequence",
            "SELECT last_seq FROM session_counters WHERE session_id = %s",
            (session_id,),
        )
        return int(rows[0][0]) if rows else 0
