"""SessionManager.execute_run: event order, results, failures and timeouts."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from agent_session_manager import (
    AsmError,
    Capability,
    ErrorCode,
    Event,
    EventType,
    InMemorySessionStore,
    ProviderAdapter,
    ProviderEvent,
    ProviderResult,
    Run,
    RunStatus,
    Session,
    SessionManager,
    TokenUsage,
)
from agent_session_manager.ports import Emit
from agent_session_manager.testing import Script, ScriptedAdapter, Step, text_script

from ._helpers import assert_gapless, assert_run_invariants, open_session, run_events, types_of

pytestmark = pytest.mark.anyio

MESSAGES = {"messages": [{"role": "user", "content": "Hi"}, {"role": "Assistant", "content": "Hello"}]}


async def _pending(manager: SessionManager, run_input: Any = "Hi") -> Run:
    sid = await open_session(manager)
    return await manager.start_run(sid, run_input)


async def test_event_order_and_result(manager: SessionManager, store: InMemorySessionStore) -> None:
    run = await _pending(manager, MESSAGES)
    result = await manager.execute_run(run.id)

    events = await run_events(manager, run)
    assert types_of(events) == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_SENT,
        *[EventType.MESSAGE_STREAMED] * 4,
        EventType.MESSAGE_RECEIVED,
        EventType.TOKEN_USAGE_UPDATED,
        EventType.RUN_COMPLETED,
    ]
    started = events[0]
    assert started.data["provider_session_id"] == "scripted-session"
    assert started.data["model"] == "scripted-1"
    assert started.data["provider"] == "scripted"
    assert [e.data for e in events[1:3]] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert all(e.run_id == run.id and e.provider == "scripted" for e in events)
    assert all(e.metadata["provider"] == "scripted" for e in events)
    completed = events[-1]
    assert completed.data["stop_reason"] == "end_turn"
    assert completed.data["token_usage"]["input_tokens"] == 12

    text = "Hello from the scripted provider."
    assert result.session_id == run.session_id
    assert result.run_id == run.id
    assert result.output == {"content": text, "tool_calls": [], "stop_reason": "end_turn"}
    assert result.token_usage == TokenUsage(input_tokens=12, output_tokens=len(text.split()))
    assert result.cost_usd is None
    assert result.provider_session_id == "scripted-session"
    assert result.model == "scripted-1"
    assert result.policy is None
    assert result.workspace is None
    assert result.events == events
    assert all(e.sequence_number is not None for e in result.events)

    stored = await store.get_run(run.id)
    assert stored.status is RunStatus.COMPLETED
    assert stored.output == result.output
    assert stored.token_usage == result.token_usage
    assert stored.turn_count == 1
    assert stored.metadata["provider"] == "scripted"
    assert stored.metadata["provider_session_id"] == "scripted-session"
    assert stored.metadata["model"] == "scripted-1"
    assert stored.started_at is not None
    assert stored.ended_at is not None
    assert stored.error is None

    session = await store.get_session(run.session_id)
    assert session.metadata["provider_sessions"] == {
        "scripted": {"provider_session_id": "scripted-session", "model": "scripted-1"}
    }
    assert session.metadata["provider_session_id"] == "scripted-session"
    await assert_gapless(manager, run.session_id)


async def test_usage_cost_turns_and_output_defaults(store: InMemorySessionStore) -> None:
    usage = TokenUsage(input_tokens=3, output_tokens=4, cache_read_tokens=5)
    adapter = ScriptedAdapter(
        Script(result=ProviderResult(output={"content": "x"}, token_usage=usage, cost_usd=0.25, turn_count=3))
    )
    manager = SessionManager(store, adapter)
    run = await _pending(manager)
    result = await manager.execute_run(run.id)
    assert result.output == {"content": "x", "tool_calls": [], "stop_reason": None}
    assert result.cost_usd == 0.25
    stored = await store.get_run(run.id)
    assert (stored.token_usage, stored.cost_usd, stored.turn_count) == (usage, 0.25, 3)
    events = await run_events(manager, run)
    # no provider session id / model: the session's metadata is left alone
    assert types_of(events) == [EventType.RUN_STARTED, EventType.MESSAGE_SENT, EventType.RUN_COMPLETED]
    assert events[-1].data["cost_usd"] == 0.25
    assert "provider_sessions" not in (await store.get_session(run.session_id)).metadata
    assert result.provider_session_id is None
    assert result.model is None


async def test_on_event_plain_and_async_receive_persisted_events(manager: SessionManager) -> None:
    plain: list[Event] = []
    run = await _pending(manager)
    result = await manager.execute_run(run.id, on_event=plain.append)
    assert plain == result.events == await run_events(manager, run)
    assert [e.sequence_number for e in plain] == sorted(e.sequence_number or 0 for e in plain)

    seen: list[Event] = []

    async def collect(event: Event) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(event)

    run2 = await manager.start_run(run.session_id, "again")
    result2 = await manager.execute_run(run2.id, on_event=collect)
    assert seen == result2.events == await run_events(manager, run2)
    assert seen[0].sequence_number == plain[-1].sequence_number + 1  # type: ignore[operator]


async def test_adapter_run_started_late_or_twice(store: InMemorySessionStore) -> None:
    script = Script(
        steps=[
            Step(EventType.MESSAGE_STREAMED, {"delta": "a"}),
            Step(EventType.RUN_STARTED, {"session_id": "late-id", "model": "m1", "tools": ["t"]}),
            Step(EventType.RUN_STARTED, {"thread_id": "other", "model": "m2"}),
        ]
    )
    manager = SessionManager(store, ScriptedAdapter(script))
    run = await _pending(manager)
    result = await manager.execute_run(run.id)
    events = await run_events(manager, run)
    assert types_of(events) == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_STREAMED,
        EventType.RUN_COMPLETED,
    ]
    assert events[0].data == {"provider": "scripted"}
    stored = await store.get_run(run.id)
    assert stored.metadata["provider_session_id"] == "late-id"
    assert stored.metadata["model"] == "m1"
    assert stored.metadata["tools"] == ["t"]
    assert result.provider_session_id == "late-id"


class _TerminalEmitter(ProviderAdapter):
    """Emits terminal events itself (they are folded) and records what emit returned."""

    name = "terminal"

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.returned: list[Event] = []

    def capabilities(self) -> list[Capability]:
        return []

    async def cancel(self, run_id: str) -> None:
        return None

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        self.returned.append(await emit(ProviderEvent(type=EventType.RUN_COMPLETED, data={"extra": 1})))
        self.returned.append(await emit(ProviderEvent(type="run_failed", data={"why": "x"})))
        self.returned.append(
            await emit(ProviderEvent(type=EventType.MESSAGE_RECEIVED, data={"content": "c"}))
        )
        if self.fail:
            raise AsmError(ErrorCode.PROVIDER_ERROR, "nope")
        return ProviderResult(output={"content": "c"})


@pytest.mark.parametrize("fail", [False, True])
async def test_adapter_terminal_events_are_folded(store: InMemorySessionStore, fail: bool) -> None:
    adapter = _TerminalEmitter(fail)
    manager = SessionManager(store, adapter)
    run = await _pending(manager)
    if fail:
        with pytest.raises(AsmError):
            await manager.execute_run(run.id)
    else:
        await manager.execute_run(run.id)
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is (RunStatus.FAILED if fail else RunStatus.COMPLETED)
    terminal = events[-1]
    assert terminal.data["extra"] == 1
    assert terminal.data["why"] == "x"
    assert types_of(events)[:-1] == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_RECEIVED,
    ]
    # folded terminal events are not persisted; ordinary ones come back with their sequence
    assert [e.sequence_number is None for e in adapter.returned] == [True, True, False]


async def test_adapter_asm_error_fails_run_with_redacted_message(store: InMemorySessionStore) -> None:
    secret = "sk-ant-api03-SECRETSECRETSECRET"
    error = AsmError(
        ErrorCode.PROVIDER_RATE_LIMITED, f"limited for key {secret}", {"auth": f"Bearer {secret}"}
    )
    adapter = ScriptedAdapter(Script(steps=[Step(EventType.MESSAGE_STREAMED, {"delta": "x"})], error=error))
    manager = SessionManager(store, adapter)
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value is error
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED
    assert events[-1].type is EventType.RUN_FAILED
    assert events[-1].data["error_code"] == "provider_rate_limited"
    assert secret not in events[-1].data["error_message"]
    assert stored.error is not None
    assert stored.error["code"] == "provider_rate_limited"
    assert secret not in str(stored.error)
    assert adapter.calls[0].outcome == "error"


async def test_adapter_crash_becomes_internal_error(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script(error=RuntimeError("kaput token=abcdefgh12345")))
    manager = SessionManager(store, adapter)
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code is ErrorCode.INTERNAL_ERROR
    assert "RuntimeError" in info.value.message
    assert "abcdefgh12345" not in info.value.message
    assert info.value.details == {"exception": "RuntimeError"}
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED
    assert events[-1].data["error_code"] == "internal_error"
    assert types_of(events) == [EventType.RUN_STARTED, EventType.MESSAGE_SENT, EventType.RUN_FAILED]


class _NoResult(ProviderAdapter):
    name = "none"

    def capabilities(self) -> list[Capability]:
        return []

    async def cancel(self, run_id: str) -> None:
        return None

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        return None  # type: ignore[return-value]  # a buggy adapter


async def test_adapter_returning_nothing_fails(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, _NoResult())
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code is ErrorCode.INTERNAL_ERROR
    stored, _ = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.FAILED


@pytest.mark.parametrize("code", [ErrorCode.PROVIDER_TIMEOUT, ErrorCode.TIMEOUT])
async def test_provider_timeout_ends_timeout(store: InMemorySessionStore, code: ErrorCode) -> None:
    manager = SessionManager(store, ScriptedAdapter(Script(error=AsmError(code, "slow"))))
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code is code
    assert info.value.retryable
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.TIMEOUT
    assert events[-1].type is EventType.RUN_TIMEOUT
    assert events[-1].data["error_code"] == code.value
    assert stored.error == {"code": code.value, "message": "slow"}


async def test_timeout_deadline(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script(steps=[Step(EventType.MESSAGE_STREAMED, {"delta": "x"})], block=True))
    manager = SessionManager(store, adapter)
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, timeout=0.05)
    assert info.value.code is ErrorCode.TIMEOUT
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.TIMEOUT
    assert events[-1].data["error_code"] == "timeout"
    assert adapter.calls[0].outcome == "cancelled"


class _SwallowsCancellation(ProviderAdapter):
    """Turns anyio cancellation into a provider error (as a careless adapter might)."""

    name = "swallow"

    def capabilities(self) -> list[Capability]:
        return []

    async def cancel(self, run_id: str) -> None:
        return None

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise AsmError(ErrorCode.PROVIDER_ERROR, "interrupted") from None
        raise AssertionError("unreachable")


async def test_timeout_deadline_when_adapter_converts_cancellation(store: InMemorySessionStore) -> None:
    manager = SessionManager(store, _SwallowsCancellation())
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, timeout=0.05)
    assert info.value.code is ErrorCode.TIMEOUT
    stored, _ = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.TIMEOUT


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan, True, "1"])
async def test_invalid_timeout_changes_nothing(manager: SessionManager, timeout: Any) -> None:
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, timeout=timeout)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert (await manager.get_run(run.id)).status is RunStatus.PENDING


async def test_executing_a_non_pending_run(manager: SessionManager, adapter: ScriptedAdapter) -> None:
    run = await _pending(manager)
    await manager.execute_run(run.id)
    before = await manager.get_run(run.id)
    events_before = await manager.get_session_events(run.session_id)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code is ErrorCode.INVALID_TRANSITION
    assert info.value.details == {"run_id": run.id, "status": "completed"}
    assert await manager.get_run(run.id) == before
    assert await manager.get_session_events(run.session_id) == events_before
    assert len(adapter.calls) == 1


async def test_execute_unknown_run(manager: SessionManager) -> None:
    with pytest.raises(AsmError) as info:
        await manager.execute_run("run_nope")
    assert info.value.code is ErrorCode.RUN_NOT_FOUND


@pytest.mark.parametrize(
    "opts",
    [{"policy": object()}, {"policies": ["p"]}, {"workspace": "/tmp/ws"}, {"workspace": True}],
)
async def test_unsupported_options_change_nothing(
    manager: SessionManager, adapter: ScriptedAdapter, opts: dict[str, Any]
) -> None:
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id, **opts)
    assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert info.value.details["option"] == next(iter(opts))
    assert (await manager.get_run(run.id)).status is RunStatus.PENDING
    assert await run_events(manager, run) == []
    assert adapter.calls == []


async def test_empty_policy_options_are_accepted(manager: SessionManager) -> None:
    run = await _pending(manager)
    result = await manager.execute_run(run.id, policies=[], workspace=False, policy=None)
    assert result.run_id == run.id


async def test_adapter_opts_are_passed(manager: SessionManager, adapter: ScriptedAdapter) -> None:
    run = await _pending(manager)
    await manager.execute_run(run.id, adapter_opts={"model": "m", "max_turns": 2})
    assert adapter.calls[0].opts == {"model": "m", "max_turns": 2}
    assert adapter.calls[0].input == {"prompt": "Hi"}


async def test_secrets_are_redacted_unless_disabled(store: InMemorySessionStore) -> None:
    secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz"
    script = Script(steps=[Step(EventType.MESSAGE_RECEIVED, {"content": f"key {secret}", "n": 1})])
    manager = SessionManager(store, ScriptedAdapter([script]))
    run = await _pending(manager, f"use {secret}")
    await manager.execute_run(run.id)
    events = await run_events(manager, run)
    assert secret not in str([e.data for e in events])
    assert events[2].data["n"] == 1

    plain = SessionManager(store, ScriptedAdapter([script]), redact_secrets=False)
    run2 = await plain.start_run(run.session_id, "x")
    await plain.execute_run(run2.id)
    assert any(secret in str(e.data) for e in await run_events(plain, run2))


async def test_input_messages_normalization(manager: SessionManager) -> None:
    run_input = {
        "messages": [
            "not a dict",
            {"role": "user", "content": ""},
            {"content": "no role"},
            {"role": "SYSTEM", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "blocks"}]},
            {"role": "user"},
        ]
    }
    run = await _pending(manager, run_input)
    await manager.execute_run(run.id)
    sent = await manager.get_session_events(run.session_id, run_id=run.id, types=[EventType.MESSAGE_SENT])
    assert [e.data["role"] for e in sent] == ["user", "system", "user"]
    assert sent[0].data["content"] == "no role"
    assert "blocks" in sent[2].data["content"]


async def test_dict_prompt_and_empty_input(manager: SessionManager) -> None:
    run = await _pending(manager, {"prompt": "p"})
    await manager.execute_run(run.id)
    sent = await manager.get_session_events(run.session_id, run_id=run.id, types=["message_sent"])
    assert [e.data for e in sent] == [{"role": "user", "content": "p"}]
    run2 = await manager.start_run(run.session_id, {})
    await manager.execute_run(run2.id)
    assert await manager.get_session_events(run.session_id, run_id=run2.id, types=["message_sent"]) == []


async def test_event_timestamps_from_adapter(store: InMemorySessionStore) -> None:
    aware = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    naive = datetime(2024, 1, 2, 3, 4, 5)
    script = Script(
        steps=[
            ProviderEvent(type=EventType.MESSAGE_STREAMED, data={"delta": "a"}, timestamp=aware),
            ProviderEvent(type=EventType.MESSAGE_STREAMED, data={"delta": "b"}, timestamp=naive),
        ]
    )
    manager = SessionManager(store, ScriptedAdapter(script))
    run = await _pending(manager)
    await manager.execute_run(run.id)
    streamed = await manager.get_session_events(run.session_id, types=["message_streamed"])
    assert streamed[0].timestamp == aware
    assert streamed[1].timestamp.tzinfo is not None
    assert streamed[1].timestamp != naive.replace(tzinfo=UTC)


async def test_adapter_cancelled_error_ends_cancelled_not_failed(store: InMemorySessionStore) -> None:
    manager = SessionManager(
        store, ScriptedAdapter(Script(error=AsmError(ErrorCode.CANCELLED, "user hit stop")))
    )
    run = await _pending(manager)
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code is ErrorCode.CANCELLED
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.CANCELLED
    assert events[-1].data["reason"] == "user hit stop"


async def test_many_runs_keep_session_sequence_gapless(manager: SessionManager) -> None:
    sid = await open_session(manager)
    for i in range(5):
        run = await manager.start_run(sid, f"q{i}")
        await manager.execute_run(run.id)
        await assert_run_invariants(manager, run.id)
    await assert_gapless(manager, sid)
    assert len(await manager.get_session_runs(sid, status=RunStatus.COMPLETED)) == 5


async def test_text_script_defaults() -> None:
    script = text_script("abcdefgh", chunks=3)
    deltas = [s.data["delta"] for s in script.steps if s.type is EventType.MESSAGE_STREAMED]
    assert "".join(deltas) == "abcdefgh"
    assert len(deltas) == 3
