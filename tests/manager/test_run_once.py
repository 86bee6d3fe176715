"""SessionManager.run_once: session lifecycle around a single run."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_session_manager import (
    AsmError,
    ErrorCode,
    Event,
    EventType,
    InMemorySessionStore,
    RunStatus,
    SessionManager,
    SessionStatus,
)
from agent_session_manager.testing import Script, ScriptedAdapter

from ._helpers import assert_gapless, assert_run_invariants

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "run_input", ["Hello", {"prompt": "Hello"}, {"messages": [{"role": "user", "content": "Hello"}]}]
)
async def test_success_completes_session(
    manager: SessionManager, store: InMemorySessionStore, adapter: ScriptedAdapter, run_input: Any
) -> None:
    seen: list[Event] = []
    result = await manager.run_once(run_input, on_event=seen.append, tags=["t"], metadata={"m": 1})
    session = await store.get_session(result.session_id)
    assert session.status is SessionStatus.COMPLETED
    assert session.tags == ["t"]
    assert session.metadata["m"] == 1
    assert session.agent_id == "scripted"
    assert seen == result.events
    run, _ = await assert_run_invariants(manager, result.run_id)
    assert run.status is RunStatus.COMPLETED
    assert adapter.calls[0].input == (run_input if isinstance(run_input, dict) else {"prompt": "Hello"})
    types = [e.type for e in await manager.get_session_events(session.id)]
    assert types[:2] == [EventType.SESSION_CREATED, EventType.SESSION_STARTED]
    assert types[-2:] == [EventType.RUN_COMPLETED, EventType.SESSION_COMPLETED]
    await assert_gapless(manager, session.id)


async def test_provider_error_fails_run_and_session(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter(Script(error=AsmError(ErrorCode.PROVIDER_ERROR, "bad"))))
    with pytest.raises(AsmError) as info:
        await manager.run_once("Hello", agent_id="agent-x")
    assert info.value.code is ErrorCode.PROVIDER_ERROR
    (session,) = await store.list_sessions()
    assert session.status is SessionStatus.FAILED
    assert session.agent_id == "agent-x"
    (run,) = await store.list_runs(session.id)
    assert run.status is RunStatus.FAILED
    (failed,) = await manager.get_session_events(session.id, types=[EventType.SESSION_FAILED])
    assert failed.data["error_code"] == "provider_error"


async def test_missing_capability_fails_session_without_run(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter(capabilities=[]))
    with pytest.raises(AsmError) as info:
        await manager.run_once("Hello", required_capabilities=["tool"])
    assert info.value.code is ErrorCode.MISSING_REQUIRED_CAPABILITY
    (session,) = await store.list_sessions()
    assert session.status is SessionStatus.FAILED
    assert await store.list_runs(session.id) == []


async def test_invalid_input_creates_nothing(manager: SessionManager, store: InMemorySessionStore) -> None:
    with pytest.raises(AsmError) as info:
        await manager.run_once("  ")
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert await store.list_sessions() == []


async def test_timeout_fails_session(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, ScriptedAdapter(Script(block=True)))
    with pytest.raises(AsmError) as info:
        await manager.run_once("Hello", timeout=0.02)
    assert info.value.code is ErrorCode.TIMEOUT
    (session,) = await store.list_sessions()
    assert session.status is SessionStatus.FAILED
    (run,) = await store.list_runs(session.id)
    assert run.status is RunStatus.TIMEOUT


async def test_cancel_during_run_once(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script(block=True))
    manager = SessionManager(store, adapter)
    errors: list[AsmError] = []

    async def go() -> None:
        with pytest.raises(AsmError) as info:
            await manager.run_once("Hello")
        errors.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(go)
        await adapter.wait_for_calls(1)
        await manager.cancel_run(adapter.calls[0].run_id)
    assert errors[0].code is ErrorCode.CANCELLED
    (session,) = await store.list_sessions()
    assert session.status is SessionStatus.CANCELLED
    run, _ = await assert_run_invariants(manager, adapter.calls[0].run_id)
    assert run.status is RunStatus.CANCELLED
    types = [e.type for e in await manager.get_session_events(session.id)]
    assert types[-1] is EventType.SESSION_CANCELLED
    assert EventType.SESSION_FAILED not in types


async def test_caller_cancellation_of_run_once(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script(block=True))
    manager = SessionManager(store, adapter)
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.run_once, "Hello")
        await adapter.wait_for_calls(1)
        tg.cancel_scope.cancel()
    (session,) = await store.list_sessions()
    assert session.status is SessionStatus.CANCELLED
    run, _ = await assert_run_invariants(manager, adapter.calls[0].run_id)
    assert run.status is RunStatus.CANCELLED


async def test_run_once_passes_execute_options(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter()
    manager = SessionManager(store, adapter)
    with pytest.raises(AsmError) as info:
        await manager.run_once("Hello", workspace="/tmp/x")
    assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert adapter.calls == []
    (session,) = await store.list_sessions()
    assert session.status is SessionStatus.FAILED
    (run,) = await store.list_runs(session.id)
    assert run.status is RunStatus.PENDING  # never executed
    await manager.run_once("Hello", adapter_opts={"model": "x"}, context={"c": 1})
    assert adapter.calls[0].opts == {"model": "x"}
    assert adapter.calls[0].context == {"c": 1}
