"""Store benchmarks: the library's stores against raw ``sqlite3`` baselines, in one process.

Every function returns plain numbers; ``run.py`` turns them into the report table.
Baselines use the same table definition, the same ~200-byte payloads and the same
``synchronous`` setting as the store, with one ``BEGIN IMMEDIATE``/``COMMIT`` per event.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from pathlib import Path

import anyio

from agent_session_manager.core import Event, EventType
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.stores._migrations import SQLITE_MIGRATIONS
from agent_session_manager.stores.sqlite import SQLiteSessionStore

INSERT_RAW = (
    "INSERT INTO events (id, session_id, sequence_number, run_id, type, ts_us, body) VALUES (?,?,?,?,?,?,?)"
)
PAYLOAD_TEXT = "x" * 150  # with the other fields, ~200 bytes of JSON per event


def make_events(session_id: str, n: int) -> list[Event]:
    return [
        Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"delta": PAYLOAD_TEXT, "i": i})
        for i in range(n)
    ]


def _fresh(path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


# -- raw sqlite3 baselines ---------------------------------------------------------------


def _raw_connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(_fresh(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    events_ddl = [s for s in SQLITE_MIGRATIONS[0].statements if "events" in s]
    for statement in events_ddl:
        conn.execute(statement)
    return conn


def raw_sequential(path: Path, n: int, synchronous: str) -> float:
    """Events/s of raw sqlite3 appends, one transaction per event."""
    conn = _raw_connect(path, synchronous)
    now = int(time.time() * 1e6)
    rows = [{"delta": PAYLOAD_TEXT, "i": i} for i in range(n)]
    sql = INSERT_RAW
    start = time.perf_counter()
    for i, data in enumerate(rows):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, (f"evt_{i}", "ses_raw", i + 1, None, "message_streamed", now, json.dumps(data)))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def raw_paged_read(path: Path, n: int, page: int) -> float:
    """Events/s reading ``n`` events back in pages with a raw ``SELECT`` (+ ``json.loads``)."""
    conn = _raw_connect(path, "NORMAL")
    now = int(time.time() * 1e6)
    conn.execute("BEGIN")
    conn.executemany(
        INSERT_RAW,
        [
            (f"evt_{i}", "ses_raw", i + 1, None, "message_streamed", now, json.dumps({"d": PAYLOAD_TEXT}))
            for i in range(n)
        ],
    )
    conn.execute("COMMIT")
    start = time.perf_counter()
    cursor, seen = 0, 0
    while True:
        rows = conn.execute(
            "SELECT sequence_number, body FROM events WHERE session_id = ? AND sequence_number > ? "
            "ORDER BY sequence_number LIMIT ?",
            ("ses_raw", cursor, page),
        ).fetchall()
        if not rows:
            break
        seen += len([json.loads(body) for _, body in rows])
        cursor = rows[-1][0]
    elapsed = time.perf_counter() - start
    conn.close()
    assert seen == n
    return n / elapsed


# -- the library's stores -------------------------------------------------------------------


async def memory_sequential(n: int) -> float:
    events = make_events("ses_mem", n)
    async with InMemorySessionStore() as store:
        start = time.perf_counter()
        for event in events:
            await store.append_event(event)
        return n / (time.perf_counter() - start)


async def sqlite_sequential(path: Path, n: int, synchronous: str) -> float:
    events = make_events("ses_seq", n)
    async with SQLiteSessionStore(_fresh(path), synchronous=synchronous) as store:  # type: ignore[arg-type]
        start = time.perf_counter()
        for event in events:
            await store.append_event(event)
        elapsed = time.perf_counter() - start
        assert await store.get_latest_sequence("ses_seq") == n
    return n / elapsed


async def sqlite_concurrent(path: Path, sessions: int, per_session: int, synchronous: str) -> float:
    """Events/s with ``sessions`` tasks each appending ``per_session`` events to its own session."""
    batches = [make_events(f"ses_c{i}", per_session) for i in range(sessions)]
    async with SQLiteSessionStore(_fresh(path), synchronous=synchronous) as store:  # type: ignore[arg-type]

        async def worker(events: list[Event]) -> None:
            for event in events:
                await store.append_event(event)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for events in batches:
                tg.start_soon(worker, events)
        elapsed = time.perf_counter() - start
        for i in (0, sessions - 1):
            assert await store.get_latest_sequence(f"ses_c{i}") == per_session
    return sessions * per_session / elapsed


async def sqlite_paged_read(path: Path, n: int, page: int) -> float:
    async with SQLiteSessionStore(_fresh(path)) as store:
        await store.append_events(make_events("ses_read", n))
        start = time.perf_counter()
        cursor, seen = 0, 0
        while True:
            got = await store.get_events("ses_read", after=cursor, limit=page)
            if not got:
                break
            seen += len(got)
            cursor = got[-1].sequence_number or 0
        elapsed = time.perf_counter() - start
    assert seen == n
    return n / elapsed


async def long_poll_latency(store_factory: object, samples: int) -> tuple[float, float]:
    """p50 and p99 (ms) from just before ``append_event`` to the long-poller's return."""
    async with store_factory() as store:  # type: ignore[operator]
        latencies: list[float] = []
        received = anyio.Event()
        sent_at = 0.0

        async def follower() -> None:
            nonlocal received
            cursor = 0
            while cursor < samples:
                got = await store.get_events("ses_lp", after=cursor, wait_timeout=5.0)
                latencies.append(time.perf_counter() - sent_at)
                cursor = got[-1].sequence_number
                received.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(follower)
            for event in make_events("ses_lp", samples):
                await anyio.sleep(0.002)  # let the follower block in its long-poll again
                sent_at = time.perf_counter()
                await store.append_event(event)
                await received.wait()
                received = anyio.Event()
    ms = sorted(x * 1000 for x in latencies)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))]
