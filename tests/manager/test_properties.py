"""Property: whatever a provider emits and however a run ends, the run's log is well formed."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_session_manager import (
    AsmError,
    ErrorCode,
    EventType,
    InMemorySessionStore,
    RunStatus,
    SessionManager,
)
from agent_session_manager.core.enums import RUN_STATUS_EVENT, TERMINAL_RUN_EVENTS
from agent_session_manager.testing import Script, ScriptedAdapter, Step

_EMITTABLE = st.sampled_from(
    [
        EventType.RUN_STARTED,
        EventType.MESSAGE_STREAMED,
        EventType.MESSAGE_RECEIVED,
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOKEN_USAGE_UPDATED,
        EventType.ERROR_OCCURRED,
        # adapters may emit terminal events too: they must be folded
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_TIMEOUT,
    ]
)
_OUTCOMES = st.sampled_from(
    ["success", "provider_error", "provider_timeout", "crash", "cancel", "caller_cancel", "adapter_cancelled"]
)
_EXPECTED = {
    "success": RunStatus.COMPLETED,
    "provider_error": RunStatus.FAILED,
    "provider_timeout": RunStatus.TIMEOUT,
    "crash": RunStatus.FAILED,
    "cancel": RunStatus.CANCELLED,
    "caller_cancel": RunStatus.CANCELLED,
    "adapter_cancelled": RunStatus.CANCELLED,
}


def _script(steps: list[Step], outcome: str) -> Script:
    error: Exception | None = {
        "provider_error": AsmError(ErrorCode.PROVIDER_ERROR, "x"),
        "provider_timeout": AsmError(ErrorCode.PROVIDER_TIMEOUT, "x"),
        "crash": ValueError("x"),
        "adapter_cancelled": AsmError(ErrorCode.CANCELLED, "x"),
    }.get(outcome)
    return Script(steps=steps, error=error, block=outcome in ("cancel", "caller_cancel"))


async def _execute_quietly(manager: SessionManager, run_id: str, delivered: list[Any]) -> None:
    with contextlib.suppress(AsmError):
        await manager.execute_run(run_id, on_event=delivered.append)


async def _scenario(runs: list[tuple[list[EventType], str, int]]) -> None:
    async with InMemorySessionStore() as store:
        scripts = [_script([Step(t, {"i": i}) for i, t in enumerate(types)], o) for types, o, _ in runs]
        adapter = ScriptedAdapter(scripts)
        manager = SessionManager(store, adapter)
        session = await manager.start_session("p")
        await manager.activate_session(session.id)
        for index, (_types, outcome, n_messages) in enumerate(runs):
            messages: dict[str, Any] = {
                "messages": [{"role": "user", "content": f"m{i}"} for i in range(n_messages)]
            }
            run = await manager.start_run(session.id, messages)
            delivered: list[Any] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(_execute_quietly, manager, run.id, delivered)
                await adapter.wait_for_calls(index + 1)
                if outcome == "cancel":
                    await manager.cancel_run(run.id)
                elif outcome == "caller_cancel":
                    tg.cancel_scope.cancel()

            stored = await store.get_run(run.id)
            assert stored.status is _EXPECTED[outcome]
            events = await store.get_events(session.id, run_id=run.id)
            types = [e.type for e in events]
            assert types[0] is EventType.RUN_STARTED
            assert types.count(EventType.RUN_STARTED) == 1
            assert types[1 : 1 + n_messages] == [EventType.MESSAGE_SENT] * n_messages
            assert sum(t in TERMINAL_RUN_EVENTS for t in types) == 1
            assert types[-1] is RUN_STATUS_EVENT[stored.status]
            assert delivered == events
        everything = await store.get_events(session.id)
        assert [e.sequence_number for e in everything] == list(range(1, len(everything) + 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(
        st.tuples(st.lists(_EMITTABLE, max_size=8), _OUTCOMES, st.integers(0, 2)), min_size=1, max_size=3
    )
)
def test_run_log_invariants(runs: list[tuple[list[EventType], str, int]]) -> None:
    anyio.run(_scenario, runs)
