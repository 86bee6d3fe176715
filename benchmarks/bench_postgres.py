"""PostgreSQL benchmarks: PostgresSessionStore against the raw psycopg driver, in one run.

Starts a throwaway, durable (fsync on) server with ``testing.pgserver`` and measures:

* sequential appends to one session: raw psycopg, one ``INSERT`` autocommitted per event,
  against ``PostgresSessionStore.append_event`` (interleaved repetitions, medians);
* 100 sessions x 50 appends, concurrently, through the store (group commit), against the
  raw one-commit-per-event rate (and, for reference, raw inserts from 10 pooled connections);
* append -> long-poll latency across processes: a child process appends, this process
  follows with ``get_events(wait_timeout=...)`` (woken by LISTEN/NOTIFY).

Use ``await bench_postgres(events, quick)`` (rows ``{"name", "value", "unit", "baseline",
"ratio", "target"}``) or ``python benchmarks/bench_postgres.py [--quick]``; ``benchmarks.run``
calls :func:`run`.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool
from pydantic_core import to_json

from agent_session_manager.core import Event, EventType
from agent_session_manager.stores.postgres import PostgresSessionStore
from agent_session_manager.testing.pgserver import PostgresServer

PAYLOAD = {"text": "x" * 150, "role": "assistant"}  # ~200-byte events, as in DESIGN §4
# The raw baseline writes rows of the store's ``events`` shape (same columns, same keys) over
# the same kind of connection (TCP, autocommit) to the same durable server.
RAW_TABLE = """
CREATE TABLE IF NOT EXISTS raw_events (
    id text PRIMARY KEY, session_id text NOT NULL, seq bigint NOT NULL, type text NOT NULL,
    run_id text, ts timestamptz NOT NULL, data jsonb NOT NULL, metadata jsonb NOT NULL,
    provider text, UNIQUE (session_id, seq)
)"""
CHILD = str(Path(__file__).resolve())
RAW_INSERT = "INSERT INTO raw_events VALUES (%s, %s, %s, %s, NULL, %s, %s::jsonb, '{}', NULL)"


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


def _event(session_id: str) -> Event:
    return Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data=PAYLOAD)


async def raw_sequential(url: str, n: int) -> float:
    """Events/s of raw psycopg: one autocommitted INSERT per event, one session."""
    session = uuid.uuid4().hex
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(RAW_TABLE)
        t0 = time.perf_counter()
        for i in range(n):
            await conn.execute(
                RAW_INSERT,
                (
                    uuid.uuid4().hex,
                    session,
                    i + 1,
                    "message_streamed",
                    datetime.now(UTC),
                    to_json(PAYLOAD).decode(),
                ),
            )
        return n / (time.perf_counter() - t0)


async def store_sequential(store: PostgresSessionStore, n: int) -> float:
    """Events/s of ``append_event`` awaited one after another, one session."""
    session = f"ses_{uuid.uuid4().hex}"
    t0 = time.perf_counter()
    for _ in range(n):
        await store.append_event(_event(session))
    return n / (time.perf_counter() - t0)


async def store_concurrent(store: PostgresSessionStore, sessions: int, per_session: int) -> float:
    """Events/s of ``sessions`` tasks each appending ``per_session`` events to its own session."""

    async def worker(session: str) -> None:
        for _ in range(per_session):
            await store.append_event(_event(session))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(sessions):
            tg.start_soon(worker, f"ses_{uuid.uuid4().hex}")
    return sessions * per_session / (time.perf_counter() - t0)


async def raw_concurrent(url: str, sessions: int, per_session: int, connections: int = 10) -> float:
    """Events/s of raw one-commit-per-event inserts from ``sessions`` tasks over a pool."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        url, min_size=connections, max_size=connections, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    try:

        async def worker(session: str) -> None:
            for i in range(per_session):
                async with pool.connection() as conn:
                    await conn.execute(
                        RAW_INSERT,
                        (
                            uuid.uuid4().hex,
                            session,
                            i + 1,
                            "message_streamed",
                            datetime.now(UTC),
                            to_json(PAYLOAD).decode(),
                        ),
                    )

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(sessions):
                tg.start_soon(worker, uuid.uuid4().hex)
        return sessions * per_session / (time.perf_counter() - t0)
    finally:
        await pool.close()


