"""SessionServer: bootstrap, submit/await, slots, FIFO, status, drain, options."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, EventType, RunStatus, SessionStatus
from agent_session_manager.manager import SessionManager
from agent_session_manager.runtime import SessionServer, SessionServerStatus
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import Script, ScriptedAdapter, text_script

from ._helpers import blocking_adapter, terminal_events, types_of

pytestmark = pytest.mark.anyio


def msg(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_seed_multi_slot_worked_example() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(
        store,
        adapter,
        session_opts={"agent_id": "multi-slot-demo"},
        max_concurrent_runs=2,
        max_queued_runs=10,
    ) as server:
        r1 = await server.submit_run(msg("Task 1"))
        r2 = await server.submit_run(msg("Task 2"))
        r3 = await server.submit_run(msg("Task 3"))
        r4 = await server.submit_run(msg("Task 4"))
        status = server.status()
        assert status.in_flight_count == 2
        assert status.in_flight_runs == (r1, r2)
        assert status.queued_count == 2
        assert status.queued_runs == (r3, r4)
        await adapter.wait_for_calls(2)
        assert [c.run_id for c in adapter.calls] == [r1, r2]
        adapter.release()
        result_1 = await server.await_run(r1, 60)
        result_2 = await server.await_run(r2, 60)
        assert result_1.run_id == r1
        assert result_2.run_id == r2
        await server.drain(60)
        final = server.status()
        assert final.in_flight_count == 0
        assert final.queued_count == 0
        assert [c.run_id for c in adapter.calls] == [r1, r2, r3, r4]  # FIFO start order
        assert adapter.max_in_flight == 2
        for run_id in (r1, r2, r3, r4):
            assert (await store.get_run(run_id)).status is RunStatus.COMPLETED


async def test_sequential_default_runs_one_at_a_time_in_fifo_order() -> None:
    store = InMemorySessionStore()
    adapter = ScriptedAdapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "seq"}) as server:
        ids = [await server.submit_run(f"task {i}") for i in range(5)]
        await server.drain(10)
    assert [c.run_id for c in adapter.calls] == ids
    assert adapter.max_in_flight == 1


async def test_execute_run_returns_result_with_persisted_events() -> None:
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "x"}) as server:
        result = await server.execute_run(msg("Hello"), timeout=10)
        assert result.output["content"] == "Hello from the scripted provider."
        assert result.session_id == server.session_id
        assert all(e.sequence_number for e in result.events)
        assert result.events[-1].type is EventType.RUN_COMPLETED


async def test_session_opts_bootstrap_creates_and_activates() -> None:
    store = InMemorySessionStore()
    async with SessionServer(
        store, ScriptedAdapter(), session_opts={"agent_id": "boot", "tags": ["t"]}
    ) as server:
        session = await store.get_session(server.session_id)
        assert session.status is SessionStatus.ACTIVE
        assert session.agent_id == "boot"
        assert session.tags == ["t"]
        assert types_of(await store.get_events(server.session_id)) == [
            EventType.SESSION_CREATED,
            EventType.SESSION_STARTED,
        ]


async def test_attach_to_active_session_does_not_reemit_session_started() -> None:
    store = InMemorySessionStore()
    manager = SessionManager(store, ScriptedAdapter())
    session = await manager.start_session("a")
    await manager.activate_session(session.id)
    before = await store.get_latest_sequence(session.id)
    async with SessionServer(store, ScriptedAdapter(), session_id=session.id) as server:
        assert server.session_id == session.id
        assert await store.get_latest_sequence(session.id) == before
        await server.execute_run("hi")


async def test_attach_to_pending_session_activates_it_once() -> None:
    store = InMemorySessionStore()
    session = await SessionManager(store, ScriptedAdapter()).start_session("a")
    async with SessionServer(store, ScriptedAdapter(), session_id=session.id):
        assert (await store.get_session(session.id)).status is SessionStatus.ACTIVE
    events = await store.get_events(session.id)
    assert types_of(events).count(EventType.SESSION_STARTED) == 1


async def test_attach_to_finished_session_is_refused() -> None:
    store = InMemorySessionStore()
    manager = SessionManager(store, ScriptedAdapter())
    session = await manager.start_session("a")
    await manager.complete_session(session.id)
    with pytest.raises(AsmError) as info:
        async with SessionServer(store, ScriptedAdapter(), session_id=session.id):
            pass
    assert info.value.code is ErrorCode.INVALID_OPERATION


async def test_attach_to_unknown_session_raises_not_found() -> None:
    with pytest.raises(AsmError) as info:
        async with SessionServer(InMemorySessionStore(), ScriptedAdapter(), session_id="ses_nope"):
            pass
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"session_opts": {"agent_id": "a"}, "session_id": "ses_x"},
        {"session_opts": {"agent_id": "a"}, "max_concurrent_runs": 0},
        {"session_opts": {"agent_id": "a"}, "max_concurrent_runs": True},
        {"session_opts": {"agent_id": "a"}, "max_concurrent_runs": 1.5},
        {"session_opts": {"agent_id": "a"}, "max_queued_runs": -1},
        {"session_opts": {"agent_id": "a"}, "default_execute_opts": {"bogus": 1}},
        {"session_opts": "agent"},
    ],
)
def test_constructor_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(AsmError) as info:
        SessionServer(InMemorySessionStore(), ScriptedAdapter(), **kwargs)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


async def test_bad_session_opts_is_validation_error() -> None:
    with pytest.raises(AsmError) as info:
        async with SessionServer(InMemorySessionStore(), ScriptedAdapter(), session_opts={"nope": 1}):
            pass
    assert info.value.code is ErrorCode.VALIDATION_ERROR


async def test_queue_full_raises_max_runs_exceeded_without_creating_a_run() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(
        store, adapter, session_opts={"agent_id": "q"}, max_concurrent_runs=1, max_queued_runs=2
    ) as server:
        for i in range(3):
            await server.submit_run(f"r{i}")
        with pytest.raises(AsmError) as info:
            await server.submit_run("overflow")
        assert info.value.code is ErrorCode.MAX_RUNS_EXCEEDED
        assert info.value.message == "Maximum queued runs exceeded (2)"
        assert len(await store.list_runs(server.session_id)) == 3
        adapter.release()
        await server.drain(10)
        await server.submit_run("fits again")
        await server.drain(10)


async def test_unknown_run_option_is_rejected_at_submit() -> None:
    async with SessionServer(
        InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "o"}
    ) as server:
        with pytest.raises(AsmError) as info:
            await server.submit_run("x", frobnicate=True)
        assert info.value.code is ErrorCode.VALIDATION_ERROR
        assert server.status().queued_count == 0


async def test_default_execute_opts_merge_adapter_opts_one_level() -> None:
    adapter = ScriptedAdapter()
    async with SessionServer(
        InMemorySessionStore(),
        adapter,
        session_opts={"agent_id": "d"},
        default_execute_opts={"adapter_opts": {"model": "m1", "max_turns": 3}},
    ) as server:
        await server.execute_run("a")
        await server.execute_run("b", adapter_opts={"model": "m2"})
    assert adapter.calls[0].opts == {"model": "m1", "max_turns": 3}
    assert adapter.calls[1].opts == {"model": "m2", "max_turns": 3}


async def test_submit_options_reach_start_run_and_on_event() -> None:
    store = InMemorySessionStore()
    seen: list[int] = []

    async def on_event(event: Any) -> None:
        seen.append(event.sequence_number)

    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "o"}) as server:
        result = await server.execute_run("hello", metadata={"k": "v"}, on_event=on_event)
    run = await store.get_run(result.run_id)
    assert run.metadata["k"] == "v"
    assert seen == [e.sequence_number for e in result.events]


async def test_await_timeout_does_not_cancel_the_run() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "t"}) as server:
        run_id = await server.submit_run("slow")
        await adapter.wait_for_calls(1)
        with pytest.raises(AsmError) as info:
            await server.await_run(run_id, timeout=0.01)
        assert info.value.code is ErrorCode.TIMEOUT
        assert server.status().in_flight_runs == (run_id,)
        adapter.release()
        result = await server.await_run(run_id, timeout=10)
        assert result.run_id == run_id


async def test_await_run_validation_and_unknown_run() -> None:
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "u"}) as server:
        with pytest.raises(AsmError) as info:
            await server.await_run("run_missing")
        assert info.value.code is ErrorCode.RUN_NOT_FOUND
        with pytest.raises(AsmError) as info:
            await server.await_run("run_missing", timeout=-1)
        assert info.value.code is ErrorCode.VALIDATION_ERROR


async def test_await_run_of_a_run_of_another_session_is_not_found() -> None:
    store = InMemorySessionStore()
    other = await SessionManager(store, ScriptedAdapter()).run_once("elsewhere")
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "u"}) as server:
        with pytest.raises(AsmError) as info:
            await server.await_run(other.run_id)
        assert info.value.code is ErrorCode.RUN_NOT_FOUND


async def test_old_results_are_answered_from_the_store() -> None:
    store = InMemorySessionStore()
    failing = Script(error=AsmError(ErrorCode.PROVIDER_ERROR, "boom"))
    adapter = ScriptedAdapter([text_script(), failing])
    async with SessionServer(store, adapter, session_opts={"agent_id": "r"}, retained_results=1) as server:
        ok = await server.submit_run("one")
        bad = await server.submit_run("two")
        await server.drain(10)
        result = await server.await_run(ok)  # evicted from memory: rebuilt from the store
        assert result.output["content"] == "Hello from the scripted provider."
        assert [e.run_id for e in result.events] == [ok] * len(result.events)
        with pytest.raises(AsmError) as info:
            await server.await_run(bad)
        assert info.value.code is ErrorCode.PROVIDER_ERROR
        await server.cancel_run(ok)  # finished (and evicted): a no-op
        assert (await store.get_run(ok)).status is RunStatus.COMPLETED


async def test_failed_run_fails_only_itself_and_awaiters_get_its_error() -> None:
    store = InMemorySessionStore()
    failing = Script(error=AsmError(ErrorCode.PROVIDER_ERROR, "boom"))
    adapter = ScriptedAdapter(
        script_for=lambda run: failing if run.input.get("prompt") == "bad" else text_script()
    )
    async with SessionServer(store, adapter, session_opts={"agent_id": "f"}, max_concurrent_runs=2) as server:
        bad = await server.submit_run("bad")
        good = await server.submit_run("good")
        with pytest.raises(AsmError) as info:
            await server.await_run(bad, timeout=10)
        assert info.value.code is ErrorCode.PROVIDER_ERROR
        assert (await server.await_run(good, timeout=10)).run_id == good
        # Every awaiter gets the error, repeatedly.
        with pytest.raises(AsmError):
            await server.await_run(bad)
    assert (await store.get_run(bad)).status is RunStatus.FAILED
    assert len(await terminal_events(store, server.session_id, bad)) == 1


async def test_drain_timeout_raises_timeout_and_returns_when_idle() -> None:
    adapter = blocking_adapter()
    async with SessionServer(InMemorySessionStore(), adapter, session_opts={"agent_id": "d"}) as server:
        await server.drain(0)  # idle: returns at once
        await server.submit_run("blocked")
        with pytest.raises(AsmError) as info:
            await server.drain(0.01)
        assert info.value.code is ErrorCode.TIMEOUT
        adapter.release()
        await server.drain()
        assert server.status().in_flight_count == 0


async def test_status_is_immutable_snapshot() -> None:
    async with SessionServer(
        InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "s"}, max_concurrent_runs=3
    ) as server:
        status = server.status()
        assert isinstance(status, SessionServerStatus)
        assert status.session_id == server.session_id
        assert status.max_concurrent_runs == 3
        assert status.max_queued_runs == 100
        assert status.subscribers == 0
        with pytest.raises(AttributeError):
            status.queued_count = 5  # type: ignore[misc]


async def test_operations_on_a_closed_or_unstarted_server_are_invalid() -> None:
    server = SessionServer(InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "c"})
    with pytest.raises(AsmError) as info:
        _ = server.session_id
    assert info.value.code is ErrorCode.INVALID_OPERATION
    async with server:
        pass
    with pytest.raises(AsmError) as info:
        await server.submit_run("late")
    assert info.value.code is ErrorCode.INVALID_OPERATION
    with pytest.raises(AsmError) as info:
        async with server:
            pass
    assert info.value.code is ErrorCode.INVALID_OPERATION
    await server.aclose()  # idempotent


async def test_concurrent_submitters_respect_queue_bound() -> None:
    adapter = blocking_adapter()
    accepted: list[str] = []
    refused: list[AsmError] = []
    async with SessionServer(
        InMemorySessionStore(),
        adapter,
        session_opts={"agent_id": "c"},
        max_concurrent_runs=2,
        max_queued_runs=3,
    ) as server:

        async def submit(i: int) -> None:
            try:
                accepted.append(await server.submit_run(f"r{i}"))
            except AsmError as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(submit, i)
        assert len(accepted) == 5
        assert {e.code for e in refused} == {ErrorCode.MAX_RUNS_EXCEEDED}
        adapter.release()
        await server.drain(10)
