"""The SQLite write path: one connection, one writer thread, group commit.

Writes are :class:`Job` s, either a function of the connection (``fn``) or event rows to
append (``rows``), each with the asyncio future of its caller. A batch of jobs runs in one
``BEGIN IMMEDIATE`` … ``COMMIT``, and each caller is answered only after that commit:

* **Fast path** (no savepoints, no per-row statements): event rows get their sequence numbers
  in Python, once per session per batch, from each session's last committed sequence number.
  That cache is trusted only while ``PRAGMA data_version`` shows that no other connection
  committed since (otherwise it is dropped and ``MAX(sequence_number)`` is read under the
  lock); a job run through ``fn`` drops the entries of the sessions it names. Consecutive
  append jobs go into one ``executemany`` of a plain ``INSERT``, which fails on a duplicate id.
* **Slow path**, when anything in the fast path raises (a duplicate event id, i.e. an
  idempotent retry; a constraint; an I/O error): the transaction is rolled back, the cache
  dropped, and the batch re-run with one ``SAVEPOINT`` per job, appending row by row with
  ``INSERT … ON CONFLICT (id) DO NOTHING RETURNING`` (a duplicate returns the stored event),
  so a failing job fails only its own caller.

Either way a session's sequence stays gapless and in commit order across processes: numbers
are assigned under the write lock from committed state. Outcomes go back to the event loop
with ``call_soon_threadsafe``. The event loop may also run a batch inline
(``run_batch(wait=False)``/``run_one``, or ``append_one`` for a lone append, see
``SQLiteSessionStore``) when the writer is idle: the thread hop costs more than a WAL commit.
``lock`` guards the connection in both cases.
The connection's own busy handler is off; ``begin`` retries ``BEGIN IMMEDIATE`` with a
bounded back-off so the inline path never blocks the loop on another process's lock.
WAL checkpoints run in the writer thread (see :meth:`Writer._checkpoint`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core import AsmError, ErrorCode

__all__ = ("AppendResult", "EventRow", "Job", "Outcome", "Writer", "insert_next", "translate")

# Primary SQLite result codes (``sqlite_errorcode & 0xFF``).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
#: A checkpoint is attempted once roughly this many WAL pages may have been written.
_CHECKPOINT_PAGES = 1000
#: The same when every commit fsyncs (``FULL``/``EXTRA``): see :meth:`Writer._checkpoint`.
_CHECKPOINT_PAGES_FSYNC = 500
#: WAL size (frames) past which a checkpoint makes sure the WAL restarts (see ``_checkpoint``).
_WAL_RESTART_FRAMES = 4 * _CHECKPOINT_PAGES
#: Sessions whose last sequence number is remembered (the cache is dropped beyond this).
_CACHE_LIMIT = 10_000

#: ``(id, session_id, run_id, type, ts_us, body)`` of an event to append.
EventRow = tuple[str, str, str | None, str, int, str]
#: Per appended row: its new sequence number, or ``(sequence_number, body)`` of the event
#: already stored under its id.
AppendResult = int | tuple[int, str]

_INSERT_ROW = (
    "INSERT INTO events (id, session_id, run_id, type, ts_us, body, sequence_number) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_NEXT = (
    "INSERT INTO events (id, session_id, run_id, type, ts_us, body, sequence_number) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
    " (SELECT COALESCE(MAX(sequence_number), 0) + 1 FROM events WHERE session_id = ?2))"
    " ON CONFLICT (id) DO NOTHING RETURNING sequence_number"
)
_MAX_SEQ = "SELECT MAX(sequence_number) FROM events WHERE session_id = ?"


def _primary(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means another connection holds the lock."""
    return _primary(exc) in (_SQLITE_BUSY, _SQLITE_LOCKED)


