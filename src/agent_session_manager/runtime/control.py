"""ControlOperations: interrupt, cancel, pause and resume of runs, with a per-run history."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio

from ..core import AsmError, ErrorCode, RunStatus
from ..ports import ProviderAdapter

__all__ = ("ControlOperations", "OperationRecord", "OperationStatus", "RunControlState")

RunControlState = Literal[
    "unknown", "running", "interrupted", "paused", "cancelled", "completed", "failed", "timeout"
]
"""What ControlOperations knows about a run: its last control state or its final status."""

Operation = Literal["interrupt", "cancel", "pause", "resume"]

_TERMINAL: frozenset[str] = frozenset({"cancelled", "completed", "failed", "timeout"})


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """One control operation applied to a run.

    ``result`` is ``"ok"``, ``"noop"`` (nothing to do: already in that state or finished) or
    the error code of a failed operation (``error`` then holds the error).
    """

    operation: Operation
    timestamp: datetime
    result: str
    error: AsmError | None = None


@dataclass(frozen=True, slots=True)
class OperationStatus:
    """The control view of one run."""

    run_id: str
    state: RunControlState
    last_operation: Operation | None
    history: tuple[OperationRecord, ...]


@dataclass(slots=True)
class _Tracked:
    state: RunControlState = "unknown"
    session_id: str | None = None
    history: list[OperationRecord] = field(default_factory=list)


class ControlOperations:
    """Applies control operations to runs through a provider adapter.

    * ``interrupt`` stops the current turn: it calls the adapter's ``interrupt(run_id)`` when
      the adapter has one, else ``cancel(run_id)`` (the anchor implements interrupt as cancel).
    * ``cancel`` calls ``adapter.cancel(run_id)``.
    * ``pause``/``resume`` need an enabled adapter capability *named* ``"pause"``/``"resume"``
      (else ``capability_not_supported``) and a matching adapter method (else
      ``provider_error``).
    * Every operation is idempotent: repeating it on a run already in its target state, or
      interrupting/cancelling a run that finished, succeeds without calling the adapter.
      Resuming or pausing a finished run is ``invalid_operation``.
    * A failing adapter call raises its ``AsmError`` (non-AsmError exceptions become
      ``provider_error``); the run's state is unchanged and the failure is in the history.

    Runs are tracked once registered (:meth:`register_run`) or touched by an operation; at
    most ``max_tracked_runs`` are remembered (the oldest are forgotten first).
    """

    def __init__(self, adapter: ProviderAdapter, *, max_tracked_runs: int = 10_000) -> None:
        if (
            isinstance(max_tracked_runs, bool)
            or not isinstance(max_tracked_runs, int)
            or max_tracked_runs < 1
        ):
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                f"max_tracked_runs must be a positive integer, got {max_tracked_runs!r}",
            )
        self.adapter = adapter
        self._max_tracked = max_tracked_runs
        self._runs: OrderedDict[str, _Tracked] = OrderedDict()

    # -- bookkeeping ---------------------------------------------------------------------

    @staticmethod
    def is_terminal_state(state: str) -> bool:
        """True for the final states (cancelled, completed, failed, timeout)."""
        return state in _TERMINAL

    def _track(self, run_id: str) -> _Tracked:
        tracked = self._runs.get(run_id)
        if tracked is None:
            tracked = self._runs[run_id] = _Tracked()
            while len(self._runs) > self._max_tracked:
                self._runs.popitem(last=False)
        return tracked

    def register_run(self, session_id: str, run_id: str) -> None:
        """Record that ``run_id`` of ``session_id`` is executing (state ``running``)."""
        tracked = self._track(run_id)
        tracked.session_id = session_id
        if not self.is_terminal_state(tracked.state):
            tracked.state = "running"

    def mark_finished(self, run_id: str, status: RunStatus | str) -> None:
        """Record a run's final status so later operations know it is over."""
        status = RunStatus(status)
        if status.is_terminal:
            self._track(run_id).state = status.value  # type: ignore[assignment]

    def registered_runs(self, session_id: str) -> list[str]:
        """Ids of the runs registered for ``session_id`` (oldest first)."""
        return [run_id for run_id, t in self._runs.items() if t.session_id == session_id]

    def get_operation_status(self, run_id: str) -> OperationStatus:
        """The run's control state, last operation and history (``unknown`` if untracked)."""
        tracked = self._runs.get(run_id) or _Tracked()
        last = tracked.history[-1].operation if tracked.history else None
        return OperationStatus(run_id, tracked.state, last, tuple(tracked.history))

    def get_operation_history(self, run_id: str) -> tuple[OperationRecord, ...]:
        """The operations applied to ``run_id``, oldest first."""
        tracked = self._runs.get(run_id)
        return tuple(tracked.history) if tracked else ()

    # -- operations ----------------------------------------------------------------------

    async def _apply(
        self,
        run_id: str,
        operation: Operation,
        target: RunControlState,
        call: Callable[[str], Awaitable[Any]] | None,
    ) -> str:
        tracked = self._track(run_id)
        now = datetime.now(UTC)
        if tracked.state == target or (call is None):
            tracked.history.append(OperationRecord(operation, now, "noop"))
            return run_id
        try:
            outcome = call(run_id)
            if inspect.isawaitable(outcome):
                await outcome
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            error = (
                exc
                if isinstance(exc, AsmError)
                else AsmError(
                    ErrorCode.PROVIDER_ERROR,
                    f"{operation} of {run_id} failed: {type(exc).__name__}: {exc}",
                    {"run_id": run_id, "operation": operation},
                )
            )
            tracked.history.append(OperationRecord(operation, now, error.code.value, error))
            raise error from exc
        tracked.state = target
        tracked.history.append(OperationRecord(operation, now, "ok"))
        return run_id

    async def interrupt(self, run_id: str) -> str:
        """Stop the run's current work; returns ``run_id``."""
        state = self._track(run_id).state
        interrupt = getattr(self.adapter, "interrupt", None)
        call = interrupt if callable(interrupt) else self.adapter.cancel
        return await self._apply(run_id, "interrupt", "interrupted", None if state in _TERMINAL else call)

    async def cancel(self, run_id: str) -> str:
        """Cancel the run through the adapter (idempotent); returns ``run_id``."""
        state = self._track(run_id).state
        return await self._apply(
            run_id, "cancel", "cancelled", None if state in _TERMINAL else self.adapter.cancel
        )

    def _capable(self, name: str, run_id: str, operation: Operation) -> Callable[[str], Awaitable[Any]]:
        enabled = any(cap.name == name and cap.enabled for cap in self.adapter.capabilities())
        method = getattr(self.adapter, name, None)
        if not enabled:
            error = AsmError(
                ErrorCode.CAPABILITY_NOT_SUPPORTED,
                f"Capability '{name}' not supported by adapter",
                {"run_id": run_id, "capability": name, "adapter": self.adapter.name},
            )
        elif not callable(method):
            error = AsmError(
                ErrorCode.PROVIDER_ERROR,
                f"Adapter does not support {name}",
                {"run_id": run_id, "adapter": self.adapter.name},
            )
        else:
            return method  # type: ignore[no-any-return]
        self._track(run_id).history.append(
            OperationRecord(operation, datetime.now(UTC), error.code.value, error)
        )
        raise error

    def _check_not_terminal(self, run_id: str, operation: Operation) -> None:
        state = self._track(run_id).state
        if state in _TERMINAL:
            verb = "resume" if operation == "resume" else "pause"
            error = AsmError(
                ErrorCode.INVALID_OPERATION,
                f"Cannot {verb} run in terminal state: {state}",
                {"run_id": run_id, "state": state},
            )
            self._track(run_id).history.append(
                OperationRecord(operation, datetime.now(UTC), error.code.value, error)
            )
            raise error

    async def pause(self, run_id: str) -> str:
        """Pause the run (needs the adapter's ``pause`` capability); returns ``run_id``."""
        if self._track(run_id).state == "paused":
            return await self._apply(run_id, "pause", "paused", None)
        self._check_not_terminal(run_id, "pause")
        return await self._apply(run_id, "pause", "paused", self._capable("pause", run_id, "pause"))

    async def resume(self, run_id: str) -> str:
        """Resume a paused run (needs the ``resume`` capability); returns ``run_id``."""
        if self._track(run_id).state == "running":
            return await self._apply(run_id, "resume", "running", None)
        self._check_not_terminal(run_id, "resume")
        return await self._apply(run_id, "resume", "running", self._capable("resume", run_id, "resume"))

    async def cancel_all(self, run_ids: Iterable[str]) -> dict[str, AsmError | None]:
        """Cancel each run; maps every id to ``None`` (done) or the error it raised."""
        results: dict[str, AsmError | None] = {}
        for run_id in run_ids:
            try:
                await self.cancel(run_id)
            except AsmError as exc:
                results[run_id] = exc
            else:
                results[run_id] = None
        return results

    async def interrupt_session(self, session_id: str) -> dict[str, AsmError | None]:
        """Interrupt every run registered for ``session_id`` that has not finished."""
        results: dict[str, AsmError | None] = {}
        for run_id in self.registered_runs(session_id):
            if self._runs[run_id].state in _TERMINAL:
                continue
            try:
                await self.interrupt(run_id)
            except AsmError as exc:
                results[run_id] = exc
            else:
                results[run_id] = None
        return results
