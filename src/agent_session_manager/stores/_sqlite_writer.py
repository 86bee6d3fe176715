"""The SQLite write path: one connection, one writer thread, group commit.

Writes are :class:`Job` s (a function of the connection plus the asyncio future of the
caller). The writer thread drains every queued job, runs them in one ``BEGIN IMMEDIATE`` …
``COMMIT`` (each job inside its own ``SAVEPOINT`` so one failing job fails only itself), and
hands the outcomes back to the event loop with ``call_soon_threadsafe`` only after the
commit. The event loop may also run jobs inline (``run_one``/``run_batch(wait=False)``, see
``SQLiteSessionStore``) when the writer is idle: the thread hop costs more than a WAL commit
with ``synchronous=NORMAL``. ``lock`` guards the connection in both cases.
The connection's own busy handler is off; ``begin`` retries ``BEGIN IMMEDIATE`` with a
bounded back-off so the inline path never blocks the loop on another process's lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core import AsmError, ErrorCode

__all__ = ("Job", "Outcome", "Writer", "translate")

# Primary SQLite result codes (``sqlite_errorcode & 0xFF``).
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
#: A checkpoint is attempted once roughly this many WAL pages may have been written.
_CHECKPOINT_PAGES = 1000


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
    """One write request: ``fn`` runs on the writer connection inside the open transaction."""

    fn: Callable[[sqlite3.Connection], Any]
    fut: asyncio.Future[Any]
    sessions: tuple[str, ...]


#: ``(job, ok, value_or_exception)``
Outcome = tuple[Job, bool, Any]


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
    ) -> None:
        self.conn = conn
        #: Held while a transaction or checkpoint runs (by the thread or the inline path).
        self.lock = threading.Lock()
        self._path = path
        self._busy_timeout = busy_timeout
        self._loop = loop
        self._complete = complete
        self._queue: queue.SimpleQueue[list[Job] | None] = queue.SimpleQueue()
        self._dirty_pages = 0
        self._checkpointer: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._main, name="asm-sqlite-writer", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def idle(self) -> bool:
        """Whether no batch is queued for the thread (a hint; the lock is the guard)."""
        return self._queue.empty()

    def submit(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` for the next group commit (an empty list only wakes the thread)."""
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
        try:
            # Optimistic: no savepoints. Should a job fail, the batch is rolled back and
            # re-run with one savepoint per job so the failure stays with its own caller.
            outcomes: list[Outcome] = [(job, True, job.fn(conn)) for job in jobs]
        except Exception as exc:
            if len(jobs) == 1 or not conn.in_transaction:
                return self._fail(jobs, exc)
            conn.execute("ROLLBACK")
            try:
                self._begin(wait=True)
                outcomes = [self._run_isolated(job) for job in jobs]
            except Exception as exc2:
                return self._fail(jobs, exc2)
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            return self._fail(jobs, exc)
        # Each event touches ~4 b-tree pages (table + 3 indexes); batches share leaf pages.
        self._dirty_pages += 4 + len(jobs) // 4
        return outcomes

    def run_one(self, fn: Callable[[sqlite3.Connection], Any]) -> tuple[bool, Any] | None:
        """Run ``fn`` alone in its own transaction without waiting; the caller holds ``lock``.

        Returns ``(ok, value_or_error)``, or ``None`` (nothing done) when another process
        holds the write lock.
        """
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                return None
            return False, translate(exc, ErrorCode.STORAGE_WRITE_FAILED, "begin write", self._path)
        try:
            value = fn(conn)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return False, translate(exc, ErrorCode.STORAGE_WRITE_FAILED, "write", self._path)
        self._dirty_pages += 4
        return True, value

    def _run_isolated(self, job: Job) -> Outcome:
        conn = self.conn
        conn.execute("SAVEPOINT asm_job")
        try:
            value = job.fn(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO asm_job")
            conn.execute("RELEASE asm_job")
            return (job, False, translate(exc, ErrorCode.STORAGE_WRITE_FAILED, "write", self._path))
        conn.execute("RELEASE asm_job")
        return (job, True, value)

    def _fail(self, jobs: list[Job], exc: BaseException) -> list[Outcome]:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
        error = translate(exc, ErrorCode.STORAGE_WRITE_FAILED, "write", self._path)
        return [(job, False, error) for job in jobs]

    def needs_checkpoint(self) -> bool:
        """Whether enough was written since the last checkpoint to run one."""
        return self._dirty_pages >= _CHECKPOINT_PAGES

    def _checkpoint(self) -> None:
        # A separate connection: in WAL mode a checkpoint runs alongside writers, so appends
        # (inline or batched) continue while pages are copied back into the database file.
        self._dirty_pages = 0
        try:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
            # PASSIVE never waits for readers or writers; what it cannot copy now is copied later.
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
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
                    else:
                        jobs.extend(item)
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
