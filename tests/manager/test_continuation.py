"""Continuation: transcript replay and native resume."""

from __future__ import annotations

from typing import Any

import pytest

from agent_session_manager import (
    AsmError,
    ErrorCode,
    EventType,
    InMemorySessionStore,
    RunStatus,
    SessionManager,
)
from agent_session_manager.testing import Script, ScriptedAdapter, Step, text_script

from ._helpers import open_session

pytestmark = pytest.mark.anyio


async def _two_runs(manager: SessionManager, **execute: Any) -> str:
    sid = await open_session(manager, context={"keep": True})
    first = await manager.start_run(sid, "first question")
    await manager.execute_run(first.id)
    second = await manager.start_run(sid, "second question")
    await manager.execute_run(second.id, **execute)
    return sid


@pytest.mark.parametrize("continuation", [False, None])
async def test_no_continuation(manager: SessionManager, adapter: ScriptedAdapter, continuation: Any) -> None:
    await _two_runs(manager, continuation=continuation)
    assert adapter.calls[1].context == {"keep": True}
    assert adapter.calls[1].opts == {}


@pytest.mark.parametrize("continuation", ["replay", True, "auto"])
async def test_replay_gives_transcript_of_earlier_runs(
    store: InMemorySessionStore, continuation: Any
) -> None:
    # no provider session id recorded, so auto/True fall back to replay
    script = Script(
        steps=[
            Step(EventType.MESSAGE_STREAMED, {"delta": "Ans"}),
            Step(EventType.MESSAGE_STREAMED, {"delta": "wer"}),
            Step(
                EventType.TOOL_CALL_STARTED,
                {"tool_call_id": "t1", "tool_name": "ls", "tool_input": {"p": "."}},
            ),
            Step(
                EventType.TOOL_CALL_COMPLETED, {"tool_call_id": "t1", "tool_name": "ls", "tool_output": "a b"}
            ),
        ]
    )
    adapter = ScriptedAdapter(script)
    manager = SessionManager(store, adapter)
    sid = await _two_runs(manager, continuation=continuation)
    context = adapter.calls[1].context
    assert context["keep"] is True
    transcript = context["transcript"]
    assert transcript["session_id"] == sid
    messages = transcript["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first question"),
        ("assistant", None),
        ("tool", None),
        ("assistant", "Answer"),
    ]
    assert messages[1]["tool_name"] == "ls"
    assert messages[1]["tool_input"] == {"p": "."}
    assert messages[2]["tool_output"] == "a b"
    first_run = (await manager.get_session_runs(sid))[0]
    assert {m["run_id"] for m in messages} == {first_run.id}
    assert "resume_session_id" not in adapter.calls[1].opts
    # the stored session is unchanged: the transcript is only handed to the adapter
    assert "transcript" not in (await manager.get_session(sid)).context
    assert adapter.calls[0].context == {"keep": True}


async def test_replay_with_limits(manager: SessionManager, adapter: ScriptedAdapter) -> None:
    await _two_runs(manager, continuation="replay", continuation_opts={"max_messages": 1})
    messages = adapter.calls[1].context["transcript"]["messages"]
    assert len(messages) == 1
    assert messages[0]["role"] == "assistant"


async def test_replay_ignores_native_id(manager: SessionManager, adapter: ScriptedAdapter) -> None:
    await _two_runs(manager, continuation="replay")
    assert "transcript" in adapter.calls[1].context
    assert "resume_session_id" not in adapter.calls[1].opts


@pytest.mark.parametrize("continuation", ["native", "auto", True])
async def test_native_resume(manager: SessionManager, adapter: ScriptedAdapter, continuation: Any) -> None:
    await _two_runs(manager, continuation=continuation, adapter_opts={"model": "m"})
    assert adapter.calls[1].opts == {"resume_session_id": "scripted-session", "model": "m"}
    assert "transcript" not in adapter.calls[1].context


async def test_adapter_opts_override_resume_id(manager: SessionManager, adapter: ScriptedAdapter) -> None:
    await _two_runs(manager, continuation="native", adapter_opts={"resume_session_id": "mine"})
    assert adapter.calls[1].opts["resume_session_id"] == "mine"


