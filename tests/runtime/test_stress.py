"""Property/stress test: 1,000 runs through a 4-slot server with random latency, failures, cancels."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, Run, RunStatus
from agent_session_manager.core.enums import TERMINAL_RUN_EVENTS
from agent_session_manager.ports import SessionStore
from agent_session_manager.runtime import SessionServer
from agent_session_manager.stores import InMemorySessionStore, PostgresSessionStore, SQLiteSessionStore
from agent_session_manager.testing import Script, ScriptedAdapter, Step, text_script

pytestmark = pytest.mark.anyio

RUNS = 1_000
SLOTS = 4


def random_script(rng: random.Random) -> Script:
    base = text_script(chunks=3)
    steps = [Step(s.type, s.data, rng.choice((0.0, 0.0, 0.001, 0.002))) for s in base.steps]  # type: ignore[union-attr]
    if rng.random() < 0.15:
        return Script(
            steps=steps,
            error=AsmError(ErrorCode.PROVIDER_ERROR, "random failure"),
            fail_after=rng.randrange(len(steps)),
        )
    return Script(steps=steps, result=base.result)


async def test_thousand_runs_random_latency_failures_and_cancels() -> None:
    await _stress(InMemorySessionStore(), RUNS)


async def test_stress_on_sqlite(tmp_path: Path) -> None:
    async with SQLiteSessionStore(tmp_path / "stress.db") as store:
        await _stress(store, 200)


@pytest.mark.postgres
async def test_stress_on_postgres(pg_url: str) -> None:
    async with await PostgresSessionStore.connect(pg_url) as store:
        await _stress(store, 200)


async def _stress(store: SessionStore, runs: int) -> None:
    rng = random.Random(20240601)
    scripts: dict[str, Script] = {}

    def script_for(run: Run) -> Script:
        return scripts.setdefault(run.id, random_script(rng))

    adapter = ScriptedAdapter(script_for=script_for)
    tasks_before = set(asyncio.all_tasks())
    outcomes: dict[str, str] = {}
    received: list[Event] = []

    async with SessionServer(
        store, adapter, session_opts={"agent_id": "stress"}, max_concurrent_runs=SLOTS, max_queued_runs=runs
    ) as server:
        async with anyio.create_task_group() as tg:
            subscribed = anyio.Event()
            done_submitting = anyio.Event()

            async def subscriber() -> None:
                async with server.subscribe(buffer_size=64) as sub:
                    subscribed.set()
                    await done_submitting.wait()
                    await server.drain(60)
                    last = await store.get_latest_sequence(server.session_id)
                    async for event in sub:
                        received.append(event)
                        if event.sequence_number == last:
                            break

            async def awaiter(run_id: str) -> None:
                try:
                    await server.await_run(run_id)
                    outcomes[run_id] = "completed"
                except AsmError as exc:
                    outcomes[run_id] = exc.code.value

            async def canceller(run_id: str, checkpoints: int, started: anyio.Event | None) -> None:
                if started is not None:
                    await started.wait()  # cancel while in flight
                for _ in range(checkpoints):
                    await anyio.lowlevel.checkpoint()
                await server.cancel_run(run_id)

            tg.start_soon(subscriber)
            await subscribed.wait()
            ids: list[str] = []
            for _ in range(runs):
                started = anyio.Event()

                def on_event(event: Event, started: anyio.Event = started) -> None:
                    if event.type is EventType.RUN_STARTED:
                        started.set()

                roll = rng.random()
                run_id = await server.submit_run("go", on_event=on_event)
                ids.append(run_id)
                tg.start_soon(awaiter, run_id)
                if roll < 0.05:
                    tg.start_soon(canceller, run_id, rng.randrange(0, 200), None)
                elif roll < 0.12:
                    tg.start_soon(canceller, run_id, rng.randrange(0, 4), started)
                if rng.random() < 0.3:
                    await anyio.lowlevel.checkpoint()
            done_submitting.set()
        status = server.status()
        assert status.in_flight_count == 0
        assert status.queued_count == 0
    await anyio.lowlevel.checkpoint()
    assert set(asyncio.all_tasks()) <= tasks_before | {asyncio.current_task()}  # no task left behind

    assert adapter.max_in_flight <= SLOTS
    assert adapter.max_in_flight == SLOTS  # the slots were really used
    assert set(outcomes) == set(ids)  # every awaiter answered
    log = await store.get_events(server.session_id)
    assert [e.sequence_number for e in log] == list(range(1, len(log) + 1))
    assert [e.id for e in received] == [e.id for e in log]  # exactly once, in order
    terminal_by_run: dict[str, list[EventType]] = {}
    for event in log:
        if event.type in TERMINAL_RUN_EVENTS and event.run_id:
            terminal_by_run.setdefault(event.run_id, []).append(event.type)
    by_status = {"completed": RunStatus.COMPLETED, "cancelled": RunStatus.CANCELLED}
    for run_id in ids:
        run = await store.get_run(run_id)
        assert run.status.is_terminal
        assert len(terminal_by_run.get(run_id, [])) == 1, (run_id, terminal_by_run.get(run_id))
        assert run.status is by_status.get(outcomes[run_id], RunStatus.FAILED)
    counts = {s: sum(1 for v in outcomes.values() if v == s) for s in set(outcomes.values())}
    assert counts.get("completed", 0) > runs // 2
    assert counts.get("cancelled", 0) > 0
    assert counts.get("provider_error", 0) > 0
    called = {c.run_id for c in adapter.calls}
    never_started = [r for r in ids if r not in called]
    cancelled_in_flight = [r for r in ids if r in called and outcomes[r] == "cancelled"]
    assert len(cancelled_in_flight) > runs // 100
    assert all(outcomes[r] == "cancelled" for r in never_started)
