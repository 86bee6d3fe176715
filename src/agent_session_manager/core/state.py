"""The session and run state machines (pure).

Session: pending → active; active ↔ paused; pending|active|paused → completed | failed |
cancelled. Run: pending → running; pending|running → completed | failed | cancelled | timeout.
Terminal states are final; a status never transitions to itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from .enums import RunStatus, SessionStatus
from .errors import AsmError, ErrorCode

__all__ = (
    "RUN_TRANSITIONS",
    "SESSION_TRANSITIONS",
    "check_run_transition",
    "check_session_transition",
)

_T = TypeVar("_T", SessionStatus, RunStatus)
_S = SessionStatus
_R = RunStatus

SESSION_TRANSITIONS: Mapping[SessionStatus, frozenset[SessionStatus]] = {
    _S.PENDING: frozenset({_S.ACTIVE, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.ACTIVE: frozenset({_S.PAUSED, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.PAUSED: frozenset({_S.ACTIVE, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}

RUN_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = {
    _R.PENDING: frozenset({_R.RUNNING, _R.COMPLETED, _R.FAILED, _R.CANCELLED, _R.TIMEOUT}),
    _R.RUNNING: frozenset({_R.COMPLETED, _R.FAILED, _R.CANCELLED, _R.TIMEOUT}),
    _R.COMPLETED: frozenset(),
    _R.FAILED: frozenset(),
    _R.CANCELLED: frozenset(),
    _R.TIMEOUT: frozenset(),
}


def _coerce(kind: type[_T], value: str) -> _T:
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(m.value for m in kind)
        raise AsmError(
            ErrorCode.INVALID_STATUS,
            f"Invalid status: {value!r}. Valid statuses: {valid}",
            {"status": str(value)},
        ) from None


def check_session_transition(current: SessionStatus, target: SessionStatus | str) -> SessionStatus:
    """Return ``target`` as a status if ``current → target`` is legal, else raise.

    Raises:
        AsmError: ``invalid_status`` for an unknown value, ``invalid_transition`` otherwise.
    """
    new = _coerce(SessionStatus, target)
    if new not in SESSION_TRANSITIONS[current]:
        raise AsmError(
            ErrorCode.INVALID_TRANSITION,
            f"Session cannot move from {current.value} to {new.value}",
            {"from": current.value, "to": new.value, "entity": "session"},
        )
    return new


def check_run_transition(current: RunStatus, target: RunStatus | str) -> RunStatus:
    """Return ``target`` as a status if ``current → target`` is legal, else raise.

    Raises:
        AsmError: ``invalid_status`` for an unknown value, ``invalid_transition`` otherwise.
    """
    new = _coerce(RunStatus, target)
    if new not in RUN_TRANSITIONS[current]:
        raise AsmError(
            ErrorCode.INVALID_TRANSITION,
            f"Run cannot move from {current.value} to {new.value}",
            {"from": current.value, "to": new.value, "entity": "run"},
        )
    return new
