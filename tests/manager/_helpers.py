"""Shared assertions for the SessionManager suite."""

from __future__ import annotations

from typing import Any

from agent_session_manager import Event, EventType, Run, RunStatus, SessionManager
from agent_session_manager.core.enums import RUN_STATUS_EVENT, TERMINAL_RUN_EVENTS


async def open_session(manager: SessionManager, **kwargs: Any) -> str:
    session = await manager.start_session("agent", **kwargs)
    await manager.activate_session(session.id)
    return session.id


async def run_events(manager: SessionManager, run: Run | str) -> list[Event]:
    run_id = run if isinstance(run, str) else run.id
    stored = await manager.get_run(run_id)
    return await manager.get_session_events(stored.session_id, run_id=run_id)


def types_of(events: list[Event]) -> list[EventType]:
    return [e.type for e in events]


async def assert_run_invariants(manager: SessionManager, run_id: str) -> tuple[Run, list[Event]]:
    """run_started first, exactly one terminal event (last), matching the stored status."""
    run = await manager.get_run(run_id)
    events = await run_events(manager, run_id)
    assert run.status.is_terminal
    terminal = [e for e in events if e.type in TERMINAL_RUN_EVENTS]
    assert len(terminal) == 1, types_of(events)
    assert events[-1].type is RUN_STATUS_EVENT[run.status]
    if run.status is not RunStatus.CANCELLED or len(events) > 1:
        assert events[0].type is EventType.RUN_STARTED
    assert run.ended_at is not None
    return run, events


async def assert_gapless(manager: SessionManager, session_id: str) -> None:
    events = await manager.get_session_events(session_id)
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