async def test_native_without_provider_session(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script())
    manager = SessionManager(store, adapter)
    sid = await open_session(manager)
    first = await manager.start_run(sid, "q")
    await manager.execute_run(first.id)
    second = await manager.start_run(sid, "q2")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(second.id, continuation="native")
    assert info.value.code is ErrorCode.INVALID_OPERATION
    assert (await manager.get_run(second.id)).status is RunStatus.PENDING
    assert len(adapter.calls) == 1


async def test_native_id_of_other_provider_is_not_used(store: InMemorySessionStore) -> None:
    first = SessionManager(store, ScriptedAdapter(text_script(session_id="other-psid"), name="other"))
    sid = await open_session(first)
    run = await first.start_run(sid, "q")
    await first.execute_run(run.id)
    adapter = ScriptedAdapter()
    manager = SessionManager(store, adapter)
    run2 = await manager.start_run(sid, "q2")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run2.id, continuation="native")
    assert info.value.code is ErrorCode.INVALID_OPERATION
    await manager.execute_run(run2.id, continuation="auto")
    assert "transcript" in adapter.calls[0].context


async def test_garbage_provider_sessions_metadata_falls_back(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter()
    manager = SessionManager(store, adapter)
    sid = await open_session(manager, metadata={"provider_sessions": "garbage"})
    run = await manager.start_run(sid, "q")
    await manager.execute_run(run.id, continuation="auto")
    assert "transcript" in adapter.calls[0].context
    session = await manager.get_session(sid)
    assert session.metadata["provider_sessions"] == {
        "scripted": {"provider_session_id": "scripted-session", "model": "scripted-1"}
    }


@pytest.mark.parametrize(
    ("continuation", "opts"),
    [
        ("sometimes", None),
        (1, None),
        ("replay", {"max_lines": 3}),
        ("replay", {"max_messages": 0}),
        ("replay", {"max_chars": -1}),
        ("replay", {"max_tokens_approx": "10"}),
    ],
)
async def test_invalid_continuation(
    manager: SessionManager, adapter: ScriptedAdapter, continuation: Any, opts: Any
) -> None:
    sid = await open_session(manager)
    run = await manager.start_run(sid, "q")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, continuation=continuation, continuation_opts=opts)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert (await manager.get_run(run.id)).status is RunStatus.PENDING
    assert adapter.calls == []


class CountingStore(InMemorySessionStore):
    """Counts full-log reads (get_events with no cursor)."""

    def __init__(self) -> None:
        super().__init__()
        self.full_reads = 0

    async def get_events(self, session_id: str, **kwargs: Any) -> list[Any]:  # type: ignore[override]
        if not kwargs.get("after") and not kwargs.get("run_id"):
            self.full_reads += 1
        return await super().get_events(session_id, **kwargs)


async def test_a_given_transcript_replaces_the_full_read() -> None:
    from agent_session_manager.core.transcript import build_transcript

    store = CountingStore()
    adapter = ScriptedAdapter()
    manager = SessionManager(store, adapter)
    sid = await open_session(manager)
    first = await manager.start_run(sid, "first question")
    await manager.execute_run(first.id)
    transcript = build_transcript(await store.get_events(sid), session_id=sid)
    reads = store.full_reads
    second = await manager.start_run(sid, "second question")
    await manager.execute_run(
        second.id, continuation="replay", transcript=transcript, continuation_opts={"max_messages": 1}
    )
    assert store.full_reads == reads  # the manager did not read the whole log
    given = adapter.calls[1].context["transcript"]
    assert given["session_id"] == sid
    assert [m["role"] for m in given["messages"]] == ["assistant"]  # limits still apply
    assert given["messages"][0]["content"] == transcript.messages[-1].content


async def test_a_transcript_of_another_session_is_refused(manager: SessionManager) -> None:
    from agent_session_manager.core.transcript import Transcript

    sid = await open_session(manager)
    run = await manager.start_run(sid, "q")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(
            run.id, continuation="replay", transcript=Transcript(session_id="ses_other")
        )
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert (await manager.get_run(run.id)).status is RunStatus.PENDING
