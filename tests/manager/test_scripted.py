"""ScriptedAdapter behaviour used by the rest of the suite."""

from __future__ import annotations

import anyio
import pytest

from agent_session_manager import (
    AsmError,
    Capability,
    ErrorCode,
    EventType,
    InMemorySessionStore,
    ProviderEvent,
    ProviderResult,
    Run,
    RunStatus,
    SessionManager,
)
from agent_session_manager.testing import Script, ScriptedAdapter, Step, text_script

from ._helpers import open_session, run_events

pytestmark = pytest.mark.anyio


def test_construction() -> None:
    with pytest.raises(AsmError) as info:
        ScriptedAdapter([])
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    adapter = ScriptedAdapter(name="x", capabilities=[Capability(name="c", type="tool")])
    assert adapter.name == "x"
    assert [c.name for c in adapter.capabilities()] == ["c"]
    assert [c.name for c in ScriptedAdapter().capabilities()] == ["chat", "tools"]
    adapter.validate_config()


async def test_scripts_in_order_last_repeats(store: InMemorySessionStore) -> None:
    scripts = [
        Script(result=ProviderResult(output={"content": "one"})),
        Script(result=ProviderResult(output={"content": "two"})),
    ]
    manager = SessionManager(store, ScriptedAdapter(scripts))
    sid = await open_session(manager)
    contents = []
    for _ in range(3):
        run = await manager.start_run(sid, "q")
        contents.append((await manager.execute_run(run.id)).output["content"])
    assert contents == ["one", "two", "two"]


async def test_script_for_and_default_result(store: InMemorySessionStore) -> None:
    def choose(run: Run) -> Script:
        return Script(steps=[Step("message_received", {"content": run.input["prompt"]})])

    adapter = ScriptedAdapter(script_for=choose)
    manager = SessionManager(store, adapter)
    result = await manager.run_once("echo me")
    assert result.output == {"content": "", "tool_calls": [], "stop_reason": "end_turn"}
    received = [e for e in result.events if e.type is EventType.MESSAGE_RECEIVED]
    assert received[0].data["content"] == "echo me"
    assert adapter.calls[0].outcome == "completed"
    assert adapter.in_flight == 0
    assert adapter.max_in_flight == 1


async def test_fail_after_stops_emitting(store: InMemorySessionStore) -> None:
    steps = [Step(EventType.MESSAGE_STREAMED, {"delta": str(i)}) for i in range(5)]
    error = AsmError(ErrorCode.PROVIDER_ERROR, "mid-stream")
    manager = SessionManager(store, ScriptedAdapter(Script(steps=steps, error=error, fail_after=2)))
    run = await manager.start_run(await open_session(manager), "q")
    with pytest.raises(AsmError):
        await manager.execute_run(run.id)
    streamed = [e for e in await run_events(manager, run) if e.type is EventType.MESSAGE_STREAMED]
    assert [e.data["delta"] for e in streamed] == ["0", "1"]


async def test_provider_event_steps_and_delays(store: InMemorySessionStore) -> None:
    script = Script(
        delay=0.001,
        steps=[
            ProviderEvent(type=EventType.TURN_COMPLETED, data={"n": 1}),
            Step(EventType.TURN_COMPLETED, {}, 0.001),
        ],
    )
    manager = SessionManager(store, ScriptedAdapter(script))
    result = await manager.run_once("q")
    assert [e.type for e in result.events].count(EventType.TURN_COMPLETED) == 2


async def test_cancel_during_delay(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script(steps=[Step(EventType.MESSAGE_STREAMED, {"delta": "x"}, delay=60)]))
    manager = SessionManager(store, adapter)
    run = await manager.start_run(await open_session(manager), "q")

    async def go() -> None:
        with pytest.raises(AsmError):
            await manager.execute_run(run.id)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(go)
            await adapter.wait_for_calls(1)
            await manager.cancel_run(run.id)
    assert (await manager.get_run(run.id)).status is RunStatus.CANCELLED
    assert adapter.calls[0].outcome == "cancelled"


async def test_cancel_before_execute_starts_and_unknown_cancel() -> None:
    adapter = ScriptedAdapter()
    await adapter.cancel("run_unknown")  # no-op apart from the record
    assert adapter.cancelled == ["run_unknown"]
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, adapter)
        run = await manager.start_run(await open_session(manager), "q")
        await adapter.cancel(run.id)  # e.g. a cancel that raced ahead of execute
        with pytest.raises(AsmError) as info:
            await manager.execute_run(run.id)
        assert info.value.code is ErrorCode.CANCELLED
        assert (await manager.get_run(run.id)).status is RunStatus.CANCELLED


async def test_release_one_and_all(store: InMemorySessionStore) -> None:
    adapter = ScriptedAdapter(Script(block=True))
    manager = SessionManager(store, adapter)
    sid = await open_session(manager)
    runs = [await manager.start_run(sid, f"q{i}") for i in range(3)]
    adapter.release(runs[0].id)  # released before it even blocks
    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(manager.execute_run, run.id)
        await adapter.wait_for_calls(3)
        adapter.release(runs[1].id)
        adapter.release()
    assert [(await manager.get_run(r.id)).status for r in runs] == [RunStatus.COMPLETED] * 3
    # released for good: later blocking runs pass straight through
    later = await manager.start_run(sid, "later")
    await manager.execute_run(later.id)
    assert adapter.in_flight == 0
    assert adapter.max_in_flight >= 2


async def test_wait_for_calls_with_several_waiters() -> None:
    adapter = ScriptedAdapter(Script())
    woke: list[int] = []

    async def waiter(n: int) -> None:
        await adapter.wait_for_calls(n)
        woke.append(n)

    async with InMemorySessionStore() as store:
        manager = SessionManager(store, adapter)
        sid = await open_session(manager)
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            tg.start_soon(waiter, 2)
            await anyio.lowlevel.checkpoint()
            for _ in range(2):
                await manager.execute_run((await manager.start_run(sid, "q")).id)
        await adapter.wait_for_calls(1)  # already satisfied: returns at once
    assert sorted(woke) == [1, 2]


def test_text_script_shape() -> None:
    script = text_script("", chunks=0)
    assert script.result is not None
    assert script.result.output["content"] == ""
    assert next(s.type for s in script.steps) is EventType.RUN_STARTED
