"""SessionManager.cancel_run: pending, in-flight, stubborn adapters and caller cancellation."""

from __future__ import annotations

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
    ProviderResult,
    Run,
    RunStatus,
    Session,
    SessionManager,
)
from agent_session_manager.ports import Emit
from agent_session_manager.testing import Script, ScriptedAdapter, Step

from ._helpers import assert_run_invariants, open_session, run_events

pytestmark = pytest.mark.anyio

BLOCKING = Script(steps=[Step(EventType.MESSAGE_STREAMED, {"delta": "partial"})], block=True)


async def _execute_expecting(
    manager: SessionManager, run_id: str, code: ErrorCode, out: list[AsmError]
) -> None:
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run_id)
    assert info.value.code is code
    out.append(info.value)


async def test_cancel_pending_run(manager: SessionManager, adapter: ScriptedAdapter) -> None:
    run = await manager.start_run(await open_session(manager), "hi")
    assert await manager.cancel_run(run.id) == run.id
    stored = await manager.get_run(run.id)
    assert stored.status is RunStatus.CANCELLED
    assert stored.error == {"code": "cancelled", "message": "run cancelled"}
    events = await run_events(manager, run)
    assert [e.type for e in events] == [EventType.RUN_CANCELLED]
    assert adapter.calls == []
    assert adapter.cancelled == []
    # executing it afterwards is an invalid transition
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code is ErrorCode.INVALID_TRANSITION


async def test_cancel_finished_run_is_noop(manager: SessionManager) -> None:
    run = await manager.start_run(await open_session(manager), "hi")
    await manager.execute_run(run.id)
    before = await manager.get_session_events(run.session_id)
    assert await manager.cancel_run(run.id) == run.id
    assert (await manager.get_run(run.id)).status is RunStatus.COMPLETED
    assert await manager.get_session_events(run.session_id) == before
    await manager.cancel_run(run.id)  # twice is fine too
    assert await manager.get_session_events(run.session_id) == before


async def test_cancel_unknown_run(manager: SessionManager) -> None:
    with pytest.raises(AsmError) as info:
        await manager.cancel_run("run_nope")
    assert info.value.code is ErrorCode.RUN_NOT_FOUND


