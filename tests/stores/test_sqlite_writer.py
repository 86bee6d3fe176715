"""Group commit isolation: one failing write in a batch fails only its own caller."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agent_session_manager.core import AsmError, ErrorCode
from agent_session_manager.stores._sqlite_writer import Job, Outcome, Writer

pytestmark = pytest.mark.anyio


async def test_failing_job_in_a_batch_fails_alone(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO t VALUES (1)")
    loop = asyncio.get_running_loop()
    delivered: list[list[Outcome]] = []
    done = asyncio.Event()

    def complete(outcomes: list[Outcome]) -> None:
        delivered.append(outcomes)
        done.set()

    writer = Writer(conn, path=str(path), busy_timeout=5, loop=loop, complete=complete)

    def insert(k: int) -> Job:
        return Job(lambda c: c.execute("INSERT INTO t VALUES (?)", (k,)).rowcount, loop.create_future(), ())

    jobs = [insert(2), insert(1), insert(3)]  # 1 violates the primary key
    writer.start()
    writer.submit(jobs)
    await done.wait()
    writer.stop()
    await asyncio.to_thread(writer.join)
    (outcomes,) = delivered
    assert [ok for _, ok, _ in outcomes] == [True, False, True]
    error = outcomes[1][2]
    assert isinstance(error, AsmError)
    assert error.code is ErrorCode.STORAGE_WRITE_FAILED
    check = sqlite3.connect(path)
    assert [k for (k,) in check.execute("SELECT k FROM t ORDER BY k")] == [1, 2, 3]
    check.close()