def translate(exc: BaseException, default: ErrorCode, action: str, path: str) -> BaseException:
    """Map a driver exception to ``AsmError`` (other exceptions are returned unchanged)."""
    if isinstance(exc, AsmError) or not isinstance(exc, sqlite3.Error):
        return exc
    primary = _primary(exc)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        code = ErrorCode.STORAGE_CONNECTION_FAILED
        message = f"SQLite {action}: the database stayed locked by another connection ({exc})"
    elif primary == _SQLITE_READONLY:
        code, message = ErrorCode.STORAGE_WRITE_FAILED, f"SQLite {action}: the database is read-only ({exc})"
    elif isinstance(exc, sqlite3.ProgrammingError):
        code, message = ErrorCode.STORAGE_CONNECTION_FAILED, f"SQLite {action}: {exc}"
    else:
        code, message = default, f"SQLite {action} failed: {exc}"
    details = {"path": path, "sqlite_error": getattr(exc, "sqlite_errorname", None) or type(exc).__name__}
    error = AsmError(code, message, details)
    error.__cause__ = exc
    return error


@dataclass(slots=True)
class Job:
    """One write request, run on the writer connection inside the open transaction.

    Either ``fn`` (its return value is the result; it must name in ``sessions`` every
    session whose events it changes, e.g. a delete) or, with ``fn=None``, ``rows`` to
    append (the result is one :data:`AppendResult` per row). ``fut`` is the caller's future
    (``None`` for an inline write that returns its outcome directly).
    """

    fn: Callable[[sqlite3.Connection], Any] | None
    fut: asyncio.Future[Any] | None
    sessions: tuple[str, ...]
    rows: Sequence[EventRow] = ()


#: ``(job, ok, value_or_exception)``
Outcome = tuple[Job, bool, Any]


def insert_next(conn: sqlite3.Connection, row: EventRow) -> AppendResult:
    """Append ``row`` with the next sequence number of its session, unless its id is stored.

    The slow path (one statement per row). Returns the new sequence number, or
    ``(sequence_number, body)`` of the event already stored under that id.
    """
    inserted = conn.execute(_INSERT_NEXT, row).fetchall()
    if inserted:
        return int(inserted[0][0])
    seq, body = conn.execute("SELECT sequence_number, body FROM events WHERE id = ?", (row[0],)).fetchone()
    return int(seq), str(body)