async def follow_latency(url: str, count: int) -> list[float]:
    """Milliseconds from a child process's append call to this process's long-poll return."""
    session = f"ses_{uuid.uuid4().hex}"
    latencies: list[float] = []
    async with await PostgresSessionStore.connect(url) as store:
        await store.get_events(session, wait_timeout=0.01)  # start listening before the child appends
        cmd = [sys.executable, CHILD, "--append", url, session, str(count)]
        async with await anyio.open_process(cmd) as proc:
            cursor = 0
            with anyio.fail_after(60 + count * 0.1):
                while cursor < count:
                    got = await store.get_events(session, after=cursor, wait_timeout=10)
                    now = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux
                    latencies.extend((now - e.data["t"]) * 1000 for e in got)
                    cursor = got[-1].sequence_number or cursor if got else cursor
            await proc.wait()
    return latencies


async def _child_append(url: str, session: str, count: int) -> None:
    async with await PostgresSessionStore.connect(url) as store:
        for _ in range(count):
            await anyio.sleep(0.005)  # paced: every event is its own wake-up
            await store.append_event(
                Event(
                    type=EventType.MESSAGE_STREAMED,
                    session_id=session,
                    data={**PAYLOAD, "t": time.monotonic()},
                )
            )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench_postgres(events: int = 5000, quick: bool = False) -> list[dict[str, Any]]:
    """Run every Postgres benchmark on a fresh durable server; returns the result rows."""
    if not PostgresServer.available():
        raise RuntimeError("PostgreSQL server binaries not found (set ASM_PG_BIN)")
    reps = 1 if quick else 5
    n = min(events, 1000) if quick else events
    sessions, per_session = (20, 25) if quick else (100, 50)
    server = PostgresServer(durable=True)
    await anyio.to_thread.run_sync(server.start)
    try:
        url = server.url
        async with await PostgresSessionStore.connect(url, max_size=4) as store:
            await store_sequential(store, 200)  # warm-up: prepared statements, writer connection
            await raw_sequential(url, 200)
            raws, stores = [], []
            for _ in range(reps):  # interleaved, so machine noise hits both alike
                raws.append(await raw_sequential(url, n))
                stores.append(await store_sequential(store, n))
            raw, seq = statistics.median(raws), statistics.median(stores)
            conc = statistics.median(
                [await store_concurrent(store, sessions, per_session) for _ in range(reps)]
            )
        raw_conc = await raw_concurrent(url, sessions, per_session)
        latencies = await follow_latency(url, 100 if quick else 400)
    finally:
        await anyio.to_thread.run_sync(server.stop)
    shape = f"{sessions}x{per_session}"
    return [
        _row("postgres raw psycopg: sequential, commit/event", raw, "ev/s"),
        _row("postgres store: sequential append", seq, "ev/s", raw, ">= 0.8x raw"),
        _row(f"postgres raw psycopg: {shape} concurrent, 10 conns", raw_conc, "ev/s", raw),
        _row(f"postgres store: {shape} concurrent sessions", conc, "ev/s", raw, ">= 3x raw commit/event"),
        _row("postgres follow across processes p50", _pct(latencies, 0.5), "ms"),
        _row("postgres follow across processes p99", _pct(latencies, 0.99), "ms", None, "<= 25 ms"),
    ]


_OK = {
    "postgres store: sequential append": lambda r: r["ratio"] >= 0.8,
    "postgres follow across processes p99": lambda r: r["value"] <= 25,
}


async def run(report: dict[str, Any], events: int) -> None:
    """Hook for ``benchmarks.run``: append this module's rows to ``report["rows"]``."""
    for row in await bench_postgres(events, bool(report.get("quick"))):
        ok = None
        if row["name"] in _OK:
            ok = bool(_OK[row["name"]](row))
        elif "concurrent sessions" in row["name"]:
            ok = row["ratio"] >= 3
        report["rows"].append(
            {**row, "baseline_name": "raw psycopg, commit/event" if row["baseline"] else None, "ok": ok}
        )


def main(argv: list[str]) -> None:
    if argv[:1] == ["--append"]:
        anyio.run(_child_append, argv[1], argv[2], int(argv[3]))
        return
    quick = "--quick" in argv
    for row in anyio.run(bench_postgres, 5000, quick):
        ratio = f"  {row['ratio']:.2f}x" if row["ratio"] else ""
        target = f"  (target {row['target']})" if row["target"] else ""
        print(f"{row['name']:<55} {row['value']:>10.1f} {row['unit']}{ratio}{target}")


if __name__ == "__main__":
    main(sys.argv[1:])
