"""get_session_events and stream_session_events."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_session_manager import (
    AsmError,
    ErrorCode,
    Event,
    EventType,
    InMemorySessionStore,
    SessionManager,
)
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import open_session

pytestmark = pytest.mark.anyio


async def _session_with_two_runs(manager: SessionManager) -> tuple[str, list[str]]:
    sid = await open_session(manager)
    runs = []
    for prompt in ("a", "b"):
        run = await manager.start_run(sid, prompt)
        await manager.execute_run(run.id)
        runs.append(run.id)
    return sid, runs


async def test_get_session_events_filters(manager: SessionManager) -> None:
    sid, (_r1, r2) = await _session_with_two_runs(manager)
    everything = await manager.get_session_events(sid)
    assert [e.sequence_number for e in everything] == list(range(1, len(everything) + 1))
    assert [e.sequence_number for e in await manager.get_session_events(sid, after=3, before=6)] == [4, 5]
    assert len(await manager.get_session_events(sid, limit=4)) == 4
    by_run = await manager.get_session_events(sid, run_id=r2)
    assert by_run
    assert all(e.run_id == r2 for e in by_run)
    completed = await manager.get_session_events(sid, types=[EventType.RUN_COMPLETED, "run_started"])
    assert [e.type for e in completed] == [EventType.RUN_STARTED, EventType.RUN_COMPLETED] * 2
    since = await manager.get_session_events(sid, since=by_run[0].timestamp)
    assert by_run[0] in since
    assert await manager.get_session_events("ses_unknown") == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"after": -1}, ErrorCode.VALIDATION_ERROR),
        ({"limit": 0}, ErrorCode.VALIDATION_ERROR),
        ({"types": ["nope"]}, None),
    ],
)
async def test_get_session_events_validation(
    manager: SessionManager, kwargs: dict[str, Any], code: ErrorCode | None
) -> None:
    sid = await open_session(manager)
    with pytest.raises(AsmError) as info:
        await manager.get_session_events(sid, **kwargs)
    if code is not None:
        assert info.value.code is code


async def test_stream_without_follow_stops_at_end(manager: SessionManager) -> None:
    sid, _ = await _session_with_two_runs(manager)
    everything = await manager.get_session_events(sid)
    streamed = [e async for e in manager.stream_session_events(sid, follow=False, limit=3)]
    assert streamed == everything
    tail = [e async for e in manager.stream_session_events(sid, after=5, follow=False)]
    assert tail == everything[5:]
    only = [
        e async for e in manager.stream_session_events(sid, follow=False, types=["run_completed"], limit=1)
    ]
    assert [e.type for e in only] == [EventType.RUN_COMPLETED] * 2


async def test_stream_follow_sees_concurrent_appends_exactly_once(
    manager: SessionManager, store: InMemorySessionStore
) -> None:
    sid = await open_session(manager)  # 2 events already
    writers, per_writer = 5, 40
    total = 2 + writers * per_writer
    received: list[Event] = []

    async def writer(n: int) -> None:
        for i in range(per_writer):
            await store.append_event(
                Event(type=EventType.ERROR_OCCURRED, session_id=sid, data={"w": n, "i": i})
            )
            if i % 3 == 0:
                await anyio.lowlevel.checkpoint()

    async def reader() -> None:
        async for event in manager.stream_session_events(sid, limit=7, wait_timeout=1.0):
            received.append(event)
            if len(received) == total:
                return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            for n in range(writers):
                tg.start_soon(writer, n)
    assert [e.sequence_number for e in received] == list(range(1, total + 1))
    assert received == await manager.get_session_events(sid)


async def test_stream_follow_waits_for_a_run(manager: SessionManager) -> None:
    sid = await open_session(manager)
    got: list[Event] = []

    async def reader() -> None:
        async for event in manager.stream_session_events(sid, after=2, run_id=None, types=["run_completed"]):
            got.append(event)
            return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.lowlevel.checkpoint()
            run = await manager.start_run(sid, "x")
            await manager.execute_run(run.id)
    assert got[0].type is EventType.RUN_COMPLETED
    assert got[0].run_id == run.id


class _EmptyPollCounter(InMemorySessionStore):
    """Signals once ``wanted`` long-polls have come back empty."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.empty_polls = 0
        self.wanted = wanted
        self.enough = anyio.Event()

    async def get_events(self, session_id: str, **kwargs: Any) -> list[Event]:  # type: ignore[override]
        found = await super().get_events(session_id, **kwargs)
        if not found and kwargs.get("wait_timeout"):
            self.empty_polls += 1
            if self.empty_polls >= self.wanted:
                self.enough.set()
        return found


async def test_stream_follow_keeps_waiting_across_empty_polls() -> None:
    store = _EmptyPollCounter(wanted=3)
    manager = SessionManager(store, ScriptedAdapter())
    sid = await open_session(manager)
    got: list[Event] = []

    async def reader() -> None:
        async for event in manager.stream_session_events(sid, after=2, wait_timeout=0.01):
            got.append(event)
            return

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await store.enough.wait()  # several long-polls came back empty first
            await manager.pause_session(sid)
    assert store.empty_polls >= 3
    assert got[0].type is EventType.SESSION_PAUSED
    assert got[0].sequence_number == 3


@pytest.mark.parametrize("kwargs", [{"after": -1}, {"limit": 0}, {"after": 1.5}])
async def test_stream_cursor_strictness(manager: SessionManager, kwargs: dict[str, Any]) -> None:
    sid = await open_session(manager)
    with pytest.raises(AsmError) as info:
        async for _ in manager.stream_session_events(sid, follow=False, **kwargs):
            pass
    assert info.value.code is ErrorCode.VALIDATION_ERROR
