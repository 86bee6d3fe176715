"""SessionServer: a per-session runtime that queues, executes and streams runs.

See the class docstring for the contract. Concurrency follows anyio's structured model:
the server is an async context manager owning one task group; every run executes in a task
of that group and every subscription follower too, so closing the server leaves nothing
behind.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ..core import AsmError, ErrorCode, EventType, RunStatus, SessionStatus, new_id
from ..manager import RunResult, SessionManager
from ..ports import ProviderAdapter, SessionStore
from ._execution import RunExecution, _ParkedWorker
from ._runs import (
    RunEntry,
    cancelled_error,
    check_timeout,
    copy_error,
    merge_run_opts,
    positive_int,
    split_start_opts,
    stored_outcome,
)
from ._transcripts import TranscriptCache
from .control import ControlOperations
from .limiter import ConcurrencyLimiter
from .subscriptions import Subscription, SubscriptionHub, check_from_sequence, check_types

__all__ = ("SessionServer", "SessionServerStatus")

log = logging.getLogger(__name__)

_FLUSH_GRACE = 1.0
"""Seconds subscribers get, on close, to take the events persisted up to the close."""


@dataclass(frozen=True, slots=True)
class SessionServerStatus:
    """An immutable snapshot of a :class:`SessionServer`."""

    session_id: str
    in_flight_count: int
    in_flight_runs: tuple[str, ...]
    queued_count: int
    queued_runs: tuple[str, ...]
    max_concurrent_runs: int
    max_queued_runs: int
    subscribers: int


class SessionServer(RunExecution):
    """Runs one session's runs: a FIFO queue, N execution slots, subscriptions, a transcript cache.

    Use as ``async with SessionServer(store, adapter, session_opts={...}) as server:``.

    Bootstrap: ``session_opts`` (keyword arguments of ``SessionManager.start_session``)
    creates and activates a session; ``session_id`` attaches to an existing one without
    recording anything (it is activated only if still pending). Exactly one is required.

    Runs: :meth:`submit_run` creates a pending run and queues it; at most
    ``max_concurrent_runs`` execute at once and a freed slot immediately starts the oldest
    queued run. Per-run options are ``SessionManager.execute_run`` keywords (plus
    ``required_capabilities``/``optional_capabilities``/``metadata`` for ``start_run``),
    merged over ``default_execute_opts`` (``adapter_opts`` and ``continuation_opts`` merged
    one level). Every run ends terminal in the store with exactly one terminal event —
    including runs whose execution raised unexpectedly (they end ``failed`` with
    ``internal_error``), runs refused by the ``limiter`` (``failed``, ``max_runs_exceeded``;
    the server does not wait for a limiter slot) and runs cancelled while queued (the
    provider is never called).

    Continuation (``continuation="auto"|"replay"``) uses a transcript cache built from the
    store by the first such run and then extended with only the new events.

    Closing the server cancels queued and in-flight runs (each ends ``cancelled`` with one
    ``run_cancelled`` event), answers every awaiter, lets subscribers receive the events
    persisted up to then, and waits for its tasks. Close is bounded by ``close_timeout``
    seconds; past it, remaining work is cancelled outright (the manager still finalizes it).

    Args:
        store: The session store.
        adapter: The provider adapter.
        session_opts: Create a session with these ``start_session`` keywords.
        session_id: Attach to this existing session.
        max_concurrent_runs: Execution slots (a positive int).
        max_queued_runs: Queue capacity (a non-negative int).
        limiter: Optional :class:`ConcurrencyLimiter`; the server holds a session slot while
            open and a run slot while each run executes.
        control_ops: Optional :class:`ControlOperations` used by :meth:`interrupt_run`.
        default_execute_opts: Options applied to every run.
        subscriber_buffer: Events buffered per subscriber (default; see :meth:`subscribe`).
        long_poll: Seconds a caught-up subscriber long-polls the store between nudges.
        close_timeout: Bound on the graceful part of closing.
        retained_results: How many finished runs' outcomes are kept for :meth:`await_run`
            (older ones are answered from the store).

    Raises:
        AsmError: ``validation_error`` for bad arguments.
    """

    def __init__(
        self,
        store: SessionStore,
        adapter: ProviderAdapter,
        *,
        session_opts: dict[str, Any] | None = None,
        session_id: str | None = None,
        max_concurrent_runs: int = 1,
        max_queued_runs: int = 100,
        limiter: ConcurrencyLimiter | None = None,
        control_ops: ControlOperations | None = None,
        default_execute_opts: dict[str, Any] | None = None,
        subscriber_buffer: int = 256,
        long_poll: float = 1.0,
        close_timeout: float = 10.0,
        retained_results: int = 10_000,
    ) -> None:
        if (session_opts is None) == (session_id is None):
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                "SessionServer requires exactly one of session_id (existing) or session_opts (to create)",
            )
        if session_opts is not None and not isinstance(session_opts, dict):
            raise AsmError(ErrorCode.VALIDATION_ERROR, f"session_opts must be a dict, got {session_opts!r}")
        self._max_concurrent = positive_int("max_concurrent_runs", max_concurrent_runs)
        self._max_queued = positive_int("max_queued_runs", max_queued_runs, allow_zero=True)
        self._subscriber_buffer = positive_int("subscriber_buffer", subscriber_buffer)
        self._retained = positive_int("retained_results", retained_results)
        self._long_poll = check_timeout(long_poll) or 1.0
        self._close_timeout = check_timeout(close_timeout) or 0.0
        self._defaults = merge_run_opts(dict(default_execute_opts or {}), {})
        self.store = store
        self.adapter = adapter
        self.limiter = limiter
        self.control_ops = control_ops
        self.manager = SessionManager(store, adapter)
        self._transcripts: TranscriptCache | None = None
        self._session_opts = session_opts
        self._session_id = session_id
        self._state: Literal["new", "open", "closing", "closed"] = "new"
        self._queue: deque[RunEntry] = deque()
        self._entries: dict[str, RunEntry] = {}
        self._in_flight: dict[str, RunEntry] = {}
        self._finished: OrderedDict[str, RunEntry] = OrderedDict()
        self._hub: SubscriptionHub | None = None
        self._stack: AsyncExitStack | None = None
        self._tg: TaskGroup | None = None
        self._reserved = 0
        self._idle: anyio.Event | None = None
        self._idle_workers: list[_ParkedWorker] = []

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The session this server runs (known once the server is open)."""
        if self._session_id is None:
            raise AsmError(ErrorCode.INVALID_OPERATION, "the server has not started")
        return self._session_id

    @property
    def transcript_cache(self) -> TranscriptCache | None:
        """The transcript cache (``None`` before the server is open)."""
        return self._transcripts

    async def __aenter__(self) -> SessionServer:
        if self._state != "new":
            raise AsmError(ErrorCode.INVALID_OPERATION, "a SessionServer can be started only once")
        self._state = "open"
        self._idle = anyio.Event()
        self._idle.set()
        stack = AsyncExitStack()
        self._tg = await stack.enter_async_context(anyio.create_task_group())
        try:
            await self._bootstrap()
        except BaseException:
            self._state = "closed"
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def _bootstrap(self) -> None:
        if self._session_opts is not None:
            opts = dict(self._session_opts)
            opts.setdefault("session_id", new_id("ses"))
            if self.limiter is not None:
                self.limiter.acquire_session_slot(opts["session_id"])
            try:
                session = await self.manager.start_session(**opts)
            except TypeError as exc:
                raise AsmError(ErrorCode.VALIDATION_ERROR, f"invalid session_opts: {exc}") from exc
            except BaseException:
                if self.limiter is not None:
                    self.limiter.release_session_slot(opts["session_id"])
                raise
            await self.manager.activate_session(session.id)
            self._session_id = session.id
        else:
            session = await self.store.get_session(self.session_id)
            if session.status.is_terminal:
                raise AsmError(
                    ErrorCode.INVALID_OPERATION,
                    f"Session {session.id} is {session.status.value}; a server cannot run it",
                    {"session_id": session.id, "status": session.status.value},
                )
            if self.limiter is not None:
                self.limiter.acquire_session_slot(session.id)
            if session.status is SessionStatus.PENDING:
                await self.manager.activate_session(session.id)
        self._transcripts = TranscriptCache(self.store, self.session_id)
        self._hub = SubscriptionHub(self.store, self.session_id, long_poll=self._long_poll)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._state == "closed":
            return None
        assert self._stack is not None
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_timeout):
                await self._shutdown()
        finally:
            self._tg.cancel_scope.cancel()
            try:
                suppress = await self._stack.__aexit__(exc_type, exc, tb)
            finally:
                self._after_close()
        return suppress

    async def aclose(self) -> None:
        """Close the server (same as leaving its ``async with`` block)."""
        await self.__aexit__(None, None, None)

    async def _shutdown(self) -> None:
        self._state = "closing"
        queued = list(self._queue)
        self._queue.clear()
        async with anyio.create_task_group() as tg:
            for entry in queued:
                tg.start_soon(self._cancel_queued, entry)
            for entry in list(self._in_flight.values()):
                tg.start_soon(self._cancel_quietly, entry.run_id)
        if self._hub is not None:
            await self._hub.close(_FLUSH_GRACE)

    def _after_close(self) -> None:
        self._state = "closed"
        if self._hub is not None:
            self._hub.abort()
        for entry in list(self._entries.values()):
            if not entry.done.is_set():
                entry.error = entry.error or cancelled_error(entry.run_id)
                self._finish(entry)
        self._queue.clear()
        if self.limiter is not None and self._session_id is not None:
            self.limiter.release_session_slot(self._session_id)

    def _check_open(self) -> None:
        if self._state != "open":
            raise AsmError(ErrorCode.INVALID_OPERATION, f"the session server is {self._state}")

    # -- runs --------------------------------------------------------------------------------

    async def submit_run(self, input: str | dict[str, Any], **opts: Any) -> str:
        """Create a pending run and queue it (FIFO); returns its id.

        Raises:
            AsmError: ``max_runs_exceeded`` when the queue is full and every slot is busy;
                ``validation_error`` for unknown options; ``invalid_operation`` when the
                server is not open; ``start_run``'s errors.
        """
        self._check_open()
        start_opts, execute_opts = split_start_opts(merge_run_opts(opts, self._defaults))
        # Submissions still creating their run hold a reservation, so concurrent submitters
        # cannot overfill the queue while start_run is awaited.
        waiting = len(self._queue) + self._reserved
        free = self._max_concurrent - len(self._in_flight)
        if waiting - free >= self._max_queued:
            raise AsmError(
                ErrorCode.MAX_RUNS_EXCEEDED,
                f"Maximum queued runs exceeded ({self._max_queued})",
                {"max_queued_runs": self._max_queued, "session_id": self.session_id},
            )
        self._reserved += 1
        try:
            run = await self.manager.start_run(self.session_id, input, **start_opts)
        finally:
            self._reserved -= 1
        if self._state != "open":  # closed meanwhile: do not leave the run pending
            with anyio.CancelScope(shield=True):
                await self.manager.cancel_run(run.id)
            self._check_open()
        entry = RunEntry(run.id, execute_opts)
        self._entries[run.id] = entry
        self._queue.append(entry)
        if self._idle is not None and self._idle.is_set():
            self._idle = anyio.Event()
        self._dispatch()
        return run.id

    async def execute_run(
        self, input: str | dict[str, Any], timeout: float | None = None, **opts: Any
    ) -> RunResult:
        """Submit a run and await its result (``timeout`` bounds the wait, not the run)."""
        run_id = await self.submit_run(input, **opts)
        return await self.await_run(run_id, timeout=timeout)

    async def await_run(self, run_id: str, timeout: float | None = None) -> RunResult:
        """Wait for a run of this server and return its :class:`RunResult`.

        Raises:
            AsmError: the run's error (``cancelled`` for a cancelled run, ``internal_error``
                for an unexpected crash); ``timeout`` if ``timeout`` seconds pass first (the
                run keeps going); ``run_not_found`` for a run this server does not know.
        """
        wait = check_timeout(timeout)
        entry = self._entries.get(run_id) or self._finished.get(run_id)
        if entry is None:
            return await stored_outcome(self.store, self._session_id, run_id)
        if wait is None:
            await entry.done.wait()
        elif not entry.done.is_set():
            with anyio.move_on_after(wait):
                await entry.done.wait()
            if not entry.done.is_set():
                raise AsmError(
                    ErrorCode.TIMEOUT, f"Timed out after {wait}s waiting for run {run_id}", {"run_id": run_id}
                )
        if entry.error is not None:
            raise copy_error(entry.error)
        assert entry.result is not None
        return entry.result

    async def cancel_run(self, run_id: str) -> None:
        """Cancel a run of this server; returns once it has ended.

        A queued run is removed from the queue and recorded ``cancelled`` with one
        ``run_cancelled`` event (the provider is never called); an executing run is cancelled
        through ``SessionManager.cancel_run`` (its slot frees when execution ends); a finished
        run is left alone.

        Raises:
            AsmError: ``run_not_found`` for a run this server does not know.
        """
        entry = self._entries.get(run_id)
        if entry is None:
            if run_id in self._finished:
                return
            run = await self.store.get_run(run_id)
            if run.session_id == self._session_id and run.status.is_terminal:
                return
            raise AsmError(ErrorCode.RUN_NOT_FOUND, f"Run not found in queue: {run_id}", {"run_id": run_id})
        if entry.state == "queued":
            self._queue.remove(entry)
            await self._cancel_queued(entry)
            return
        if entry.state == "running" and not entry.cancel_requested:
            entry.cancel_requested = True
            if not entry.executing:
                entry.scope.cancel()
            elif (await self.store.get_run(run_id)).status is RunStatus.PENDING:
                # The manager has not marked it running yet; a store-level cancel now would race
                # with that, so stop the execution task instead (the manager finalizes it).
                entry.scope.cancel()
            else:
                await self.manager.cancel_run(run_id)
        await entry.done.wait()

    async def interrupt_run(self, run_id: str) -> str:
        """Interrupt an executing run: through ``control_ops`` when configured, else cancel it.

        Raises:
            AsmError: ``run_not_found`` if the run is not executing.
        """
        if run_id not in self._in_flight:
            raise AsmError(ErrorCode.RUN_NOT_FOUND, f"Run not in flight: {run_id}", {"run_id": run_id})
        if self.control_ops is not None:
            return await self.control_ops.interrupt(run_id)
        await self.cancel_run(run_id)
        return run_id

    # -- operations --------------------------------------------------------------------------

    def status(self) -> SessionServerStatus:
        """An immutable snapshot: in-flight and queued runs (FIFO order), limits, subscribers."""
        return SessionServerStatus(
            session_id=self._session_id or "",
            in_flight_count=len(self._in_flight),
            in_flight_runs=tuple(self._in_flight),
            queued_count=len(self._queue),
            queued_runs=tuple(e.run_id for e in self._queue),
            max_concurrent_runs=self._max_concurrent,
            max_queued_runs=self._max_queued,
            subscribers=len(self._hub) if self._hub is not None else 0,
        )

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until nothing is queued or executing.

        Raises:
            AsmError: ``timeout`` when ``timeout`` seconds pass first.
        """
        wait = check_timeout(timeout)
        with anyio.move_on_after(math.inf if wait is None else wait):
            while (self._queue or self._in_flight) and self._idle is not None:
                await self._idle.wait()
        if self._queue or self._in_flight:
            raise AsmError(
                ErrorCode.TIMEOUT, f"drain timed out after {wait}s", {"session_id": self.session_id}
            )

    # -- subscriptions -----------------------------------------------------------------------

    def nudge_subscribers(self) -> None:
        """Tell subscribers new events were persisted (called after each event the server writes)."""
        if self._hub is not None:
            self._hub.nudge()

    @asynccontextmanager
    async def subscribe(
        self,
        from_sequence: int = 0,
        run_id: str | None = None,
        types: Sequence[EventType | str] | None = None,
        *,
        buffer_size: int | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Subscription]:
        """Subscribe to the session's events with sequence number **strictly greater** than ``from_sequence``.

        ``from_sequence=0`` (the default) replays the whole log. The store's cursor semantics
        apply (``after`` is a strict bound), so a subscriber that saw up to sequence ``n``
        resumes exactly with ``subscribe(from_sequence=n)``. (The anchor used ``>=``.) Events
        are backfilled from the store, then delivered live, in sequence order, without gaps or
        duplicates; see :mod:`agent_session_manager.runtime.subscriptions` for the buffering
        policy. Leaving the block unsubscribes.

        Raises:
            AsmError: ``validation_error`` for a bad ``from_sequence``, ``types``,
                ``buffer_size`` or ``page_size``; ``invalid_operation`` if the server is not open.
        """
        cursor = check_from_sequence(from_sequence)
        wanted = check_types(types)
        size = positive_int("buffer_size", self._subscriber_buffer if buffer_size is None else buffer_size)
        page = positive_int("page_size", page_size)
        self._check_open()
        assert self._tg is not None
        assert self._hub is not None
        async with self._hub.open(self._tg, cursor, run_id, wanted, buffer_size=size, page_size=page) as sub:
            yield sub
