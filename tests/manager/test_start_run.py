"""SessionManager.start_run: input, session checks and capability negotiation."""

from __future__ import annotations

from typing import Any

import pytest

from agent_session_manager import (
    AsmError,
    Capability,
    CapabilityType,
    ErrorCode,
    InMemorySessionStore,
    RunStatus,
    SessionManager,
)
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import open_session

pytestmark = pytest.mark.anyio


async def test_string_input_becomes_prompt(manager: SessionManager, store: InMemorySessionStore) -> None:
    sid = await open_session(manager)
    run = await manager.start_run(sid, "Hello")
    assert run.input == {"prompt": "Hello"}
    assert run.status is RunStatus.PENDING
    assert run.session_id == sid
    assert await store.get_run(run.id) == run
    # start_run records no event
    assert [e.type.value for e in await manager.get_session_events(sid, run_id=run.id)] == []


async def test_dict_input_is_copied(manager: SessionManager) -> None:
    sid = await open_session(manager)
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}]}
    run = await manager.start_run(sid, payload, metadata={"tag": "x"})
    payload["messages"] = []
    assert run.input == {"messages": [{"role": "user", "content": "Hi"}]}
    assert run.metadata == {"tag": "x"}
    assert await manager.get_session_runs(sid) == [run]
    assert await manager.get_session_runs(sid, status="completed") == []


@pytest.mark.parametrize("bad", ["", "   ", 42, None, ["x"]])
async def test_invalid_input(manager: SessionManager, store: InMemorySessionStore, bad: Any) -> None:
    sid = await open_session(manager)
    with pytest.raises(AsmError) as info:
        await manager.start_run(sid, bad)
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert await store.list_runs(sid) == []


async def test_unknown_session(manager: SessionManager) -> None:
    with pytest.raises(AsmError) as info:
        await manager.start_run("ses_nope", "hi")
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND


@pytest.mark.parametrize("finish", ["complete_session", "fail_session", "cancel_session"])
async def test_finished_session(manager: SessionManager, store: InMemorySessionStore, finish: str) -> None:
    sid = await open_session(manager)
    await getattr(manager, finish)(sid)
    with pytest.raises(AsmError) as info:
        await manager.start_run(sid, "hi")
    assert info.value.code is ErrorCode.INVALID_OPERATION
    assert info.value.details["session_id"] == sid
    assert await store.list_runs(sid) == []


async def test_pending_and_paused_sessions_accept_runs(manager: SessionManager) -> None:
    pending = await manager.start_session("a")
    assert (await manager.start_run(pending.id, "x")).status is RunStatus.PENDING
    sid = await open_session(manager)
    await manager.pause_session(sid)
    assert (await manager.start_run(sid, "x")).status is RunStatus.PENDING


async def test_negotiation_full(manager: SessionManager) -> None:
    sid = await open_session(manager)
    run = await manager.start_run(
        sid, "hi", required_capabilities=[CapabilityType.SAMPLING], optional_capabilities=["tools"]
    )
    negotiation = run.metadata["capability_negotiation"]
    assert negotiation["status"] == "full"
    assert negotiation["supported"] == ["sampling", "tools"]
    assert negotiation["unsupported"] == []


async def test_negotiation_degraded(manager: SessionManager) -> None:
    sid = await open_session(manager)
    run = await manager.start_run(
        sid,
        "hi",
        required_capabilities=["chat"],
        optional_capabilities=[CapabilityType.NETWORK_ACCESS, Capability(name="x", type="file_access")],
    )
    negotiation = (await manager.get_run(run.id)).metadata["capability_negotiation"]
    assert negotiation["status"] == "degraded"
    assert negotiation["unsupported"] == ["network_access", "file_access"]
    assert len(negotiation["warnings"]) == 2


async def test_no_negotiation_without_requirements(manager: SessionManager) -> None:
    sid = await open_session(manager)
    run = await manager.start_run(sid, "hi", required_capabilities=[], optional_capabilities=None)
    assert "capability_negotiation" not in run.metadata


async def test_missing_required_capability_saves_no_run(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(capabilities=[Capability(name="chat", type="sampling", enabled=False)])
    manager = SessionManager(store, adapter)
    sid = await open_session(manager)
    with pytest.raises(AsmError) as info:
        await manager.start_run(sid, "hi", required_capabilities=["sampling", "code_execution"])
    assert info.value.code is ErrorCode.MISSING_REQUIRED_CAPABILITY
    assert info.value.details["missing"] == ["sampling", "code_execution"]
    assert await store.list_runs(sid) == []


async def test_get_run_unknown(manager: SessionManager) -> None:
    with pytest.raises(AsmError) as info:
        await manager.get_run("run_nope")
    assert info.value.code is ErrorCode.RUN_NOT_FOUND
