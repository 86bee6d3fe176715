"""Generic recovery of runs left ``running`` by a dead owner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core import Event, EventType, Run, RunStatus
from ..core.enums import RUN_STATUS_EVENT, TERMINAL_RUN_EVENTS

if TYPE_CHECKING:
    from ..ports import SessionStore

__all__ = ("recover_interrupted_runs",)

_STATUS_OF = {event: status for status, event in RUN_STATUS_EVENT.items()}


async def recover_interrupted_runs(store: SessionStore, *, reason: str) -> list[Run]:
    """Finalize every ``running`` run: ``failed`` with one ``run_failed`` event.

    A run whose terminal event was already written (its owner died between writing the
    event and saving the run) takes that event's status, and no second event is written.
    Intended to be called on start-up by the single owner of a store, when no other process
    is executing runs. Returns the recovered runs.
    """
    recovered: list[Run] = []
    offset = 0
    page = 200
    while True:
        sessions = await store.list_sessions(limit=page, offset=offset)
        if not sessions:
            break
        offset += len(sessions)
        for session in sessions:
            for run in await store.list_runs(session.id, status=RunStatus.RUNNING):
                terminal = await store.get_events(
                    session.id, run_id=run.id, types=[t.value for t in TERMINAL_RUN_EVENTS], limit=1
                )
                if terminal:
                    # The owner wrote the terminal event but died before saving the run.
                    status = _STATUS_OF[terminal[0].type]
                    done = run.with_status(status, error=run.error)
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
