"""SessionSupervisor: start, whereis, stop, duplicates, close-all."""

from __future__ import annotations

import pytest

from agent_session_manager.core import AsmError, ErrorCode, RunStatus
from agent_session_manager.manager import SessionManager
from agent_session_manager.runtime import SessionServer, SessionSupervisor
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import blocking_adapter

pytestmark = pytest.mark.anyio


async def test_start_whereis_stop() -> None:
    store = InMemorySessionStore()
    async with SessionSupervisor() as sup:
        server = await sup.start_session(
            store=store, adapter=ScriptedAdapter(), session_opts={"agent_id": "a"}, max_concurrent_runs=2
        )
        assert isinstance(server, SessionServer)
        assert sup.whereis(server.session_id) is server
        assert server.status().max_concurrent_runs == 2
        assert (await server.execute_run("hi")).session_id == server.session_id
        assert sup.session_ids() == [server.session_id]
        await sup.stop_session(server.session_id)
        assert sup.whereis(server.session_id) is None
        with pytest.raises(AsmError) as info:
            await server.submit_run("after stop")
        assert info.value.code is ErrorCode.INVALID_OPERATION
        with pytest.raises(AsmError) as info:
            await sup.stop_session(server.session_id)
        assert info.value.code is ErrorCode.SESSION_NOT_FOUND


async def test_second_start_for_same_session_is_already_exists() -> None:
    store = InMemorySessionStore()
    session = await SessionManager(store, ScriptedAdapter()).start_session("a")
    async with SessionSupervisor() as sup:
        await sup.start_session(store=store, adapter=ScriptedAdapter(), session_id=session.id)
        with pytest.raises(AsmError) as info:
            await sup.start_session(store=store, adapter=ScriptedAdapter(), session_id=session.id)
        assert info.value.code is ErrorCode.ALREADY_EXISTS
        with pytest.raises(AsmError) as info:
            await sup.start_session(
                store=store,
                adapter=ScriptedAdapter(),
                session_opts={"agent_id": "b", "session_id": session.id},
            )
        assert info.value.code is ErrorCode.ALREADY_EXISTS
        assert sup.whereis("ses_unknown") is None


async def test_start_errors_propagate_and_leave_no_registration() -> None:
    async with SessionSupervisor() as sup:
        with pytest.raises(AsmError) as info:
            await sup.start_session(
                store=InMemorySessionStore(), adapter=ScriptedAdapter(), session_id="ses_missing"
            )
        assert info.value.code is ErrorCode.SESSION_NOT_FOUND
        with pytest.raises(AsmError) as info:
            await sup.start_session(store=InMemorySessionStore(), adapter=ScriptedAdapter())
        assert info.value.code is ErrorCode.VALIDATION_ERROR
        with pytest.raises(AsmError) as info:
            await sup.start_session(
                store=InMemorySessionStore(),
                adapter=ScriptedAdapter(),
                session_opts={"agent_id": "a"},
                bogus=1,
            )
        assert info.value.code is ErrorCode.VALIDATION_ERROR
        assert sup.session_ids() == []
        # The failed id can be started afterwards.
        store = InMemorySessionStore()
        session = await SessionManager(store, ScriptedAdapter()).start_session("a")
        with pytest.raises(AsmError):
            await sup.start_session(
                store=InMemorySessionStore(), adapter=ScriptedAdapter(), session_id=session.id
            )
        await sup.start_session(store=store, adapter=ScriptedAdapter(), session_id=session.id)


async def test_closing_supervisor_stops_all_servers_and_cancels_their_work() -> None:
    store = InMemorySessionStore()
    adapters = [blocking_adapter(), blocking_adapter()]
    runs: list[str] = []
    async with SessionSupervisor() as sup:
        for i, adapter in enumerate(adapters):
            server = await sup.start_session(store=store, adapter=adapter, session_opts={"agent_id": f"s{i}"})
            runs.append(await server.submit_run("work"))
        for adapter in adapters:
            await adapter.wait_for_calls(1)
    for run_id in runs:
        assert (await store.get_run(run_id)).status is RunStatus.CANCELLED
    with pytest.raises(AsmError) as info:
        await sup.start_session(store=store, adapter=ScriptedAdapter(), session_opts={"agent_id": "late"})
    assert info.value.code is ErrorCode.INVALID_OPERATION
