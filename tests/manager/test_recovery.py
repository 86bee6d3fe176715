"""recover_interrupted_runs over the in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from agent_session_manager import (
    Event,
    EventType,
    InMemorySessionStore,
    Run,
    RunStatus,
    Session,
    TokenUsage,
)
from agent_session_manager.ports._recovery import recover_interrupted_runs

pytestmark = pytest.mark.anyio


async def _running(store: InMemorySessionStore, session: Session | None = None) -> Run:
    if session is None:
        session = Session(agent_id="a")
        await store.save_session(session)
    run = Run(session_id=session.id).with_status(RunStatus.RUNNING)
    await store.save_run(run)
    await store.append_event(Event(type=EventType.RUN_STARTED, session_id=session.id, run_id=run.id))
    return run


async def _events(store: InMemorySessionStore, run: Run) -> list[Event]:
    return await store.get_events(run.session_id, run_id=run.id)


async def test_running_without_terminal_event_fails_once(store: InMemorySessionStore) -> None:
    run = await _running(store)
    (recovered,) = await recover_interrupted_runs(store, reason="owner died")
    assert recovered.id == run.id
    stored = await store.get_run(run.id)
    assert stored == recovered
    assert stored.status is RunStatus.FAILED
    assert stored.error == {"code": "internal_error", "message": "run interrupted: owner died"}
    assert stored.ended_at is not None
    events = await _events(store, run)
    assert [e.type for e in events] == [EventType.RUN_STARTED, EventType.RUN_FAILED]
    assert events[-1].data == {
        "error_code": "internal_error",
        "error_message": "run interrupted: owner died",
        "recovered": True,
    }
    # idempotent: a second pass finds nothing to do
    assert await recover_interrupted_runs(store, reason="again") == []
    assert await _events(store, run) == events


@pytest.mark.parametrize(
    ("event_type", "status", "data", "error"),
    [
        (EventType.RUN_CANCELLED, RunStatus.CANCELLED, {}, {"code": "cancelled", "message": "run cancelled"}),
        (
            EventType.RUN_FAILED,
            RunStatus.FAILED,
            {"error_code": "provider_error", "error_message": "boom"},
            {"code": "provider_error", "message": "boom"},
        ),
        (
            EventType.RUN_TIMEOUT,
            RunStatus.TIMEOUT,
            {"error_code": "timeout"},
            {"code": "timeout", "message": "run timeout"},
        ),
    ],
)
async def test_terminal_event_written_but_run_not_saved(
    store: InMemorySessionStore,
    event_type: EventType,
    status: RunStatus,
    data: dict[str, Any],
    error: dict[str, Any],
) -> None:
    run = await _running(store)
    await store.append_event(Event(type=event_type, session_id=run.session_id, run_id=run.id, data=data))
    before = await _events(store, run)
    (recovered,) = await recover_interrupted_runs(store, reason="x")
    assert recovered.status is status
    assert recovered.error == error
    assert await store.get_run(run.id) == recovered
    assert await _events(store, run) == before


async def test_completed_terminal_event_restores_usage_and_cost(store: InMemorySessionStore) -> None:
    run = await _running(store)
    usage = TokenUsage(input_tokens=5, output_tokens=7)
    await store.append_event(
        Event(
            type=EventType.RUN_COMPLETED,
            session_id=run.session_id,
            run_id=run.id,
            data={"token_usage": usage.model_dump(mode="json"), "cost_usd": 0.5},
        )
    )
    (recovered,) = await recover_interrupted_runs(store, reason="x")
    assert recovered.status is RunStatus.COMPLETED
    assert recovered.token_usage == usage
    assert recovered.cost_usd == 0.5
    assert recovered.error is None


async def test_malformed_completion_data_is_tolerated(store: InMemorySessionStore) -> None:
    run = await _running(store)
    await store.append_event(
        Event(
            type=EventType.RUN_COMPLETED,
            session_id=run.session_id,
            run_id=run.id,
            data={"token_usage": {"input_tokens": -1}, "cost_usd": True},
        )
    )
    (recovered,) = await recover_interrupted_runs(store, reason="x")
    assert recovered.status is RunStatus.COMPLETED
    assert recovered.token_usage == TokenUsage()
    assert recovered.cost_usd is None


async def test_existing_error_is_kept(store: InMemorySessionStore) -> None:
    session = Session(agent_id="a")
    await store.save_session(session)
    run = Run(session_id=session.id, error={"code": "x", "message": "kept"}).with_status(RunStatus.RUNNING)
    await store.save_run(run)
    await store.append_event(Event(type=EventType.RUN_FAILED, session_id=session.id, run_id=run.id))
    (recovered,) = await recover_interrupted_runs(store, reason="x")
    assert recovered.error == {"code": "x", "message": "kept"}


async def test_other_runs_untouched_and_many_sessions(store: InMemorySessionStore) -> None:
    session = Session(agent_id="a")
    await store.save_session(session)
    pending = Run(session_id=session.id)
    completed = Run(session_id=session.id).with_status(RunStatus.RUNNING).with_status(RunStatus.COMPLETED)
    for run in (pending, completed):
        await store.save_run(run)
    running = [await _running(store) for _ in range(205)]  # more than one page of sessions
    running.append(await _running(store, session))
    recovered = await recover_interrupted_runs(store, reason="x")
    assert sorted(r.id for r in recovered) == sorted(r.id for r in running)
    assert await store.get_run(pending.id) == pending
    assert await store.get_run(completed.id) == completed
    assert await store.get_events(session.id, run_id=completed.id) == []
    for run in running:
        assert [e.type for e in await _events(store, run)] == [EventType.RUN_STARTED, EventType.RUN_FAILED]


async def test_store_method_delegates(store: InMemorySessionStore) -> None:
    run = await _running(store)
    (recovered,) = await store.recover_interrupted_runs()
    assert recovered.id == run.id
    assert "owner process died" in (recovered.error or {})["message"]


async def test_completed_terminal_event_without_usage(store: InMemorySessionStore) -> None:
    run = await _running(store)
    await store.append_event(Event(type=EventType.RUN_COMPLETED, session_id=run.session_id, run_id=run.id))
    (recovered,) = await recover_interrupted_runs(store, reason="x")
    assert recovered.status is RunStatus.COMPLETED
    assert recovered.token_usage == TokenUsage()
    assert recovered.cost_usd is None