class Writer:
    """Owns the write connection and the thread that drives it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        path: str,
        busy_timeout: float,
        loop: asyncio.AbstractEventLoop,
        complete: Callable[[list[Outcome]], None],
        fsync_commits: bool = False,
    ) -> None:
        self.conn = conn
        self._fsync_commits = fsync_commits
        self._checkpoint_pages = _CHECKPOINT_PAGES_FSYNC if fsync_commits else _CHECKPOINT_PAGES
        #: Held while a transaction or checkpoint runs (by the thread or the inline path).
        self.lock = threading.Lock()
        self._path = path
        self._busy_timeout = busy_timeout
        self._loop = loop
        self._complete = complete
        self._queue: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        # Non-empty lists queued (by the loop) and dequeued (by the thread): each counter has
        # a single writer, so ``idle`` needs no lock.
        self._submitted = 0
        self._taken = 0
        self._dirty_pages = 0
        self._checkpointer: sqlite3.Connection | None = None
        #: session id -> last committed sequence number, valid while ``_data_version`` holds.
        self._last_seq: dict[str, int] = {}
        self._data_version: Any = None
        self._thread = threading.Thread(target=self._main, name="asm-sqlite-writer", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def idle(self) -> bool:
        """Whether no job is queued for the thread (a hint; the lock is the guard).

        A queued wake-up (``submit([])``, a checkpoint request) does not count.
        """
        return self._taken == self._submitted

    def submit(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` for the next group commit (an empty list only wakes the thread).

        Called from the event loop only.
        """
        if jobs:
            self._submitted += 1
        self._queue.put(jobs)

    def stop(self) -> None:
        """Ask the thread to finish the queued work, then close the connection."""
        self._queue.put(None)

    def join(self) -> None:
        """Wait for the thread to exit (blocking; call from a worker thread)."""
        self._thread.join()

    def _begin(self, *, wait: bool) -> bool:
        delay = 0.0005
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if not wait:
                    return False
                if time.monotonic() >= deadline:
                    raise
            # Jitter keeps competing processes from retrying in lock-step.
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.02)

    def run_batch(self, jobs: list[Job], *, wait: bool) -> list[Outcome] | None:
        """Run ``jobs`` in one transaction; the caller holds ``lock``.

        Returns ``None`` (nothing done) when ``wait`` is false and the database is locked
        by another process. A failure of the transaction itself fails every job.
        """
        conn = self.conn
        try:
            if not self._begin(wait=wait):
                return None
        except Exception as exc:
            return self._fail(jobs, exc)
        assigned: dict[str, int] = {}
        try:
            outcomes = self._run_fast(jobs, assigned)
        except Exception as exc:
            self._last_seq.clear()
            if not conn.in_transaction or (len(jobs) == 1 and jobs[0].fn is not None):
                return self._fail(jobs, exc)  # re-running it alone would fail the same way
            assigned.clear()
            try:
                conn.execute("ROLLBACK")
                if not self._begin(wait=wait):
                    return None
                outcomes = [self._run_isolated(job) for job in jobs]
            except Exception as exc2:
                return self._fail(jobs, exc2)
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            return self._fail(jobs, exc)
        self._last_seq.update(assigned)
        # Roughly: each row dirties a page of each of the 3 indexes (ids are random),
        # rows of one batch share table pages.
        pages = 3
        for job in jobs:
            pages += 1 if job.fn is not None else len(job.rows)
        self._dirty_pages += pages
        return outcomes

    def run_one(self, job: Job) -> Outcome | None:
        """Run ``job`` alone in its own transaction without waiting; the caller holds ``lock``.

        Returns its outcome, or ``None`` (nothing done) when another process holds the
        write lock.
        """
        outcomes = self.run_batch([job], wait=False)
        return None if outcomes is None else outcomes[0]

    def append_one(self, row: EventRow) -> AppendResult | None:
        """Append one row in its own transaction without waiting; the caller holds ``lock``.

        ``run_one`` for a lone append, without its per-job bookkeeping (this runs on the
        event loop for most sequential appends). Returns the row's :data:`AppendResult`,
        or ``None`` (nothing done) when another process holds the write lock; raises the
        translated error when the append fails (nothing is then committed).
        """
        conn = self.conn
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    return None
                raise
            result = insert_next(conn, row)
            conn.execute("COMMIT")
        except Exception as exc:
            error = self._abort(exc)
            if error is exc:
                raise
            raise error from exc
        if type(result) is int:
            self._last_seq[row[1]] = result
        self._dirty_pages += 4  # as ``run_batch`` counts a lone row
        return result

    def _run_fast(self, jobs: list[Job], assigned: dict[str, int]) -> list[Outcome]:
        """Run ``jobs`` without savepoints, filling ``assigned`` (session -> last number)."""
        conn = self.conn
        if len(jobs) == 1 and jobs[0].fn is None and len(jobs[0].rows) == 1:
            # A lone append: one statement, no cache lookup (so no data_version check).
            row = jobs[0].rows[0]
            result = insert_next(conn, row)
            if type(result) is int:
                assigned[row[1]] = result
            return [(jobs[0], True, [result])]
        cache = self._last_seq
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version or len(cache) > _CACHE_LIMIT:
            cache.clear()  # another connection committed: what we knew may be stale
            self._data_version = version
        outcomes: list[Outcome] = []
        batch: list[tuple[Any, ...]] = []
        for job in jobs:
            fn = job.fn
            if fn is not None:
                if batch:
                    conn.executemany(_INSERT_ROW, batch)
                    batch = []
                outcomes.append((job, True, fn(conn)))
                for session_id in job.sessions:
                    cache.pop(session_id, None)
                    assigned.pop(session_id, None)
                continue
            seqs: list[AppendResult] = []
            for row in job.rows:
                session_id = row[1]
                seq = assigned.get(session_id)
                if seq is None:
                    seq = cache.get(session_id)
                    if seq is None:
                        seq = conn.execute(_MAX_SEQ, (session_id,)).fetchone()[0] or 0
                seq += 1
                assigned[session_id] = seq
                batch.append((*row, seq))
                seqs.append(seq)
            outcomes.append((job, True, seqs))
        if batch:
            conn.executemany(_INSERT_ROW, batch)
        return outcomes

    def _run_isolated(self, job: Job) -> Outcome:
        conn = self.conn
        conn.execute("SAVEPOINT asm_job")
        try:
            value = job.fn(conn) if job.fn is not None else [insert_next(conn, row) for row in job.rows]
        except Exception as exc:
            conn.execute("ROLLBACK TO asm_job")
            conn.execute("RELEASE asm_job")
            return (job, False, translate(exc, ErrorCode.STORAGE_WRITE_FAILED, "write", self._path))
        conn.execute("RELEASE asm_job")
        return (job, True, value)

    def _abort(self, exc: BaseException) -> BaseException:
        """Roll back the open transaction (if any) and return ``exc`` translated."""
        self._last_seq.clear()
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
        return translate(exc, ErrorCode.STORAGE_WRITE_FAILED, "write", self._path)

    def _fail(self, jobs: list[Job], exc: BaseException) -> list[Outcome]:
        error = self._abort(exc)
        return [(job, False, error) for job in jobs]

    def needs_checkpoint(self) -> bool:
        """Whether enough was written since the last checkpoint to run one."""
        return self._dirty_pages >= self._checkpoint_pages

    def _checkpoint(self) -> None:
        """Copy the WAL back into the database file so that the next write restarts it.

        Runs on a separate connection in the writer thread. ``PASSIVE`` never waits for
        readers or writers (of other processes); what it cannot copy now is copied next
        time. The next write restarts the WAL from its beginning (overwriting it in place)
        only once every frame is copied; otherwise the WAL keeps growing.

        * When commits fsync (``FULL``/``EXTRA``) the pass holds ``lock`` (in-process
          appends wait for it, ~1 ms), so it copies everything and the WAL restarts every
          time. A growing WAL makes every commit slower (each fsync must also journal the
          new file size: ~300 instead of ~180 µs here), so the WAL is also kept smaller
          (``_CHECKPOINT_PAGES_FSYNC``): after the store opens, fewer commits extend it.
          One pass fsyncs the WAL and the database once each; the previous unlocked pass
          followed by a locked one for the frames committed meanwhile fsynced twice as
          often, concurrently with the commits' own fsyncs, and measured slower.
        * Otherwise (no fsync per commit) the pass runs alongside appends, without the
          lock. Under steady appends it never quite catches up with them, so once the WAL
          passes ``_WAL_RESTART_FRAMES`` a second pass holding ``lock`` copies the few
          frames committed meanwhile.
        """
        self._dirty_pages = 0
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            checkpoint = "PRAGMA wal_checkpoint(PASSIVE)"
            if self._fsync_commits:
                with self.lock:
                    self._checkpointer.execute(checkpoint).fetchall()
                return
            _, frames, _ = self._checkpointer.execute(checkpoint).fetchone()
            if frames >= _WAL_RESTART_FRAMES:
                with self.lock:
                    self._checkpointer.execute(checkpoint).fetchall()
        except sqlite3.Error:
            pass

    def _deliver(self, outcomes: list[Outcome]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._complete, outcomes)

    def _main(self) -> None:
        try:
            stop = False
            while not stop:
                item = self._queue.get()
                jobs: list[Job] = []
                while True:
                    if item is None:
                        stop = True
                    elif item:
                        jobs.extend(item)
                        self._taken += 1
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if jobs:
                    with self.lock:
                        outcomes = self.run_batch(jobs, wait=True)
                    assert outcomes is not None
                    self._deliver(outcomes)
                if self.needs_checkpoint():
                    self._checkpoint()
        finally:
            with self.lock, contextlib.suppress(sqlite3.Error):
                self.conn.close()
            if self._checkpointer is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._checkpointer.close()
