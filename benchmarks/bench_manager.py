"""Orchestration overhead of ``SessionManager.execute_run`` (DESIGN §4: <= 2x the store writes).

A zero-latency scripted provider emits 20 events per run. The baseline performs the same run's
store writes directly: the pending run, the running run, run_started + message_sent, the 20
events, the terminal event and the completed run. Both sides run on the same store in one
process, interleaved, and the median of the repetitions is reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from agent_session_manager import Event, EventType, Run, RunStatus, SessionManager
from agent_session_manager.ports import SessionStore
from agent_session_manager.stores import InMemorySessionStore, SQLiteSessionStore
from agent_session_manager.testing import Script, ScriptedAdapter, Step

EVENTS_PER_RUN = 20
_TEXT = "x" * 120


def _adapter() -> ScriptedAdapter:
    steps = [
        Step(EventType.MESSAGE_STREAMED, {"delta": _TEXT, "content": _TEXT}) for _ in range(EVENTS_PER_RUN)
    ]
    return ScriptedAdapter(Script(steps=steps))


async def _manager_runs(store: SessionStore, runs: int) -> float:
    manager = SessionManager(store, _adapter())
    session = await manager.start_session("bench")
    await manager.activate_session(session.id)
    t0 = time.perf_counter()
    for _ in range(runs):
        run = await manager.start_run(session.id, "go")
        await manager.execute_run(run.id)
    return runs / (time.perf_counter() - t0)


async def _raw_runs(store: SessionStore, runs: int) -> float:
    manager = SessionManager(store, _adapter())
    session = await manager.start_session("bench")
    sid = session.id
    t0 = time.perf_counter()
    for _ in range(runs):
        run = Run(session_id=sid, input={"prompt": "go"})
        await store.save_run(run)
        run = run.with_status(RunStatus.RUNNING)
        await store.save_run(run)
        await store.append_events(
            [
                Event(
                    type=EventType.RUN_STARTED, session_id=sid, run_id=run.id, data={"provider": "scripted"}
                ),
                Event(
                    type=EventType.MESSAGE_SENT,
                    session_id=sid,
                    run_id=run.id,
                    data={"role": "user", "content": "go"},
                ),
            ]
        )
        for _ in range(EVENTS_PER_RUN):
            await store.append_event(
                Event(
                    type=EventType.MESSAGE_STREAMED,
                    session_id=sid,
                    run_id=run.id,
                    data={"delta": _TEXT, "content": _TEXT},
                )
            )
        await store.append_event(Event(type=EventType.RUN_COMPLETED, session_id=sid, run_id=run.id, data={}))
        await store.save_run(run.with_status(RunStatus.COMPLETED, output={"content": ""}))
    return runs / (time.perf_counter() - t0)


async def _measure(make_store: Any, runs: int, reps: int) -> tuple[float, float]:
    managed: list[float] = []
    raw: list[float] = []
    for _ in range(reps):
        async with await make_store() as store:
            raw.append(await _raw_runs(store, runs))
        async with await make_store() as store:
            managed.append(await _manager_runs(store, runs))
    return statistics.median(managed), statistics.median(raw)


async def bench_manager(quick: bool) -> list[dict[str, Any]]:
    """Rows: runs/s through execute_run vs the same store writes alone, memory and SQLite."""
    runs = 200 if quick else 1000
    reps = 1 if quick else 5
    rows: list[dict[str, Any]] = []

    async def memory() -> SessionStore:
        return InMemorySessionStore()

    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))

        async def sqlite() -> SessionStore:
            return await SQLiteSessionStore.connect(Path(tmp) / f"m{next(counter)}.db")

        for label, factory in (("memory", memory), ("sqlite", sqlite)):
            managed, raw = await _measure(factory, runs if label == "memory" else runs // 2, reps)
            # Overhead = how many times longer a managed run takes than its writes alone.
            overhead = raw / managed
            rows.append(
                {
                    "name": f"manager ({label}): execute_run, 20 events",
                    "value": managed,
                    "unit": "runs/s",
                    "baseline": raw,
                    "baseline_name": f"same store writes alone ({label})",
                    "ratio": overhead,
                    "target": "<= 2.0x time of writes",
                    "ok": overhead <= 2.0,
                }
            )
    return rows


async def run(report: dict[str, Any], events: int) -> None:
    """Hook for ``benchmarks.run``."""
    report.setdefault("rows", []).extend(await bench_manager(quick=bool(report.get("quick"))))


if __name__ == "__main__":
    for row in anyio.run(bench_manager, False):
        print(
            f"{row['name']:<45} {row['value']:>10.0f} {row['unit']}  baseline {row['baseline']:.0f}  "
            f"time ratio {row['ratio']:.2f}x (target {row['target']})"
        )
