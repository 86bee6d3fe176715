"""Run bookkeeping shared by the SessionServer: entries, options, validation, finalization."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from ..core import AsmError, ErrorCode, Event, Run, RunStatus
from ..core.enums import RUN_STATUS_EVENT
from ..core.redaction import redact
from ..manager import RunResult, SessionManager
from ..ports import SessionStore

__all__ = (
    "RunEntry",
    "cancelled_error",
    "check_timeout",
    "copy_error",
    "finalize_unfinished",
    "merge_run_opts",
    "positive_int",
    "split_start_opts",
    "stored_outcome",
)

START_KEYS = frozenset({"required_capabilities", "optional_capabilities", "metadata"})
"""Run options that go to ``SessionManager.start_run``."""
EXECUTE_KEYS = frozenset(inspect.signature(SessionManager.execute_run).parameters) - {"self", "run_id"}
"""Run options that go to ``SessionManager.execute_run``."""
MERGED_KEYS = ("adapter_opts", "continuation_opts")
"""Dict options merged one level with the server's defaults (instead of replaced)."""


@dataclass(eq=False)
class RunEntry:
    """The server's view of one submitted run."""

    run_id: str
    opts: dict[str, Any]
    state: Literal["queued", "running", "cancelling", "finished"] = "queued"
    executing: bool = False  # inside SessionManager.execute_run
    cancel_requested: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    result: RunResult | None = None
    error: AsmError | None = None


def positive_int(name: str, value: object, *, allow_zero: bool = False) -> int:
    """Validate a positive (or non-negative) int; bools are rejected."""
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "non-negative" if allow_zero else "positive"
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"{name} must be a {kind} integer, got: {value!r}")
    return value


def check_timeout(timeout: float | None, name: str = "timeout") -> float | None:
    """Validate a non-negative number of seconds or ``None``."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise AsmError(
            ErrorCode.VALIDATION_ERROR, f"{name} must be a non-negative number or None, got {timeout!r}"
        )
    return float(timeout)


def copy_error(error: AsmError) -> AsmError:
    """A fresh copy, so each awaiter raises its own exception (tracebacks do not pile up)."""
    return AsmError(error.code, error.message, dict(error.details))


def cancelled_error(run_id: str) -> AsmError:
    """The error awaiters of a cancelled run receive."""
    return AsmError(ErrorCode.CANCELLED, "Run cancelled", {"run_id": run_id})


def merge_run_opts(opts: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Validate run options and merge them over ``base`` (see :data:`MERGED_KEYS`)."""
    unknown = set(opts) - EXECUTE_KEYS - START_KEYS
    if unknown:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR,
            f"unknown run options: {sorted(unknown)}",
            {"allowed": sorted(EXECUTE_KEYS | START_KEYS)},
        )
    merged = {**base, **opts}
    for key in MERGED_KEYS:
        if isinstance(base.get(key), dict) and isinstance(opts.get(key), dict):
            merged[key] = {**base[key], **opts[key]}
    return merged


def split_start_opts(merged: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split merged options into (``start_run`` keywords, ``execute_run`` keywords)."""
    start = {k: v for k, v in merged.items() if k in START_KEYS}
    execute = {k: v for k, v in merged.items() if k not in START_KEYS}
    return start, execute


async def finalize_unfinished(store: SessionStore, run_id: str, error: AsmError, provider: str) -> Run:
    """Make a run that did not succeed terminal in the store, with exactly one terminal event.

    A run already terminal is returned untouched. Otherwise the run ends ``cancelled`` (for a
    ``cancelled`` error) or ``failed``; the terminal event is written before the run (the
    order crash recovery relies on).
    """
    run = await store.get_run(run_id)
    if run.status.is_terminal:
        return run
    cancelled = error.code is ErrorCode.CANCELLED
    status = RunStatus.CANCELLED if cancelled else RunStatus.FAILED
    data = {} if cancelled else {"error_code": error.code.value, "error_message": redact(error.message)}
    await store.append_event(
        Event(
            type=RUN_STATUS_EVENT[status],
            session_id=run.session_id,
            run_id=run.id,
            data=data,
            provider=provider,
        )
    )
    run = run.with_status(status, error={"code": error.code.value, "message": redact(error.message)})
    await store.save_run(run)
    return run


async def stored_outcome(store: SessionStore, session_id: str | None, run_id: str) -> RunResult:
    """Answer ``await_run`` for a finished run from the store (result or raised error).

    Raises:
        AsmError: the run's recorded error; ``run_not_found`` if the run is not a finished
            run of ``session_id``.
    """
    run = await store.get_run(run_id)
    if run.session_id != session_id or not run.status.is_terminal:
        raise AsmError(
            ErrorCode.RUN_NOT_FOUND, f"Run not managed by this server: {run_id}", {"run_id": run_id}
        )
    if run.status is RunStatus.COMPLETED:
        return RunResult(
            session_id=run.session_id,
            run_id=run.id,
            output=run.output or {},
            token_usage=run.token_usage,
            cost_usd=run.cost_usd,
            events=await store.get_events(run.session_id, run_id=run_id),
            provider_session_id=run.metadata.get("provider_session_id"),
            model=run.metadata.get("model"),
        )
    error = run.error or {}
    default = ErrorCode.CANCELLED if run.status is RunStatus.CANCELLED else ErrorCode.UNKNOWN_ERROR
    try:
        code = ErrorCode(error.get("code") or default)
    except ValueError:
        code = ErrorCode.UNKNOWN_ERROR
    raise AsmError(code, str(error.get("message") or f"Run {run_id} {run.status.value}"), {"run_id": run_id})
