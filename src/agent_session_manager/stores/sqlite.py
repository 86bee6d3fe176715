"""SQLiteSessionStore: the embedded, durable default store.

* **WAL mode**, ``synchronous=NORMAL`` by default (durable across process crashes; ``FULL``
  also survives power loss), integer-microsecond timestamps, JSON bodies.
* **One write connection**, with **group commit**: writes issued in the same event-loop
  turn share one ``BEGIN IMMEDIATE`` … ``COMMIT``; each caller is acknowledged only after
  the commit holding its write, and a failing write fails only its own caller (the batch is
  then re-run with one ``SAVEPOINT`` per request; see ``_sqlite_writer``).
* **Where commits run.** A lone write in a quiet loop (nothing else ready to run) commits
  at once on the event loop when the writer is idle, yielding at least every 2 ms: a thread
  hop costs ~100 µs on a small VM, more than a WAL commit without fsync (~30 µs) and ~40% of
  an fsync'd one. With ``NORMAL``/``OFF``, group commits also run inline. With
  ``FULL``/``EXTRA`` only the lone write does: the loop is then blocked for one fsync
  (~0.2 ms here, more on slow disks) at a time when it had nothing else to do — a timer or
  I/O event arriving meanwhile waits at most that long — while group commits (other tasks
  are runnable) go to the writer thread so the loop keeps working during their fsync. Pass
  ``inline_commits=False`` to keep every commit off the loop (at ~0.6x the raw rate for a
  lone FULL writer), ``True`` to inline group commits too. A write that finds another process
  holding the lock also goes to the writer thread, which retries ``BEGIN IMMEDIATE`` with
  back-off for up to ``busy_timeout``, so the loop never waits on a lock. WAL checkpoints
  run in the writer thread (with ``FULL``/``EXTRA`` holding the write lock, ~1 ms here, while
  in-process writes queue for the thread; see ``Writer._checkpoint``).
* **Sequence numbers** are assigned under ``BEGIN IMMEDIATE`` from the committed
  ``MAX(sequence_number)`` of the session (cached between batches while no other
  connection commits), on the ``(session_id, sequence_number)`` unique index, so they stay
  gapless and in commit order across processes sharing the file.
* **Reads** use a small pool of separate read-only connections and never wait for the
  writer: scans run in worker threads; primary-key lookups (``get_session``/``get_run``,
  microseconds in WAL mode) run on the loop, as a thread hop would cost far more.
* "Nothing else ready to run" is read from asyncio's ready queue (``loop._ready``, a private
  attribute); on a loop without it the store always takes the group-commit path.
* **Long-poll** wakes in-process waiters right after the commit and polls every
  ``poll_interval`` seconds (default 50 ms) for appends made by other processes.

The store must be used from the event loop that opened it (asyncio backend). ``open()``
is implicit on first use; ``async with SQLiteSessionStore(path) as store`` opens eagerly.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Self, TypeVar

import anyio
import anyio.to_thread

from ..core import AsmError, ErrorCode, Event, Run, RunStatus, Session, SessionStatus
from ..ports import SessionStore
from ..ports._query import (
    EventQuery,
    check_events,
)
from ._migrations import SQLITE_MIGRATIONS, check_schema_version, pending_migrations
from ._sqlite_writer import AppendResult, EventRow, Job, Outcome, Writer, is_busy, translate

__all__ = ("SQLiteSessionStore",)

T = TypeVar("T")
Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

#: Longest run of immediate (non-yielding) commits before a write yields to the loop.
_MAX_HOLD = 0.002
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_UPSERT_SESSION = (
    "INSERT INTO sessions (id, agent_id, status, tags, created_us, body) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, status = excluded.status, "
    "tags = excluded.tags, created_us = excluded.created_us, body = excluded.body"
)
_UPSERT_RUN = (
    "INSERT INTO runs (id, session_id, status, created_us, body) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id, status = excluded.status, "
    "created_us = excluded.created_us, body = excluded.body"
)
_to_json = Event.__pydantic_serializer__.to_json  # model_dump_json without its per-call overhead
_NO_SEQUENCE = {"sequence_number"}


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _US


def _event_row(event: Event) -> EventRow:
    body = _to_json(event, exclude=_NO_SEQUENCE).decode()
    return (event.id, event.session_id, event.run_id, event.type.value, _us(event.timestamp), body)


def _event_from_row(sequence_number: int, body: str) -> Event:
    # The body is stored without its sequence number (assigned by the INSERT itself).
    return Event.model_validate_json(f'{{"sequence_number":{sequence_number},{body[1:]}')


def _finish_append(event: Event, result: AppendResult) -> Event:
    # An int is the number just assigned; a tuple is the event already stored under that id.
    return event.with_sequence(result) if type(result) is int else _event_from_row(*result)  # type: ignore[misc]


class SQLiteSessionStore(SessionStore):
    """A durable single-file store (see the module docstring for the design).

    Args:
        path: the database file (created with its schema if missing).
        synchronous: SQLite's ``synchronous`` setting for the WAL (``NORMAL`` or ``FULL``).
        busy_timeout: seconds a write waits for another process's lock before failing
            with ``storage_connection_failed`` (retryable).
        read_only: open the file read-only (``mode=ro``); writes raise
            ``storage_write_failed``.
        poll_interval: how often a long-poll re-reads to see other processes' appends.
        inline_commits: where commits run when the writer is idle. ``True``: on the event
            loop, lone writes and group commits alike; ``False``: always on the writer
            thread; ``None`` (default): ``True`` for ``OFF``/``NORMAL``; for ``FULL``/``EXTRA``
            only a lone write while nothing else is ready to run commits (and fsyncs) on the
            loop, group commits go to the thread (see the module docstring).
        max_readers: idle read connections kept.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout: float = 30.0,
        read_only: bool = False,
        poll_interval: float = 0.05,
        inline_commits: bool | None = None,
        max_readers: int = 4,
    ) -> None:
        sync = str(synchronous).upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise AsmError(ErrorCode.VALIDATION_ERROR, f"invalid synchronous setting: {synchronous!r}")
        path_str = os.fspath(path)
        if not path_str or path_str == ":memory:" or path_str.startswith("file:"):
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                f"SQLiteSessionStore needs a file path, got {path_str!r} (use InMemorySessionStore)",
            )
        if busy_timeout < 0 or poll_interval <= 0 or max_readers < 1:
            raise AsmError(
                ErrorCode.VALIDATION_ERROR, "busy_timeout, poll_interval, max_readers out of range"
            )
        self.path = os.path.abspath(path_str)
        self.synchronous = sync
        self.read_only = read_only
        self._busy_timeout = float(busy_timeout)
        self._poll_interval = float(poll_interval)
        no_fsync = sync in ("OFF", "NORMAL")
        #: Lone writes on an idle loop / group commits run inline when the writer is idle.
        self._inline_lone = True if inline_commits is None else inline_commits
        self._inline_batch = no_fsync if inline_commits is None else inline_commits
        self._max_readers = max_readers
        mode = "ro" if read_only else "rwc"
        self._uri = f"file:{urllib.parse.quote(self.path)}?mode={mode}"
        self._open_mutex = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._writer: Writer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._pending: list[Job] = []
        self._yielded_at = 0.0
        self._ready: Any = None  # the loop's ready queue, when it exposes one (fast-path hint)
        self._changed: dict[str, anyio.Event] = {}
        self._idle_readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    async def connect(cls, path: str | os.PathLike[str], **options: Any) -> SQLiteSessionStore:
        """Create and open a store (``options`` as for the constructor)."""
        return await cls(path, **options).open()

    async def open(self) -> Self:
        """Open the file, apply pending migrations and start the writer; idempotent.

        Raises ``storage_error`` for a file that is not a SQLite database (or whose schema
        is newer than this code) and ``storage_connection_failed`` after ``close()``.
        """
        self._check_open()
        if self._writer is not None:
            return self
        await anyio.to_thread.run_sync(self._open_sync)
        if self._writer is None and not self._closed:
            assert self._conn is not None
            self._loop = asyncio.get_running_loop()
            if self._inline_lone:
                self._ready = getattr(self._loop, "_ready", None)
            self._writer = Writer(
                self._conn,
                path=self.path,
                busy_timeout=self._busy_timeout,
                loop=self._loop,
                complete=self._complete,
                fsync_commits=self.synchronous in ("FULL", "EXTRA"),
            )
            self._writer.start()
        return self

    async def __aenter__(self) -> Self:
        return await self.open()

    def _open_sync(self) -> None:
        with self._open_mutex:
            if self._conn is not None:
                return
            try:
                conn = sqlite3.connect(
                    self._uri,
                    uri=True,
                    timeout=self._busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise translate(exc, ErrorCode.STORAGE_ERROR, "open", self.path) from exc
            try:
                self._prepare_retrying(conn)
                # Lock waits are retried by the writer (the inline path must never block).
                conn.execute("PRAGMA busy_timeout = 0")
            except BaseException as exc:
                conn.close()
                raise translate(exc, ErrorCode.STORAGE_ERROR, "open", self.path) from exc
            self._conn = conn

    def _prepare_retrying(self, conn: sqlite3.Connection) -> None:
        """:meth:`_prepare`, retried while another process holds a lock (up to busy_timeout).

        Some lock states met while several processes open a new file at once (the switch to
        WAL, WAL recovery) return SQLITE_BUSY without calling the busy handler; they clear
        within milliseconds, so opening retries with a short back-off instead of failing.
        """
        deadline = time.monotonic() + self._busy_timeout
        pause = 0.005
        while True:
            try:
                self._prepare(conn)
                return
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() + pause > deadline:
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            time.sleep(pause)  # in a worker thread (open() runs _open_sync off the loop)
            pause = min(pause * 2, 0.1)

    def _prepare(self, conn: sqlite3.Connection) -> None:
        current = _schema_version(conn)
        check_schema_version(current, SQLITE_MIGRATIONS, where=self.path)
        latest = SQLITE_MIGRATIONS[-1].version
        if self.read_only:
            if current != latest:
                raise AsmError(
                    ErrorCode.STORAGE_ERROR,
                    f"database schema version {current} needs migrating to {latest}; open it once read-write",
                    {"path": self.path, "schema_version": current},
                )
            return
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AsmError(ErrorCode.STORAGE_ERROR, f"could not enable WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # the writer thread checkpoints
        if current < latest:
            _migrate(conn, self.path)

    def _check_open(self) -> None:
        if self._closed:
            raise AsmError(ErrorCode.STORAGE_CONNECTION_FAILED, "store is closed", {"path": self.path})

    async def close(self) -> None:
        """Flush queued writes, stop the writer, close connections and wake long-pollers."""
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        if writer is not None:
            self._flush()
            writer.stop()
            await anyio.to_thread.run_sync(writer.join)
        elif self._conn is not None:
            self._conn.close()
        while True:
            try:
                self._idle_readers.get_nowait().close()
            except queue.Empty:
                break
        for event in self._changed.values():
            event.set()
        self._changed.clear()

    # -- write path -------------------------------------------------------------------------

    async def _write(
        self,
        fn: Callable[[sqlite3.Connection], Any] | None,
        sessions: tuple[str, ...] = (),
        rows: Sequence[EventRow] = (),
    ) -> Any:
        """Run one write (``fn``, or ``rows`` to append: see ``Job``) and return its result."""
        self._check_open()
        if self._writer is None:
            await self.open()
        writer, loop = self._writer, self._loop
        assert writer is not None
        assert loop is not None
        # A lone write commits at once, without giving other tasks a turn to join a group
        # commit, when nothing else is runnable (asyncio's ready queue is empty; loops
        # without one always batch). A burst of such writes yields once every _MAX_HOLD, so
        # a writer in a tight loop still lets timers and I/O run every few ms.
        ready = self._ready
        if ready is not None and not ready and not self._pending:
            if time.monotonic() - self._yielded_at >= _MAX_HOLD:
                await asyncio.sleep(0)
                self._yielded_at = time.monotonic()
                self._check_open()
            if not ready and not self._pending and writer.idle() and writer.lock.acquire(blocking=False):
                # Fast path: commit at once on the loop (see the module docstring).
                try:
                    if fn is None and len(rows) == 1:
                        value: Any = writer.append_one(rows[0])  # raises when it fails
                        done = value is not None
                        if done:
                            value = [value]
                    else:
                        outcome = writer.run_one(Job(fn, None, sessions, rows))
                        done = outcome is not None
                        if outcome is not None:
                            _, ok, value = outcome
                            if not ok:
                                raise value
                finally:
                    writer.lock.release()
                if done:
                    self._wake(sessions)
                    if writer.needs_checkpoint():
                        writer.submit([])
                    return value
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(Job(fn, fut, sessions, rows))
        if len(self._pending) == 1:
            # The first write of a loop turn yields once, so every other ready task can add
            # its write to the same group commit, then flushes the batch itself.
            try:
                await asyncio.sleep(0)
            except BaseException:
                fut.cancel()
                raise
            finally:
                self._yielded_at = time.monotonic()
                self._flush()
        return await fut

    def _flush(self) -> None:
        jobs = [job for job in self._pending if job.fut is not None and not job.fut.done()]
        self._pending = []
        writer = self._writer
        if not jobs or writer is None:
            return
        # A lone write may still commit inline after its yield (when ``FULL`` only inlines
        # lone writes): timers and I/O had their turn, and nothing else is ready.
        inline = self._inline_batch or (len(jobs) == 1 and self._ready is not None and not self._ready)
        if inline and writer.idle() and writer.lock.acquire(blocking=False):
            try:
                outcomes = writer.run_batch(jobs, wait=False)
            finally:
                writer.lock.release()
            if outcomes is not None:
                self._complete(outcomes)
                if writer.needs_checkpoint():
                    writer.submit([])
                return
        writer.submit(jobs)

    def _complete(self, outcomes: list[Outcome]) -> None:
        touched: set[str] = set()
        for job, ok, value in outcomes:
            if ok:
                touched.update(job.sessions)
            fut = job.fut
            if fut is None or fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)
        self._wake(touched)

    def _wake(self, sessions: Iterable[str]) -> None:
        if self._changed:
            for session_id in sessions:
                changed = self._changed.pop(session_id, None)
                if changed is not None:
                    changed.set()

    # -- read path ----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        try:
            return self._idle_readers.get_nowait()
        except queue.Empty:
            pass
        conn = sqlite3.connect(
            self._uri, uri=True, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._reader()
        except sqlite3.Error as exc:
            raise translate(exc, ErrorCode.STORAGE_READ_FAILED, "read", self.path) from exc
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise translate(exc, ErrorCode.STORAGE_READ_FAILED, "read", self.path) from exc
        finally:
            if self._closed or self._idle_readers.qsize() >= self._max_readers:
                conn.close()
            else:
                self._idle_readers.put(conn)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self._check_open()
        if self._writer is None:
            await self.open()
        return await anyio.to_thread.run_sync(self._run_read, fn)

    async def _read_point(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A primary-key lookup, run on the event loop itself.

        It takes microseconds in WAL mode (readers never wait for the writer), far less than
        the thread hop of :meth:`_read`, and it sits on the hot path of every run.
        """
        self._check_open()
        if self._writer is None:
            await self.open()
        return self._run_read(fn)

    # -- sessions and runs ---------------------------------------------------------------------

    async def save_session(self, session: Session) -> None:  # noqa: D102
        row = (
            session.id,
            session.agent_id,
            session.status.value,
            json.dumps(session.tags),
            _us(session.created_at),
            session.model_dump_json(),
        )
        await self._write(lambda conn: conn.execute(_UPSERT_SESSION, row))

    async def get_session(self, session_id: str) -> Session:  # noqa: D102
        found = await self._read_point(
            lambda conn: conn.execute("SELECT body FROM sessions WHERE id = ?", (session_id,)).fetchone()
        )
        if found is None:
            raise AsmError(ErrorCode.SESSION_NOT_FOUND, f"Session not found: {session_id}")
        return Session.model_validate_json(found[0])

    async def _list_sessions(
        self,
        wanted: SessionStatus | None,
        agent_id: str | None,
        tags: Sequence[str] | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        where: list[str] = []
        params: list[Any] = []
        if wanted is not None:
            where.append("status = ?")
            params.append(wanted.value)
        if agent_id is not None:
            where.append("agent_id = ?")
            params.append(agent_id)
        if tags:
            where.append(
                "NOT EXISTS (SELECT 1 FROM json_each(?) AS need "
                "WHERE need.value NOT IN (SELECT value FROM json_each(sessions.tags)))"
            )
            params.append(json.dumps(list(tags)))
        sql = "SELECT body FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_us DESC, id DESC LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [Session.model_validate_json(body) for (body,) in rows]

    async def delete_session(self, session_id: str) -> None:  # noqa: D102
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM events WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM runs WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

        await self._write(delete, (session_id,))

    async def save_run(self, run: Run) -> None:  # noqa: D102
        row = (run.id, run.session_id, run.status.value, _us(run.created_at), run.model_dump_json())
        await self._write(lambda conn: conn.execute(_UPSERT_RUN, row))

    async def get_run(self, run_id: str) -> Run:  # noqa: D102
        found = await self._read_point(
            lambda conn: conn.execute("SELECT body FROM runs WHERE id = ?", (run_id,)).fetchone()
        )
        if found is None:
            raise AsmError(ErrorCode.RUN_NOT_FOUND, f"Run not found: {run_id}")
        return Run.model_validate_json(found[0])

    async def _list_runs(self, session_id: str, wanted: RunStatus | None, limit: int | None) -> list[Run]:
        sql = "SELECT body FROM runs WHERE session_id = ?"
        params: list[Any] = [session_id]
        if wanted is not None:
            sql += " AND status = ?"
            params.append(wanted.value)
        sql += " ORDER BY created_us, id LIMIT ?"
        params.append(-1 if limit is None else limit)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        return [Run.model_validate_json(body) for (body,) in rows]

    async def get_active_run(self, session_id: str) -> Run | None:  # noqa: D102
        running = await self.list_runs(session_id, status=RunStatus.RUNNING, limit=1)
        return running[0] if running else None

    # -- events ------------------------------------------------------------------------------

    async def append_event(self, event: Event) -> Event:  # noqa: D102
        if not isinstance(event, Event):
            check_events([event])
        session_id = event.session_id
        (result,) = await self._write(None, (session_id,), (_event_row(event),))
        return _finish_append(event, result)

    async def append_events(self, events: Sequence[Event]) -> list[Event]:  # noqa: D102
        events = check_events(events)
        if not events:
            self._check_open()
            return []
        rows = [_event_row(e) for e in events]
        sessions = tuple(dict.fromkeys(e.session_id for e in events))
        results = await self._write(None, sessions, rows)
        return [_finish_append(e, r) for e, r in zip(events, results, strict=True)]

    @staticmethod
    def _select_events(query: EventQuery, conn: sqlite3.Connection) -> list[Event]:
        sql = "SELECT sequence_number, body FROM events WHERE session_id = ?"
        params: list[Any] = [query.session_id]
        if query.after is not None:
            sql += " AND sequence_number > ?"
            params.append(query.after)
        if query.before is not None:
            sql += " AND sequence_number < ?"
            params.append(query.before)
        if query.run_id is not None:
            sql += " AND run_id = ?"
            params.append(query.run_id)
        if query.types is not None:
            sql += f" AND type IN ({', '.join('?' * len(query.types))})"
            params.extend(t.value for t in query.types)
        if query.since is not None:
            sql += " AND ts_us >= ?"
            params.append(_us(query.since))
        sql += " ORDER BY sequence_number LIMIT ?"
        params.append(-1 if query.limit is None else query.limit)
        return [_event_from_row(seq, body) for seq, body in conn.execute(sql, params)]

    async def _get_events(self, query: EventQuery) -> list[Event]:
        session_id = query.session_id

        def select(conn: sqlite3.Connection) -> list[Event]:
            return self._select_events(query, conn)

        found = await self._read(select)
        if found or query.wait_timeout <= 0:
            return found
        with anyio.move_on_after(query.wait_timeout):
            while not self._closed:
                # Registered before the re-read, so an append committed meanwhile is not missed.
                changed = self._changed.get(session_id)
                if changed is None:
                    changed = self._changed[session_id] = anyio.Event()
                found = await self._read(select)
                if found:
                    return found
                # Appends by other processes are seen at the next poll.
                with anyio.move_on_after(self._poll_interval):
                    await changed.wait()
        return []

    async def get_latest_sequence(self, session_id: str) -> int:  # noqa: D102
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT COALESCE(MAX(sequence_number), 0) FROM events WHERE session_id = ?", (session_id,)
            ).fetchone()
        )
        return int(row[0])


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Apply pending migrations under ``BEGIN IMMEDIATE`` (concurrent openers serialise here)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_us INTEGER NOT NULL)"
        )
        current = _schema_version(conn)  # re-read: another process may have migrated first
        check_schema_version(current, SQLITE_MIGRATIONS, where=path)
        for migration in pending_migrations(current, SQLITE_MIGRATIONS):
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, description, applied_us) VALUES (?, ?, ?)",
                (migration.version, migration.description, _us(datetime.now(UTC))),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
