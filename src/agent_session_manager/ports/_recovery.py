"""Generic recovery of runs left ``running`` by a dead owner."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ..core import AsmError, Event, EventType, Run, RunStatus, TokenUsage
from ..core.enums import RUN_STATUS_EVENT, TERMINAL_RUN_EVENTS

if TYPE_CHECKING:
    from .session_store import SessionStore

__all__ = ("recover_interrupted_runs",)

_STATUS_OF = {event: status for status, event in RUN_STATUS_EVENT.items()}


def _updates_from_terminal(run: Run, event: Event) -> dict[str, Any]:
    """Run fields recoverable from the terminal event the dead owner wrote."""
    data = event.data
    updates: dict[str, Any] = {}
    status = _STATUS_OF[event.type]
    if status is RunStatus.COMPLETED:
        usage = data.get("token_usage")
        if isinstance(usage, dict):
            # A malformed usage record is not worth failing recovery for.
            with contextlib.suppress(AsmError):
                updates["token_usage"] = TokenUsage.model_validate(usage)
        cost = data.get("cost_usd")
        if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0:
            updates["cost_usd"] = float(cost)
    elif run.error is None:
        code = data.get("error_code") or ("cancelled" if status is RunStatus.CANCELLED else "internal_error")
        message = data.get("error_message") or f"run {status.value}"
        updates["error"] = {"code": str(code), "message": str(message)}
    return updates


async def recover_interrupted_runs(store: SessionStore, *, reason: str) -> list[Run]:
    """Finalize every ``running`` run: ``failed`` with one ``run_failed`` event.

    A run whose terminal event was already written (its owner died between writing the
    event and saving the run) takes that event's status — with the error, token usage and
    cost the event records — and no second event is written. Pending and finished runs are
    left alone. Intended to be called on start-up by the single owner of a store, when no
    other process is executing runs. Returns the recovered runs.
    """
    # Collect first, then write: paging through sessions while saving runs must not depend
    # on how a backend orders rows that change under it.
    running: list[Run] = []
    offset = 0
    page = 200
    while True:
        sessions = await store.list_sessions(limit=page, offset=offset)
        if not sessions:
            break
        offset += len(sessions)
        for session in sessions:
            running.extend(await store.list_runs(session.id, status=RunStatus.RUNNING))

    recovered: list[Run] = []
    for run in running:
        terminal = await store.get_events(
            run.session_id, run_id=run.id, types=[t.value for t in TERMINAL_RUN_EVENTS], limit=1
        )
        if terminal:
            # The owner wrote the terminal event but died before saving the run.
            done = run.with_status(_STATUS_OF[terminal[0].type], **_updates_from_terminal(run, terminal[0]))
            await store.save_run(done)
            recovered.append(done)
            continue
        error = {"code": "internal_error", "message": f"run interrupted: {reason}"}
        done = run.with_status(RunStatus.FAILED, error=error)
        await store.append_event(
            Event(
                type=EventType.RUN_FAILED,
                session_id=run.session_id,
                run_id=run.id,
                data={
                    "error_code": "internal_error",
                    "error_message": error["message"],
                    "recovered": True,
                },
            )
        )
        await store.save_run(done)
        recovered.append(done)
    return recovered
