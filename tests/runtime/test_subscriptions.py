"""SessionServer.subscribe: backfill then live, order, filters, slow subscribers, lifecycle."""

from __future__ import annotations

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType
from agent_session_manager.runtime import SessionServer, Subscription
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import blocking_adapter

pytestmark = pytest.mark.anyio


async def take(sub: Subscription, count: int) -> list[Event]:
    out: list[Event] = []
    async for event in sub:
        out.append(event)
        if len(out) == count:
            break
    return out


async def take_until(sub: Subscription, last_sequence: int) -> list[Event]:
    out: list[Event] = []
    if last_sequence <= sub.last_sequence:
        return out
    async for event in sub:
        out.append(event)
        if event.sequence_number == last_sequence:
            break
    return out


async def test_backfill_then_live_without_gap_or_duplicate() -> None:
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "s"}) as server:
        await server.execute_run("before")
        async with server.subscribe() as sub:
            await server.execute_run("after")
            latest = await store.get_latest_sequence(server.session_id)
            got = await take_until(sub, latest)
        full = await store.get_events(server.session_id)
    assert [e.id for e in got] == [e.id for e in full]
    assert [e.sequence_number for e in got] == list(range(1, latest + 1))


async def test_from_sequence_is_strictly_after() -> None:
    store = InMemorySessionStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "s"}) as server:
        await server.execute_run("x")
        latest = await store.get_latest_sequence(server.session_id)
        async with server.subscribe(from_sequence=3) as sub:
            got = await take_until(sub, latest)
        assert sub.from_sequence == 3
    assert [e.sequence_number for e in got] == list(range(4, latest + 1))


async def test_live_events_reach_a_caught_up_subscriber() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    async with SessionServer(store, adapter, session_opts={"agent_id": "s"}) as server:
        start = await store.get_latest_sequence(server.session_id)
        async with server.subscribe(from_sequence=start) as sub:
            run_id = await server.submit_run("live")
            first = await take(sub, 1)
            assert first[0].type is EventType.RUN_STARTED
            assert first[0].run_id == run_id
            adapter.release()
            await server.await_run(run_id)
            rest = await take_until(sub, await store.get_latest_sequence(server.session_id))
    assert rest[-1].type is EventType.RUN_COMPLETED
    assert all(e.run_id == run_id for e in first + rest)


async def test_run_id_and_types_filters() -> None:
    store = InMemorySessionStore()
    async with SessionServer(
        store, ScriptedAdapter(), session_opts={"agent_id": "f"}, max_concurrent_runs=2
    ) as server:
        a = await server.submit_run("a")
        b = await server.submit_run("b")
        await server.drain(10)
        run_b_events = await store.get_events(server.session_id, run_id=b)
        async with server.subscribe(run_id=b) as sub:
            got = await take(sub, len(run_b_events))
        assert sub.run_id == b
        assert [e.id for e in got] == [e.id for e in run_b_events]
        async with server.subscribe(types=["run_completed", EventType.RUN_STARTED]) as sub:
            got = await take(sub, 4)
        assert sub.types == (EventType.RUN_COMPLETED, EventType.RUN_STARTED)
    assert {e.type for e in got} == {EventType.RUN_STARTED, EventType.RUN_COMPLETED}
    assert sorted(e.run_id or "" for e in got) == sorted([a, a, b, b])
    assert [e.sequence_number for e in got] == sorted(e.sequence_number or 0 for e in got)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"from_sequence": -1}, ErrorCode.VALIDATION_ERROR),
        ({"from_sequence": True}, ErrorCode.VALIDATION_ERROR),
        ({"from_sequence": "1"}, ErrorCode.VALIDATION_ERROR),
        ({"types": ["not_a_type"]}, ErrorCode.VALIDATION_ERROR),
        ({"types": "run_started"}, ErrorCode.VALIDATION_ERROR),
        ({"buffer_size": 0}, ErrorCode.VALIDATION_ERROR),
    ],
)
async def test_subscribe_validation(kwargs: dict[str, object], code: ErrorCode) -> None:
    async with SessionServer(
        InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "v"}
    ) as server:
        with pytest.raises(AsmError) as info:
            async with server.subscribe(**kwargs):  # type: ignore[arg-type]
                pass
        assert info.value.code is code
        assert server.status().subscribers == 0


async def test_unsubscribe_on_exit_updates_status() -> None:
    async with SessionServer(
        InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "u"}
    ) as server:
        async with server.subscribe(), server.subscribe():
            assert server.status().subscribers == 2
        assert server.status().subscribers == 0


async def test_slow_subscriber_never_stalls_runs_and_catches_up() -> None:
    store = InMemorySessionStore()
    server = SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "slow"})
    async with server, server.subscribe(buffer_size=2) as sub:
        # Nobody reads while 20 runs (far more events than the buffer) complete.
        for i in range(20):
            await server.execute_run(f"run {i}")
        latest = await store.get_latest_sequence(server.session_id)
        assert latest > 100
        got = await take_until(sub, latest)
    assert [e.sequence_number for e in got] == list(range(1, latest + 1))


async def test_subscription_ends_when_server_closes_after_delivering_final_events() -> None:
    store = InMemorySessionStore()
    adapter = blocking_adapter()
    got: list[Event] = []
    server = SessionServer(store, adapter, session_opts={"agent_id": "end"})
    async with anyio.create_task_group() as tg, server:
        ready = anyio.Event()

        async def consume() -> None:
            async with server.subscribe() as sub:
                ready.set()
                async for event in sub:
                    got.append(event)

        tg.start_soon(consume)
        await ready.wait()
        run_id = await server.submit_run("cut short")
        await adapter.wait_for_calls(1)
    # The server closed first (inner context); the consumer's loop then ended by itself.
    full = await store.get_events(server.session_id)
    assert [e.id for e in got] == [e.id for e in full]
    assert got[-1].type is EventType.RUN_CANCELLED
    assert got[-1].run_id == run_id


async def test_subscribe_on_closed_server_is_invalid() -> None:
    server = SessionServer(InMemorySessionStore(), ScriptedAdapter(), session_opts={"agent_id": "c"})
    async with server:
        pass
    with pytest.raises(AsmError) as info:
        async with server.subscribe():
            pass
    assert info.value.code is ErrorCode.INVALID_OPERATION


async def test_store_failure_ends_subscription_with_the_error() -> None:
    store = InMemorySessionStore()
    server = SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "e"})
    async with server, server.subscribe() as sub:
        assert len(await take(sub, 2)) == 2
        await store.close()  # the follower's next read fails
        with pytest.raises(AsmError) as info:
            async for _ in sub:
                pass
        assert info.value.code is ErrorCode.STORAGE_CONNECTION_FAILED
        with pytest.raises(AsmError):
            await sub.receive()


async def test_events_appended_outside_the_server_are_delivered_by_long_poll() -> None:
    store = InMemorySessionStore()
    async with SessionServer(
        store, ScriptedAdapter(), session_opts={"agent_id": "o"}, long_poll=0.05
    ) as server:
        start = await store.get_latest_sequence(server.session_id)
        async with server.subscribe(from_sequence=start) as sub:
            stored = await store.append_event(
                Event(type=EventType.ERROR_OCCURRED, session_id=server.session_id, data={"x": 1})
            )
            got = await sub.receive()
    assert got.id == stored.id
