"""The execution half of SessionServer: slots, the run tasks and their finalization.

Kept apart from :mod:`.server` (the public façade: bootstrap, submit/await/cancel, status,
subscriptions) so each stays small. :class:`RunExecution` is a mixin; the attributes it
declares are set up by :class:`~agent_session_manager.runtime.SessionServer`.
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict, deque
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from ..core import AsmError, ErrorCode, Event, RunStatus
from ..core.redaction import redact
from ..manager import EventCallback, RunResult, SessionManager
from ..ports import ProviderAdapter, SessionStore
from ._runs import RunEntry, cancelled_error, finalize_unfinished
from ._transcripts import TranscriptCache
from .control import ControlOperations
from .limiter import ConcurrencyLimiter

__all__ = ("RunExecution",)

log = logging.getLogger(__name__)


class _ParkedWorker:
    """A worker task waiting for its next run."""

    __slots__ = ("entry", "wake")

    def __init__(self) -> None:
        self.entry: RunEntry | None = None
        self.wake = anyio.Event()


class RunExecution:
    """Starts queued runs into free slots and finalizes every run exactly once."""

    store: SessionStore
    adapter: ProviderAdapter
    manager: SessionManager
    _transcripts: TranscriptCache | None
    limiter: ConcurrencyLimiter | None
    control_ops: ControlOperations | None
    _state: Literal["new", "open", "closing", "closed"]
    _tg: TaskGroup | None
    _queue: deque[RunEntry]
    _entries: dict[str, RunEntry]
    _in_flight: dict[str, RunEntry]
    _finished: OrderedDict[str, RunEntry]
    _idle: anyio.Event | None
    _idle_workers: list[_ParkedWorker]
    _max_concurrent: int
    _retained: int

    @property
    def session_id(self) -> str:
        raise NotImplementedError

    def nudge_subscribers(self) -> None:
        raise NotImplementedError

    async def cancel_run(self, run_id: str) -> None:
        raise NotImplementedError

    def _dispatch(self) -> None:
        assert self._tg is not None
        while self._queue and len(self._in_flight) < self._max_concurrent and self._state == "open":
            entry = self._queue.popleft()
            entry.state = "running"
            self._in_flight[entry.run_id] = entry
            if self._idle_workers:
                # Reuse a parked worker task: cheaper than starting a task per run.
                worker = self._idle_workers.pop()
                worker.entry = entry
                worker.wake.set()
            else:
                self._tg.start_soon(self._worker, entry, name=f"asm-run-{entry.run_id}")

    async def _worker(self, entry: RunEntry) -> None:
        """Run ``entry``, then park and run whatever the dispatcher hands over next.

        At most ``max_concurrent_runs`` workers exist: a worker parks itself *before* asking
        the dispatcher for more work, so a freed slot is refilled by the worker that freed it.
        Parked workers are cancelled with the server's task group when it closes.
        """
        while True:
            await self._run_entry(entry, dispatch=False)
            if self._state != "open":
                return
            parked = _ParkedWorker()
            self._idle_workers.append(parked)
            self._dispatch()
            await parked.wake.wait()
            assert parked.entry is not None
            entry = parked.entry

    def _finish(self, entry: RunEntry, *, dispatch: bool = True) -> None:
        entry.state = "finished"
        self._in_flight.pop(entry.run_id, None)
        if self._entries.pop(entry.run_id, None) is not None:
            self._finished[entry.run_id] = entry
            while len(self._finished) > self._retained:
                self._finished.popitem(last=False)
        entry.done.set()
        self.nudge_subscribers()
        if dispatch:
            self._dispatch()
        if not self._queue and not self._in_flight and self._idle is not None:
            self._idle.set()

    def _event_callback(self, user_callback: EventCallback | None) -> EventCallback:
        if user_callback is None:
            return lambda _event: self.nudge_subscribers()

        async def on_event(event: Event) -> None:
            self.nudge_subscribers()
            outcome = user_callback(event)
            if inspect.isawaitable(outcome):
                await outcome

        return on_event

    async def _run_entry(self, entry: RunEntry, *, dispatch: bool = True) -> None:
        try:
            with entry.scope:
                entry.result = await self._execute(entry)
            if entry.result is None:
                entry.error = cancelled_error(entry.run_id)
        except AsmError as exc:
            entry.error = exc
        except anyio.get_cancelled_exc_class():
            entry.error = cancelled_error(entry.run_id)
            raise
        except Exception as exc:
            log.exception("run %s crashed", entry.run_id)
            entry.error = AsmError(
                ErrorCode.INTERNAL_ERROR,
                f"Run task crashed: {type(exc).__name__}: {redact(str(exc))}",
                {"run_id": entry.run_id, "exception": type(exc).__name__},
            )
        finally:
            if entry.error is not None:
                with anyio.CancelScope(shield=True):
                    await self._settle(entry, entry.error)
            # The rest never awaits, so it needs no shield.
            if self.limiter is not None:
                self.limiter.release_run_slot(entry.run_id)
            self._finish(entry, dispatch=dispatch)

    async def _execute(self, entry: RunEntry) -> RunResult:
        if entry.cancel_requested:  # cancelled before it started: never call the provider
            raise cancelled_error(entry.run_id)
        if self.limiter is not None:
            self.limiter.acquire_run_slot(self.session_id, entry.run_id)
        if self.control_ops is not None:
            self.control_ops.register_run(self.session_id, entry.run_id)
        opts = dict(entry.opts)
        on_event = self._event_callback(opts.pop("on_event", None))
        continuation = opts.get("continuation")
        if self._transcripts is not None and (continuation is True or continuation in ("auto", "replay")):
            # The cache reads only the events new since the last run (None after a store
            # error: the manager then reads the whole log for this run).
            opts["transcript"] = await self._transcripts.current()
        entry.executing = True
        return await self.manager.execute_run(entry.run_id, on_event=on_event, **opts)

    async def _settle(self, entry: RunEntry, error: AsmError) -> None:
        try:
            run = await finalize_unfinished(self.store, entry.run_id, error, self.adapter.name)
        except AsmError as exc:
            log.error("could not finalize run %s: %s", entry.run_id, exc)
            return
        if run.status is RunStatus.CANCELLED:
            entry.error = cancelled_error(entry.run_id)  # cancelled elsewhere: awaiters see "cancelled"
        if self.control_ops is not None:
            self.control_ops.mark_finished(entry.run_id, run.status)

    async def _cancel_queued(self, entry: RunEntry) -> None:
        entry.state = "cancelling"
        entry.cancel_requested = True
        try:
            with anyio.CancelScope(shield=True):
                await self.manager.cancel_run(entry.run_id)
        except AsmError as exc:
            log.error("could not record the cancellation of %s: %s", entry.run_id, exc)
        entry.error = cancelled_error(entry.run_id)
        if self.control_ops is not None:
            self.control_ops.mark_finished(entry.run_id, RunStatus.CANCELLED)
        self._finish(entry)

    async def _cancel_quietly(self, run_id: str) -> None:
        try:
            await self.cancel_run(run_id)
        except AsmError as exc:
            log.error("could not cancel %s while closing: %s", run_id, exc)
