"""Session lifecycle through the SessionManager."""

from __future__ import annotations

import pytest

from agent_session_manager import (
    AsmError,
    ErrorCode,
    EventType,
    InMemorySessionStore,
    SessionManager,
    SessionStatus,
)
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import types_of

pytestmark = pytest.mark.anyio


async def test_start_session_records_provider_and_created_event(
    manager: SessionManager, store: InMemorySessionStore
) -> None:
    session = await manager.start_session(
        "agent-1", context={"k": 1}, metadata={"owner": "me"}, tags=["a", "b"], parent_session_id="ses_p"
    )
    assert session.status is SessionStatus.PENDING
    assert session.metadata == {"owner": "me", "provider": "scripted"}
    assert session.context == {"k": 1}
    assert session.tags == ["a", "b"]
    assert session.parent_session_id == "ses_p"
    assert await store.get_session(session.id) == session
    (created,) = await manager.get_session_events(session.id)
    assert created.type is EventType.SESSION_CREATED
    assert created.sequence_number == 1
    assert created.data == {"provider": "scripted"}
    assert created.provider == "scripted"


async def test_start_session_defaults_agent_id_to_provider_and_honours_session_id(
    manager: SessionManager,
) -> None:
    session = await manager.start_session(session_id="ses_fixed")
    assert session.agent_id == "scripted"
    assert session.id == "ses_fixed"
    assert (await manager.get_session("ses_fixed")).id == "ses_fixed"


@pytest.mark.parametrize("agent_id", ["", "   "])
async def test_start_session_rejects_empty_agent_id(
    manager: SessionManager, store: InMemorySessionStore, agent_id: str
) -> None:
    with pytest.raises(AsmError) as info:
        await manager.start_session(agent_id)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert await store.list_sessions() == []


async def test_start_session_rejects_bad_fields(manager: SessionManager, store: InMemorySessionStore) -> None:
    with pytest.raises(AsmError) as info:
        await manager.start_session("a", tags=[1, 2])  # type: ignore[list-item]
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert await store.list_sessions() == []


async def test_get_session_unknown(manager: SessionManager) -> None:
    with pytest.raises(AsmError) as info:
        await manager.get_session("ses_missing")
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND


async def test_lifecycle_events(manager: SessionManager) -> None:
    session = await manager.start_session("a")
    assert (await manager.activate_session(session.id)).status is SessionStatus.ACTIVE
    assert (await manager.pause_session(session.id)).status is SessionStatus.PAUSED
    assert (await manager.activate_session(session.id)).status is SessionStatus.ACTIVE
    done = await manager.complete_session(session.id)
    assert done.status is SessionStatus.COMPLETED
    assert (await manager.get_session(session.id)).status is SessionStatus.COMPLETED
    events = await manager.get_session_events(session.id)
    assert types_of(events) == [
        EventType.SESSION_CREATED,
        EventType.SESSION_STARTED,
        EventType.SESSION_PAUSED,
        EventType.SESSION_RESUMED,
        EventType.SESSION_COMPLETED,
    ]
    assert [e.sequence_number for e in events] == [1, 2, 3, 4, 5]


async def test_fail_session_records_code_and_redacted_message(manager: SessionManager) -> None:
    session = await manager.start_session("a")
    err = AsmError(ErrorCode.PROVIDER_ERROR, "boom with key sk-ant-api03-abcdefghijklmnop")
    failed = await manager.fail_session(session.id, err)
    assert failed.status is SessionStatus.FAILED
    event = (await manager.get_session_events(session.id, types=[EventType.SESSION_FAILED]))[0]
    assert event.data["error_code"] == "provider_error"
    assert "sk-ant" not in event.data["error_message"]
    assert "[REDACTED]" in event.data["error_message"]


async def test_fail_session_without_error_uses_unknown_error(manager: SessionManager) -> None:
    session = await manager.start_session("a")
    await manager.fail_session(session.id)
    (event,) = await manager.get_session_events(session.id, types=["session_failed"])
    assert event.data["error_code"] == "unknown_error"


async def test_cancel_session_from_pending(manager: SessionManager) -> None:
    session = await manager.start_session("a")
    assert (await manager.cancel_session(session.id)).status is SessionStatus.CANCELLED
    assert types_of(await manager.get_session_events(session.id))[-1] is EventType.SESSION_CANCELLED


@pytest.mark.parametrize(
    ("prepare", "operation"),
    [
        ([], "pause_session"),  # pending -> paused
        (["activate_session"], "activate_session"),  # active -> active
        (["complete_session"], "activate_session"),
        (["complete_session"], "complete_session"),
        (["cancel_session"], "fail_session"),
        (["fail_session"], "cancel_session"),
        (["activate_session", "pause_session"], "pause_session"),
        (["cancel_session"], "pause_session"),
    ],
)
async def test_illegal_transitions_raise_and_persist_nothing(
    manager: SessionManager, prepare: list[str], operation: str
) -> None:
    session = await manager.start_session("a")
    for step in prepare:
        await getattr(manager, step)(session.id)
    before = await manager.get_session(session.id)
    events_before = await manager.get_session_events(session.id)
    with pytest.raises(AsmError) as info:
        await getattr(manager, operation)(session.id)
    assert info.value.code is ErrorCode.INVALID_TRANSITION
    assert await manager.get_session(session.id) == before
    assert await manager.get_session_events(session.id) == events_before


@pytest.mark.parametrize(
    "operation",
    ["activate_session", "pause_session", "complete_session", "fail_session", "cancel_session"],
)
async def test_transitions_of_unknown_session(manager: SessionManager, operation: str) -> None:
    with pytest.raises(AsmError) as info:
        await getattr(manager, operation)("ses_nope")
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND


async def test_session_events_use_adapter_name() -> None:
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, ScriptedAdapter(name="other"))
        session = await manager.start_session("a")
        assert session.metadata["provider"] == "other"
        (event,) = await manager.get_session_events(session.id)
        assert event.provider == "other"