async def test_cancel_in_flight_run(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(BLOCKING)
    manager = SessionManager(store, adapter)
    run = await manager.start_run(await open_session(manager), "hi")
    errors: list[AsmError] = []
    seen: list[Event] = []

    async def execute() -> None:
        with pytest.raises(AsmError) as info:
            await manager.execute_run(run.id, on_event=seen.append)
        errors.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        await adapter.wait_for_calls(1)
        assert (await manager.get_run(run.id)).status is RunStatus.RUNNING
        await manager.cancel_run(run.id)
        # cancel_run returns only once the run is finalized
        assert (await manager.get_run(run.id)).status is RunStatus.CANCELLED

    assert errors[0].code is ErrorCode.CANCELLED
    assert adapter.cancelled == [run.id]
    assert adapter.calls[0].outcome == "cancelled"
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.CANCELLED
    assert stored.error == {"code": "cancelled", "message": "run cancelled"}
    assert [e.type for e in events].count(EventType.RUN_CANCELLED) == 1
    assert events[-1].data["reason"] == "cancel requested"
    assert seen[-1].type is EventType.RUN_CANCELLED


class _Stubborn(ProviderAdapter):
    """Ignores cancel(): blocks until its task is cancelled."""

    name = "stubborn"

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.cancel_calls: list[str] = []
        self.was_cancelled = False

    def capabilities(self) -> list[Capability]:
        return []

    async def cancel(self, run_id: str) -> None:
        self.cancel_calls.append(run_id)

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        await emit_started(emit)
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.was_cancelled = True
            raise
        raise AssertionError("unreachable")


async def emit_started(emit: Emit) -> None:
    from agent_session_manager import ProviderEvent

    await emit(ProviderEvent(type=EventType.RUN_STARTED, data={"model": "m"}))


class _BrokenCancel(_Stubborn):
    async def cancel(self, run_id: str) -> None:
        raise RuntimeError("cancel is broken")


@pytest.mark.parametrize("adapter_cls", [_Stubborn, _BrokenCancel])
async def test_adapter_ignoring_cancel_is_cancelled_after_grace(
    store: InMemorySessionStore, adapter_cls: type[_Stubborn]
) -> None:
    adapter = adapter_cls()
    manager = SessionManager(store, adapter, cancel_grace=0.01)
    run = await manager.start_run(await open_session(manager), "hi")
    errors: list[AsmError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_execute_expecting, manager, run.id, ErrorCode.CANCELLED, errors)
        await adapter.started.wait()
        await manager.cancel_run(run.id)
    assert adapter.was_cancelled
    if adapter_cls is _Stubborn:
        assert adapter.cancel_calls == [run.id]
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.CANCELLED
    assert [e.type for e in events].count(EventType.RUN_CANCELLED) == 1


async def test_caller_cancellation_finalizes_cancelled(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(BLOCKING)
    manager = SessionManager(store, adapter)
    run = await manager.start_run(await open_session(manager), "hi")
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.execute_run, run.id)
        await adapter.wait_for_calls(1)
        tg.cancel_scope.cancel()
    stored, events = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.CANCELLED
    assert events[-1].data["reason"] == "caller cancelled"
    assert adapter.calls[0].outcome == "cancelled"
    # nothing left in flight: cancelling again is a no-op on a finished run
    await manager.cancel_run(run.id)
    assert await run_events(manager, run) == events


async def test_caller_cancellation_with_stubborn_adapter(store: InMemorySessionStore) -> None:
    adapter = _Stubborn()
    manager = SessionManager(store, adapter)
    run = await manager.start_run(await open_session(manager), "hi")
    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(manager.execute_run, run.id)
            await adapter.started.wait()
            tg.cancel_scope.cancel()
    assert not scope.cancelled_caught
    stored, _ = await assert_run_invariants(manager, run.id)
    assert stored.status is RunStatus.CANCELLED


async def test_cancel_by_another_manager_is_not_overwritten(store: InMemorySessionStore) -> None:
    """A run cancelled by another owner (another process) keeps its single run_cancelled."""
    owner_adapter = ScriptedAdapter(BLOCKING)
    owner = SessionManager(store, owner_adapter)
    other_adapter = ScriptedAdapter()
    other = SessionManager(store, other_adapter)
    run = await owner.start_run(await open_session(owner), "hi")
    errors: list[AsmError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_execute_expecting, owner, run.id, ErrorCode.CANCELLED, errors)
        await owner_adapter.wait_for_calls(1)
        await other.cancel_run(run.id)  # not in flight there: records the outcome itself
        assert other_adapter.cancelled == [run.id]
        assert (await store.get_run(run.id)).status is RunStatus.CANCELLED
        owner_adapter.release(run.id)  # the provider finishes normally afterwards
    stored = await store.get_run(run.id)
    assert stored.status is RunStatus.CANCELLED
    events = await run_events(owner, run)
    assert [e.type for e in events].count(EventType.RUN_CANCELLED) == 1
    assert not any(e.type is EventType.RUN_COMPLETED for e in events)
    assert "provider_sessions" not in (await store.get_session(run.session_id)).metadata


async def test_failed_run_finalized_elsewhere_raises_stored_outcome(store: InMemorySessionStore) -> None:
    owner_adapter = ScriptedAdapter(
        Script(block=True, error=AsmError(ErrorCode.PROVIDER_ERROR, "late failure"))
    )
    owner = SessionManager(store, owner_adapter)
    other = SessionManager(store, ScriptedAdapter())
    run = await owner.start_run(await open_session(owner), "hi")
    errors: list[AsmError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_execute_expecting, owner, run.id, ErrorCode.CANCELLED, errors)
        await owner_adapter.wait_for_calls(1)
        await other.cancel_run(run.id)
        owner_adapter.release()
    assert (await store.get_run(run.id)).status is RunStatus.CANCELLED
    types = [e.type for e in await run_events(owner, run)]
    assert types.count(EventType.RUN_CANCELLED) == 1
    assert EventType.RUN_FAILED not in types


async def test_timeout_run_finalized_elsewhere(store: InMemorySessionStore) -> None:
    owner_adapter = ScriptedAdapter(Script(block=True, error=AsmError(ErrorCode.PROVIDER_TIMEOUT)))
    owner = SessionManager(store, owner_adapter)
    other = SessionManager(store, ScriptedAdapter())
    run = await owner.start_run(await open_session(owner), "hi")
    errors: list[AsmError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_execute_expecting, owner, run.id, ErrorCode.CANCELLED, errors)
        await owner_adapter.wait_for_calls(1)
        await other.cancel_run(run.id)
        owner_adapter.release()
    types = [e.type for e in await run_events(owner, run)]
    assert EventType.RUN_TIMEOUT not in types


async def test_concurrent_runs_cancel_only_the_target(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(BLOCKING)
    manager = SessionManager(store, adapter)
    sid = await open_session(manager)
    first = await manager.start_run(sid, "one")
    second = await manager.start_run(sid, "two")
    errors: list[AsmError] = []

    async def complete_second() -> None:
        await manager.execute_run(second.id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_execute_expecting, manager, first.id, ErrorCode.CANCELLED, errors)
        tg.start_soon(complete_second)
        await adapter.wait_for_calls(2)
        assert adapter.max_in_flight == 2
        await manager.cancel_run(first.id)
        adapter.release(second.id)
    assert (await manager.get_run(first.id)).status is RunStatus.CANCELLED
    assert (await manager.get_run(second.id)).status is RunStatus.COMPLETED
    for run in (first, second):
        await assert_run_invariants(manager, run.id)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (Script(block=True), ErrorCode.INTERNAL_ERROR),  # would complete: raises the stored outcome
        (Script(block=True, error=AsmError(ErrorCode.PROVIDER_ERROR)), ErrorCode.PROVIDER_ERROR),
    ],
)
async def test_run_recovered_as_failed_elsewhere(
    store: InMemorySessionStore, script: Script, expected: ErrorCode
) -> None:
    adapter = ScriptedAdapter(script)
    manager = SessionManager(store, adapter)
    run = await manager.start_run(await open_session(manager), "hi")
    errors: list[AsmError] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_execute_expecting, manager, run.id, expected, errors)
        await adapter.wait_for_calls(1)
        await store.recover_interrupted_runs(reason="presumed dead")
        adapter.release()
    stored = await store.get_run(run.id)
    assert stored.status is RunStatus.FAILED
    assert stored.error is not None
    assert stored.error["code"] == "internal_error"
    types = [e.type for e in await run_events(manager, run)]
    assert types.count(EventType.RUN_FAILED) == 1
    assert EventType.RUN_COMPLETED not in types
    if expected is ErrorCode.INTERNAL_ERROR:
        assert "presumed dead" in errors[0].message


