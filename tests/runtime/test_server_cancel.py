"""SessionServer: cancel, interrupt, crashes, limiter refusal and closing with work."""

from __future__ import annotations

import anyio
import pytest

from agent_session_manager.core import AsmError, Capability, CapabilityType, ErrorCode, EventType, RunStatus
from agent_session_manager.runtime import ConcurrencyLimiter, ControlOperations, SessionServer
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import CrashingStore, blocking_adapter, blocking_script, terminal_events

pytestmark = pytest.mark.anyio


async def test_cancel_queued_run_never_calls_provider_and_records_one_event() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "c"}) as server:
        first = await server.submit_run("first")
        queued = await server.submit_run("queued")
        got: list[AsmError] = []

        async def awaiter() -> None:
            try:
                await server.await_run(queued)
            except AsmError as exc:
                got.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(awaiter)
            await anyio.lowlevel.checkpoint()
            await server.cancel_run(queued)
        assert [e.code for e in got] == [ErrorCode.CANCELLED]
        assert server.status().queued_runs == ()
        run = await store.get_run(queued)
        assert run.status is RunStatus.CANCELLED
        events = await store.get_events(server.session_id, run_id=queued)
        assert [e.type for e in events] == [EventType.RUN_CANCELLED]
        await server.cancel_run(queued)  # finished: no-op
        adapter.release()
        await server.await_run(first)
        await server.drain(10)
    assert [c.run_id for c in adapter.calls] == [first]


async def test_cancel_in_flight_run_delegates_to_manager_and_frees_slot() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "c"}) as server:
        running = await server.submit_run("running")
        nxt = await server.submit_run("next")
        await adapter.wait_for_calls(1)
        await server.cancel_run(running)
        assert adapter.cancelled == [running]
        with pytest.raises(AsmError) as info:
            await server.await_run(running)
        assert info.value.code is ErrorCode.CANCELLED
        await adapter.wait_for_calls(2)  # the slot freed: the next run started
        assert server.status().in_flight_runs == (nxt,)
        adapter.release()
        await server.drain(10)
    assert (await store.get_run(running)).status is RunStatus.CANCELLED
    assert [e.type for e in await terminal_events(store, server.session_id, running)] == [
        EventType.RUN_CANCELLED
    ]


async def test_cancel_unknown_run_is_not_found() -> None:
    async with SessionServer(
        InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "c"}
    ) as server:
        with pytest.raises(AsmError) as info:
            await server.cancel_run("run_unknown")
        assert info.value.code is ErrorCode.RUN_NOT_FOUND


async def test_cancel_of_a_finished_run_is_a_noop() -> None:
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "c"}) as server:
        result = await server.execute_run("done")
        await server.cancel_run(result.run_id)
    assert (await store.get_run(result.run_id)).status is RunStatus.COMPLETED


async def test_interrupt_without_control_ops_cancels() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "i"}) as server:
        run_id = await server.submit_run("x")
        await adapter.wait_for_calls(1)
        assert await server.interrupt_run(run_id) == run_id
        with pytest.raises(AsmError) as info:
            await server.await_run(run_id)
        assert info.value.code is ErrorCode.CANCELLED
    assert (await store.get_run(run_id)).status is RunStatus.CANCELLED


async def test_interrupt_with_control_ops_delegates() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    ops = ControlOperations(adapter)
    async with SessionServer(store, adapter, session_opts={"agent_id": "i"}, control_ops=ops) as server:
        run_id = await server.submit_run("x")
        await adapter.wait_for_calls(1)
        assert ops.get_operation_status(run_id).state == "running"  # registered at start
        assert await server.interrupt_run(run_id) == run_id
        assert adapter.cancelled == [run_id]
        with pytest.raises(AsmError):
            await server.await_run(run_id, timeout=10)
        status = ops.get_operation_status(run_id)
        assert status.last_operation == "interrupt"
        assert ops.is_terminal_state(status.state)  # the server reported how the run ended
    run = await store.get_run(run_id)
    assert run.status.is_terminal
    assert len(await terminal_events(store, server.session_id, run_id)) == 1


async def test_interrupt_of_a_run_not_in_flight_is_not_found() -> None:
    adapter = blocking_adapter()
    async with SessionServer(InMemorySessionStore(), adapter, session_opts={"agent_id": "i"}) as server:
        await server.submit_run("a")
        queued = await server.submit_run("b")
        with pytest.raises(AsmError) as info:
            await server.interrupt_run(queued)
        assert info.value.code is ErrorCode.RUN_NOT_FOUND
        assert "Run not in flight" in info.value.message
        adapter.release()


async def test_crashing_run_releases_slot_and_fails_only_itself() -> None:
    store = CrashingStore()
    adapter = ScriptedAdapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "crash"}) as server:
        crash = await server.submit_run("crash")
        store.crash_runs.add(crash)
        after = await server.submit_run("after")
        with pytest.raises(AsmError) as info:
            await server.await_run(crash, timeout=10)
        assert info.value.code is ErrorCode.INTERNAL_ERROR
        assert "RuntimeError" in info.value.message
        assert (await server.await_run(after, timeout=10)).run_id == after
    run = await store.get_run(crash)
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert run.error["code"] == "internal_error"
    assert [e.type for e in await terminal_events(store, server.session_id, crash)] == [EventType.RUN_FAILED]
    assert [c.run_id for c in adapter.calls] == [after]


