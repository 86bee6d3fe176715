"""ConcurrencyLimiter: process-wide caps on parallel sessions and parallel runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from ..core import AsmError, ErrorCode

__all__ = ("ConcurrencyLimiter", "LimiterLimits", "LimiterStatus")


@dataclass(frozen=True, slots=True)
class LimiterLimits:
    """The configured caps (``None`` = unlimited)."""

    max_parallel_sessions: int | None
    max_parallel_runs: int | None


@dataclass(frozen=True, slots=True)
class LimiterStatus:
    """A snapshot of the limiter (``available_*`` is ``None`` when that cap is unlimited)."""

    active_sessions: int
    active_runs: int
    max_parallel_sessions: int | None
    max_parallel_runs: int | None
    available_session_slots: int | None
    available_run_slots: int | None


def _check_cap(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR, f"{name} must be a positive integer or None, got {value!r}"
        )
    return value


class ConcurrencyLimiter:
    """Caps how many sessions and runs may be active at once.

    Slots are keyed by id, so acquiring a slot that is already held is a no-op that succeeds
    (idempotent), and releasing an unknown id is a no-op. The run cap is global across
    sessions; a run slot does not require its session's slot. Releasing a session slot also
    releases the run slots acquired for that session.

    The limiter refuses rather than waits: a refused acquire raises at once, so callers decide
    whether to fail or retry (:class:`~agent_session_manager.runtime.SessionServer` fails the
    refused run with ``max_runs_exceeded``). It holds no I/O and is safe to share between
    servers, tasks and threads.

    Args:
        max_parallel_sessions: Cap on sessions holding a slot (``None`` = unlimited).
        max_parallel_runs: Cap on runs holding a slot (``None`` = unlimited).

    Raises:
        AsmError: ``validation_error`` for a cap that is not a positive int or ``None``.
    """

    def __init__(self, max_parallel_sessions: int | None = 100, max_parallel_runs: int | None = 50) -> None:
        self._max_sessions = _check_cap("max_parallel_sessions", max_parallel_sessions)
        self._max_runs = _check_cap("max_parallel_runs", max_parallel_runs)
        self._sessions: set[str] = set()
        self._runs: dict[str, str] = {}  # run_id -> session_id
        self._lock = threading.Lock()

    def limits(self) -> LimiterLimits:
        """The configured caps."""
        return LimiterLimits(self._max_sessions, self._max_runs)

    def status(self) -> LimiterStatus:
        """Active counts and remaining slots."""
        with self._lock:
            sessions, runs = len(self._sessions), len(self._runs)
        return LimiterStatus(
            active_sessions=sessions,
            active_runs=runs,
            max_parallel_sessions=self._max_sessions,
            max_parallel_runs=self._max_runs,
            available_session_slots=None
            if self._max_sessions is None
            else max(0, self._max_sessions - sessions),
            available_run_slots=None if self._max_runs is None else max(0, self._max_runs - runs),
        )

    def acquire_session_slot(self, session_id: str) -> None:
        """Hold a session slot (idempotent per id).

        Raises:
            AsmError: ``max_sessions_exceeded`` when every session slot is taken.
        """
        with self._lock:
            if session_id in self._sessions:
                return
            if self._max_sessions is not None and len(self._sessions) >= self._max_sessions:
                raise AsmError(
                    ErrorCode.MAX_SESSIONS_EXCEEDED,
                    f"Maximum parallel sessions limit ({self._max_sessions}) exceeded. "
                    f"Currently active: {len(self._sessions)}",
                    {"limit": self._max_sessions, "active": len(self._sessions), "session_id": session_id},
                )
            self._sessions.add(session_id)

    def release_session_slot(self, session_id: str) -> None:
        """Release a session slot and that session's run slots (no-op if not held)."""
        with self._lock:
            self._sessions.discard(session_id)
            for run_id in [r for r, s in self._runs.items() if s == session_id]:
                del self._runs[run_id]

    def acquire_run_slot(self, session_id: str, run_id: str) -> None:
        """Hold a run slot (idempotent per run id).

        Raises:
            AsmError: ``max_runs_exceeded`` when every run slot is taken.
        """
        with self._lock:
            if run_id in self._runs:
                return
            if self._max_runs is not None and len(self._runs) >= self._max_runs:
                raise AsmError(
                    ErrorCode.MAX_RUNS_EXCEEDED,
                    f"Maximum parallel runs limit ({self._max_runs}) exceeded. "
                    f"Currently active: {len(self._runs)}",
                    {"limit": self._max_runs, "active": len(self._runs), "run_id": run_id},
                )
            self._runs[run_id] = session_id

    def release_run_slot(self, run_id: str) -> None:
        """Release a run slot (no-op if not held)."""
        with self._lock:
            self._runs.pop(run_id, None)