class _GatedStore(InMemorySessionStore):
    """An in-memory store whose next get_run is delivered late (like a slow database read)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: anyio.Event | None = None
        self.parked = anyio.Event()

    async def get_run(self, run_id: str) -> Run:
        run = await super().get_run(run_id)
        gate, self.gate = self.gate, None
        if gate is not None:  # the row was read; its delivery to the caller is delayed
            self.parked.set()
            await gate.wait()
        return run


async def test_cancel_racing_with_run_completion_writes_one_terminal_event() -> None:
    """cancel_run's read of the run must not be stale when the execution finishes meanwhile."""
    async with _GatedStore() as store:
        adapter = ScriptedAdapter(BLOCKING)
        manager = SessionManager(store, adapter)
        run = await manager.start_run(await open_session(manager), "hi")
        finished = anyio.Event()
        outcomes: list[ErrorCode] = []

        async def execute() -> None:
            try:
                await manager.execute_run(run.id)
            except AsmError as exc:
                outcomes.append(exc.code)
            finally:
                finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(execute)
            await adapter.wait_for_calls(1)
            gate = anyio.Event()
            store.gate = gate
            tg.start_soon(manager.cancel_run, run.id)
            await store.parked.wait()  # cancel_run is reading the run...
            adapter.release(run.id)  # ...while the provider finishes
            await finished.wait()
            gate.set()
        stored, _ = await assert_run_invariants(manager, run.id)
        # whichever won, the caller's error agrees with the stored status
        assert outcomes == ([ErrorCode.CANCELLED] if stored.status is RunStatus.CANCELLED else [])


async def test_cancel_of_pending_run_racing_with_execute_start() -> None:
    """execute_run that read the run as pending before a cancel must not resurrect it."""
    async with _GatedStore() as store:
        adapter = ScriptedAdapter()
        manager = SessionManager(store, adapter)
        run = await manager.start_run(await open_session(manager), "hi")
        errors: list[AsmError] = []
        async with anyio.create_task_group() as tg:
            gate = anyio.Event()
            store.gate = gate
            tg.start_soon(_execute_expecting, manager, run.id, ErrorCode.INVALID_TRANSITION, errors)
            await store.parked.wait()  # execute_run has read the run as pending...
            await manager.cancel_run(run.id)  # ...and the run is cancelled meanwhile
            gate.set()
        assert adapter.calls == []
        stored = await store.get_run(run.id)
        assert stored.status is RunStatus.CANCELLED
        assert [e.type for e in await run_events(manager, run)] == [EventType.RUN_CANCELLED]