async def test_run_failing_validation_inside_execute_is_finalized_failed() -> None:
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "v"}) as server:
        with pytest.raises(AsmError) as info:
            await server.execute_run("x", continuation="sideways")
        assert info.value.code is ErrorCode.VALIDATION_ERROR
        run_id = (await store.list_runs(server.session_id))[0].id
    assert (await store.get_run(run_id)).status is RunStatus.FAILED
    assert len(await terminal_events(store, server.session_id, run_id)) == 1


async def test_limiter_refusal_fails_the_run_with_one_event() -> None:
    store = InMemorySessionStore()
    limiter = ConcurrencyLimiter(max_parallel_runs=1)
    limiter.acquire_run_slot("elsewhere", "run_elsewhere")  # the only slot is taken
    adapter = ScriptedAdapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "l"}, limiter=limiter) as server:
        assert limiter.status().active_sessions == 1
        run_id = await server.submit_run("refused")
        with pytest.raises(AsmError) as info:
            await server.await_run(run_id, timeout=10)
        assert info.value.code is ErrorCode.MAX_RUNS_EXCEEDED
        run = await store.get_run(run_id)
        assert run.status is RunStatus.FAILED
        events = await store.get_events(server.session_id, run_id=run_id)
        assert [e.type for e in events] == [EventType.RUN_FAILED]
        assert events[0].data["error_code"] == "max_runs_exceeded"
        limiter.release_run_slot("run_elsewhere")
        ok = await server.execute_run("allowed")
        assert limiter.status().active_runs == 0  # released after the run
    assert adapter.calls[0].run_id == ok.run_id
    assert limiter.status().active_sessions == 0


async def test_limiter_session_slot_refusal_blocks_start() -> None:
    limiter = ConcurrencyLimiter(max_parallel_sessions=1)
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "a"}, limiter=limiter):
        with pytest.raises(AsmError) as info:
            async with SessionServer(
                store, ScriptedAdapter(), session_opts={"agent_id": "b"}, limiter=limiter
            ):
                pass
        assert info.value.code is ErrorCode.MAX_SESSIONS_EXCEEDED
    assert limiter.status().active_sessions == 0


async def test_close_with_queued_and_in_flight_work_cancels_and_answers_everyone() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    answers: dict[str, ErrorCode] = {}
    async with (
        anyio.create_task_group() as outer,
        SessionServer(store, adapter, session_opts={"agent_id": "close"}, max_concurrent_runs=2) as server,
    ):
        ids = [await server.submit_run(f"r{i}") for i in range(5)]

        async def awaiter(run_id: str) -> None:
            try:
                await server.await_run(run_id)
            except AsmError as exc:
                answers[run_id] = exc.code

        for run_id in ids:
            outer.start_soon(awaiter, run_id)
        await adapter.wait_for_calls(2)
    assert answers == dict.fromkeys(ids, ErrorCode.CANCELLED)
    assert [c.run_id for c in adapter.calls] == ids[:2]
    for run_id in ids:
        assert (await store.get_run(run_id)).status is RunStatus.CANCELLED
        assert [e.type for e in await terminal_events(store, server.session_id, run_id)] == [
            EventType.RUN_CANCELLED
        ]
    assert server.status().in_flight_count == 0
    assert server.status().queued_count == 0


async def test_adapter_ignoring_cancel_is_cut_off_by_close_timeout() -> None:
    """An adapter that ignores cancel() is still stopped (anyio cancellation) and finalized."""

    class Stubborn(ScriptedAdapter):
        async def cancel(self, run_id: str) -> None:
            return None  # ignores the request

    store = InMemorySessionStore()
    adapter = Stubborn(
        blocking_script(),
        capabilities=[Capability(name="chat", type=CapabilityType.SAMPLING)],
    )
    server = SessionServer(store, adapter, session_opts={"agent_id": "s"}, close_timeout=0.05)
    server.manager.cancel_grace = 0.05
    async with server:
        run_id = await server.submit_run("stuck")
        await adapter.wait_for_calls(1)
    run = await store.get_run(run_id)
    assert run.status is RunStatus.CANCELLED
    assert len(await terminal_events(store, server.session_id, run_id)) == 1


async def test_host_cancellation_still_finalizes_runs() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    ids: list[str] = []
    with anyio.CancelScope() as scope:
        async with SessionServer(store, adapter, session_opts={"agent_id": "h"}) as server:
            ids.append(await server.submit_run("a"))
            ids.append(await server.submit_run("b"))
            await adapter.wait_for_calls(1)
            scope.cancel()
            await anyio.sleep_forever()
    for run_id in ids:
        assert (await store.get_run(run_id)).status is RunStatus.CANCELLED
        assert len(await terminal_events(store, server.session_id, run_id)) == 1
