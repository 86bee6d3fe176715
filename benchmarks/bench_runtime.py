"""SessionServer benchmarks: throughput overhead vs bare SessionManager, subscriber latency.

Run alone::

    .venv/bin/python -m benchmarks.bench_runtime [--quick]

Or from the suite: ``async def bench_runtime(quick) -> list[dict]`` returns rows
``{"name", "value", "unit", "baseline", "ratio", "target"}``; ``async def run(report, events)``
appends them to a ``benchmarks.run`` report.

Measurements (in-memory store, zero-latency ScriptedAdapter, ``text_script`` = 8 events/run):

* ``runtime.server_runs_per_s``: runs/s through ``SessionServer.execute_run`` (submit + await,
  one slot) against the same runs through bare ``SessionManager.start_run`` + ``execute_run``
  (the baseline). Target: ratio >= 0.8 (server overhead <= 25%). Medians of interleaved reps.
* ``runtime.server_runs_per_s_4_slots``: 4 slots, all runs submitted then drained.
* ``runtime.subscriber_latency_p50/p99``: an event appended to the store → delivered to a
  live ``server.subscribe()`` iterator, one event at a time. Target (DESIGN §4): p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import anyio

from agent_session_manager.core import Event, EventType
from agent_session_manager.manager import SessionManager
from agent_session_manager.runtime import SessionServer
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import ScriptedAdapter


def _row(
    name: str, value: float, unit: str, baseline: float | None = None, target: str | None = None
) -> dict[str, Any]:
    ratio = value / baseline if baseline else None
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
    }


async def _bare_manager(runs: int) -> float:
    store = InMemorySessionStore()
    manager = SessionManager(store, ScriptedAdapter())
    session = await manager.start_session("bench")
    await manager.activate_session(session.id)
    start = time.perf_counter()
    for i in range(runs):
        run = await manager.start_run(session.id, f"task {i}")
        await manager.execute_run(run.id)
    return runs / (time.perf_counter() - start)


async def _server(runs: int, slots: int = 1) -> float:
    store = InMemorySessionStore()
    async with SessionServer(
        store,
        ScriptedAdapter(),
        session_opts={"agent_id": "bench"},
        max_concurrent_runs=slots,
        max_queued_runs=runs,
    ) as server:
        start = time.perf_counter()
        if slots == 1:
            for i in range(runs):
                await server.execute_run(f"task {i}")
        else:
            for i in range(runs):
                await server.submit_run(f"task {i}")
            await server.drain()
        elapsed = time.perf_counter() - start
    return runs / elapsed


async def _subscriber_latency(samples: int) -> list[float]:
    store = InMemorySessionStore()
    latencies: list[float] = []
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "lat"}) as server:
        cursor = await store.get_latest_sequence(server.session_id)
        async with server.subscribe(from_sequence=cursor) as sub:
            for i in range(samples):
                sent = time.perf_counter()
                await store.append_event(
                    Event(
                        type=EventType.MESSAGE_STREAMED, session_id=server.session_id, data={"delta": str(i)}
                    )
                )
                server.nudge_subscribers()
                await sub.receive()
                latencies.append((time.perf_counter() - sent) * 1000)
    return latencies


class _CountingStore(InMemorySessionStore):
    """Counts the events ``get_events`` returns (what a continuation reads)."""

    events_read = 0

    async def get_events(self, session_id: str, **kwargs: Any) -> list[Event]:  # type: ignore[override]
        found = await super().get_events(session_id, **kwargs)
        self.events_read += len(found)
        return found


async def _continuation_reads(history: int) -> tuple[int, int]:
    """Events read by a replay-continuation run after ``history`` events, and the previous run's events.

    DESIGN §4: continuation on a session with 10,000 events reads only the events new since the
    last run (the SessionServer's transcript cache), not the whole log.
    """
    store = _CountingStore()
    async with SessionServer(
        store,
        ScriptedAdapter(),
        session_opts={"agent_id": "cont"},
        default_execute_opts={"continuation": "replay"},
    ) as server:
        await server.execute_run("first")
        sid = server.session_id
        await store.append_events(
            [
                Event(type=EventType.MESSAGE_STREAMED, session_id=sid, data={"delta": "x"})
                for _ in range(history)
            ]
        )
        warm_from = await store.get_latest_sequence(sid)
        await server.execute_run("warm the cache")  # reads the appended history once
        before_seq = await store.get_latest_sequence(sid)
        store.events_read = 0
        await server.execute_run("measured")
        return store.events_read, before_seq - warm_from


async def bench_runtime(quick: bool = False) -> list[dict[str, Any]]:
    """Measure and return the runtime rows (see the module docstring)."""
    runs = 300 if quick else 2000
    reps = 3 if quick else 5
    bare: list[float] = []
    served: list[float] = []
    await _bare_manager(50)  # warm-up
    await _server(50)
    for _ in range(reps):
        bare.append(await _bare_manager(runs))
        served.append(await _server(runs))
    multi = [await _server(runs, slots=4) for _ in range(reps)]
    bare_median = statistics.median(bare)
    latencies = await _subscriber_latency(500 if quick else 3000)
    cuts = statistics.quantiles(latencies, n=100)
    read, previous_run_events = await _continuation_reads(10_000)
    return [
        _row(
            "runtime.continuation_events_read_at_10k",
            read,
            "events",
            target=f"only new events (the previous run wrote {previous_run_events})",
        ),
        _row("runtime.manager_runs_per_s", bare_median, "runs/s"),
        _row(
            "runtime.server_runs_per_s",
            statistics.median(served),
            "runs/s",
            bare_median,
            "ratio >= 0.8 (overhead <= 25%)",
        ),
        _row("runtime.server_runs_per_s_4_slots", statistics.median(multi), "runs/s", bare_median),
        _row("runtime.subscriber_latency_p50", cuts[49], "ms"),
        _row("runtime.subscriber_latency_p99", cuts[98], "ms", target="<= 5 ms"),
    ]


async def run(report: dict[str, Any], events: int) -> None:
    """Hook for ``benchmarks.run``: append this module's rows to ``report["rows"]``."""
    checks = {
        "runtime.server_runs_per_s": lambda r: r["ratio"] >= 0.8,
        "runtime.subscriber_latency_p99": lambda r: r["value"] <= 5.0,
        "runtime.continuation_events_read_at_10k": lambda r: r["value"] <= 100,
    }
    for row in await bench_runtime(quick=bool(report.get("quick"))):
        check = checks.get(row["name"])
        baseline_name = "runtime.manager_runs_per_s" if row["baseline"] else None
        report.setdefault("rows", []).append(
            {**row, "baseline_name": baseline_name, "ok": check(row) if check else None}
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = anyio.run(bench_runtime, args.quick)
    for row in rows:
        ratio = f"  ratio {row['ratio']:.2f}" if row["ratio"] is not None else ""
        target = f"  (target {row['target']})" if row["target"] else ""
        print(f"{row['name']:<40} {row['value']:>12.2f} {row['unit']}{ratio}{target}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
