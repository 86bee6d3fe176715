"""An on_event callback that raises: the run still ends with exactly one terminal event."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent_session_manager import (
    AsmError,
    ErrorCode,
    Event,
    EventType,
    InMemorySessionStore,
    RunStatus,
    SessionManager,
)
from agent_session_manager.testing import Script, ScriptedAdapter, Step

from ._helpers import assert_run_invariants, open_session

pytestmark = pytest.mark.anyio


def _raise_on(kind: EventType, exc: Exception) -> Callable[[Event], None]:
    def callback(event: Event) -> None:
        if event.type is kind:
            raise exc

    return callback


async def test_raising_mid_run_fails_the_run_once(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter()
    manager = SessionManager(store, adapter)
    run = await manager.start_run(await open_session(manager), "hi")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(
            run.id, on_event=_raise_on(EventType.MESSAGE_STREAMED, ValueError("bad cb"))
        )
    assert info.value.code is ErrorCode.INTERNAL_ERROR
    assert "on_event callback raised ValueError" in info.value.message
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED
    assert adapter.calls[0].outcome == "error"
    # the event whose delivery failed is persisted; nothing after it but the terminal event
    assert [e.type for e in events][-2:] == [EventType.MESSAGE_STREAMED, EventType.RUN_FAILED]


async def test_raising_asm_error_uses_its_code(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter())
    run = await manager.start_run(await open_session(manager), "hi")
    err = AsmError(ErrorCode.POLICY_VIOLATION, "stop it")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, on_event=_raise_on(EventType.MESSAGE_RECEIVED, err))
    assert info.value is err
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED
    assert events[-1].data["error_code"] == "policy_violation"


async def test_raising_on_run_started_when_adapter_fails_before_emitting(store: InMemorySessionStore) -> None:
    # The manager writes run_started itself while finalizing; a raising callback there must
    # not leave the run running.
    provider_error = AsmError(ErrorCode.PROVIDER_UNAVAILABLE, "down")
    manager = SessionManager(store, ScriptedAdapter(Script(error=provider_error)))
    run = await manager.start_run(await open_session(manager), "hi")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, on_event=_raise_on(EventType.RUN_STARTED, KeyError("x")))
    assert info.value is provider_error
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED
    assert [e.type for e in events] == [EventType.RUN_STARTED, EventType.MESSAGE_SENT, EventType.RUN_FAILED]


async def test_raising_on_terminal_event_keeps_the_result(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter())
    run = await manager.start_run(await open_session(manager), "hi")
    result = await manager.execute_run(
        run.id, on_event=_raise_on(EventType.RUN_COMPLETED, RuntimeError("late"))
    )
    assert result.events[-1].type is EventType.RUN_COMPLETED
    stored, _ = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.COMPLETED
    session = await manager.get_session(run.session_id)
    assert "provider_sessions" in session.metadata


async def test_async_callback_raising_with_silent_adapter(store: InMemorySessionStore) -> None:
    calls: list[EventType] = []

    async def callback(event: Event) -> None:
        calls.append(event.type)
        raise RuntimeError("always")

    # no steps: the manager writes every event while finalizing, so nothing reaches the adapter
    manager = SessionManager(store, ScriptedAdapter(Script(steps=[Step(EventType.MESSAGE_RECEIVED, {})])))
    run = await manager.start_run(await open_session(manager), "hi")
    with pytest.raises(AsmError):
        await manager.execute_run(run.id, on_event=callback)
    stored, _ = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED
    assert calls[0] is EventType.RUN_STARTED
    assert calls[-1] is EventType.RUN_FAILED
