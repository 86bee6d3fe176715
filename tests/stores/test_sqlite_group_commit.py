"""The SQLite group-commit fast path: sequence numbers computed once per session per batch
(with a cache validated by ``PRAGMA data_version``), one ``executemany`` per batch, and the
fall-back to per-job savepoints for duplicates and failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType
from agent_session_manager.stores._sqlite_writer import EventRow, Job, Outcome, Writer
from agent_session_manager.stores.sqlite import SQLiteSessionStore, _event_row

pytestmark = pytest.mark.anyio


def row(session_id: str, i: int = 0) -> EventRow:
    return _event_row(Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"i": i}))


def append(*rows: EventRow) -> Job:
    return Job(None, None, tuple(dict.fromkeys(r[1] for r in rows)), rows)


class Harness:
    """A Writer over a store-created file, driven synchronously (no thread), plus a second
    connection standing for another process."""

    def __init__(self, path: Path, writer: Writer, other: sqlite3.Connection) -> None:
        self.path, self.writer, self.other = path, writer, other

    def run(self, *jobs: Job) -> list[Outcome]:
        with self.writer.lock:
            outcomes = self.writer.run_batch(list(jobs), wait=True)
        assert outcomes is not None
        return outcomes

    def stored(self, session_id: str) -> list[tuple[int, str]]:
        return list(
            self.other.execute(
                "SELECT sequence_number, id FROM events WHERE session_id = ? ORDER BY sequence_number",
                (session_id,),
            )
        )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    path = tmp_path / "g.db"
    async with SQLiteSessionStore(path):
        pass  # creates the schema
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(path, isolation_level=None)
    loop = asyncio.get_running_loop()
    writer = Writer(conn, path=str(path), busy_timeout=5, loop=loop, complete=lambda _: None)
    try:
        yield Harness(path, writer, other)
    finally:
        conn.close()
        other.close()


def values(outcomes: list[Outcome]) -> list[Any]:
    assert all(ok for _, ok, _ in outcomes), outcomes
    return [value for _, _, value in outcomes]


async def test_batch_spanning_sessions_numbers_each_session_from_its_committed_max(harness: Harness) -> None:
    harness.run(append(row("ses_a"), row("ses_a")))  # ses_a: 1, 2
    outcomes = harness.run(
        append(row("ses_a", 1)),
        append(row("ses_b", 1), row("ses_b", 2), row("ses_a", 2)),
        append(row("ses_c", 1)),
        append(row("ses_b", 3)),
    )
    assert values(outcomes) == [[3], [1, 2, 4], [1], [3]]
    assert [s for s, _ in harness.stored("ses_a")] == [1, 2, 3, 4]
    assert [s for s, _ in harness.stored("ses_b")] == [1, 2, 3]
    # The next batch continues from the numbers just committed.
    assert values(harness.run(append(row("ses_a")), append(row("ses_b")))) == [[5], [4]]


async def test_batch_mixing_stored_duplicate_and_new_ids(harness: Harness) -> None:
    old = row("ses_a", 0)
    (first,) = values(harness.run(append(old)))
    assert first == [1]
    new1, new2, other_session = row("ses_a", 1), row("ses_a", 2), row("ses_b", 1)
    outcomes = harness.run(
        append(new1),
        append(old),  # a retry of an event committed earlier
        append(new2, new1),  # new2 is new, new1 repeats a row of this same batch
        append(other_session),
    )
    stored_body = harness.other.execute("SELECT body FROM events WHERE id = ?", (old[0],)).fetchone()[0]
    assert values(outcomes) == [[2], [(1, stored_body)], [3, (2, new1[5])], [1]]
    assert harness.stored("ses_a") == [(1, old[0]), (2, new1[0]), (3, new2[0])]  # gapless, no copies
    assert values(harness.run(append(row("ses_a")))) == [[4]]


async def test_failing_job_in_a_batch_fails_alone_and_numbering_stays_gapless(harness: Harness) -> None:
    harness.run(append(row("ses_a")))

    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO events (id) VALUES ('broken')")  # violates NOT NULL

    outcomes = harness.run(
        append(row("ses_a", 1)), Job(boom, None, ()), append(row("ses_a", 2), row("ses_b"))
    )
    assert [ok for _, ok, _ in outcomes] == [True, False, True]
    error = outcomes[1][2]
    assert isinstance(error, AsmError)
    assert error.code is ErrorCode.STORAGE_WRITE_FAILED
    assert outcomes[0][2] == [2]
    assert outcomes[2][2] == [3, 1]
    assert values(harness.run(append(row("ses_a")), append(row("ses_b")))) == [[4], [2]]
    assert [s for s, _ in harness.stored("ses_a")] == [1, 2, 3, 4]


async def test_lone_append_job_that_fails_reports_its_error(harness: Harness) -> None:
    bad: EventRow = ("evt_x", "ses_a", None, "message_streamed", 0, None)  # type: ignore[assignment]
    for outcomes in (harness.run(append(bad)), harness.run(append(row("ses_a")), append(bad))):
        assert [ok for _, ok, _ in outcomes][-1] is False
        assert isinstance(outcomes[-1][2], AsmError)
    assert [s for s, _ in harness.stored("ses_a")] == [1]


@pytest.mark.parametrize("change", ["delete", "append"])
async def test_writes_by_another_connection_invalidate_the_cached_numbers(
    harness: Harness, change: str
) -> None:
    harness.run(append(row("ses_a"), row("ses_a")), append(row("ses_b")))  # cached: a=2, b=1
    # Another process changes ses_a behind the writer's back.
    if change == "delete":
        harness.other.execute("DELETE FROM events WHERE session_id = 'ses_a'")
        expected = [1, 2]
    else:
        harness.other.execute(
            "INSERT INTO events (id, session_id, sequence_number, type, ts_us, body) "
            "VALUES ('evt_other', 'ses_a', 3, 'message_streamed', 0, '{}')"
        )
        expected = [4, 5]
    outcomes = harness.run(append(row("ses_a"), row("ses_a")), append(row("ses_b")))
    assert values(outcomes) == [expected, [2]]


@pytest.mark.parametrize("where", ["before", "between"])
async def test_delete_job_in_a_batch_resets_its_session(harness: Harness, where: str) -> None:
    harness.run(append(row("ses_a"), row("ses_a"), row("ses_a")))

    def delete(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM events WHERE session_id = 'ses_a'")

    delete_job = Job(delete, None, ("ses_a",))
    if where == "before":
        outcomes = harness.run(delete_job, append(row("ses_a"), row("ses_a")))
        assert values(outcomes)[1] == [1, 2]
    else:
        outcomes = harness.run(append(row("ses_a")), delete_job, append(row("ses_a")))
        assert values(outcomes)[0] == [4]
        assert values(outcomes)[2] == [1]
    # The cache must not remember the numbers from before the delete.
    assert values(harness.run(append(row("ses_a")), append(row("ses_b")))) == [
        [len(harness.stored("ses_a"))],
        [1],
    ]


async def test_checkpoint_requests_do_not_make_the_writer_busy(harness: Harness) -> None:
    assert harness.writer.idle()
    harness.writer.submit([])  # a wake-up only (the thread is not even running)
    assert harness.writer.idle()
    harness.writer.submit([append(row("ses_a"))])
    assert not harness.writer.idle()


@pytest.mark.parametrize(
    ("synchronous", "inline"), [("NORMAL", None), ("FULL", None), ("NORMAL", False), ("FULL", True)]
)
async def test_store_concurrent_appends_mix_retries_and_new_events(
    tmp_path: Path, synchronous: str, inline: bool | None
) -> None:
    make: Callable[[str, int], Event] = lambda s, i: Event(  # noqa: E731
        type=EventType.MESSAGE_STREAMED, session_id=s, data={"i": i}
    )
    store = SQLiteSessionStore(tmp_path / "s.db", synchronous=synchronous, inline_commits=inline)  # type: ignore[arg-type]
    async with store:
        first = [make(f"ses_{k}", 0) for k in range(10)]
        stored_first = [await store.append_event(e) for e in first]
        results: dict[str, list[Event]] = {}

        async def worker(k: int) -> None:
            session = f"ses_{k}"
            got = [await store.append_event(first[k])]  # retry of a stored event
            for i in range(1, 6):
                got.append(await store.append_event(make(session, i)))
            got += await store.append_events([first[k], make(session, 6)])
            results[session] = got

        async with anyio.create_task_group() as tg:
            for k in range(10):
                tg.start_soon(worker, k)
        for k in range(10):
            got = results[f"ses_{k}"]
            assert got[0] == stored_first[k]
            assert [e.sequence_number for e in got] == [1, 2, 3, 4, 5, 6, 1, 7]
            assert [e.data["i"] for e in got] == [0, 1, 2, 3, 4, 5, 0, 6]
            assert [e.sequence_number for e in await store.get_events(f"ses_{k}")] == list(range(1, 8))


async def test_append_one_numbers_returns_duplicates_and_yields_to_a_locked_database(
    harness: Harness,
) -> None:
    writer = harness.writer
    first, second = row("ses_a", 1), row("ses_a", 2)
    with writer.lock:
        assert writer.append_one(first) == 1
        assert writer.append_one(second) == 2
        assert writer.append_one(first) == (1, first[5])  # an idempotent retry returns the stored event
        harness.other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            assert writer.append_one(row("ses_a", 3)) is None
            assert not writer.conn.in_transaction
        finally:
            harness.other.execute("ROLLBACK")
    assert harness.stored("ses_a") == [(1, first[0]), (2, second[0])]
    # The next group commit continues the numbering (from the cache the lone appends kept).
    assert values(harness.run(append(row("ses_a", 4), row("ses_a", 5)))) == [[3, 4]]


async def test_append_one_failure_raises_rolls_back_and_the_next_append_continues(harness: Harness) -> None:
    writer = harness.writer
    bad = (*row("ses_a")[:3], None, *row("ses_a")[4:])  # type is NOT NULL
    with writer.lock:
        assert writer.append_one(row("ses_a")) == 1
        with pytest.raises(AsmError) as info:
            writer.append_one(bad)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.STORAGE_WRITE_FAILED
        assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
        assert not writer.conn.in_transaction
        assert writer.append_one(row("ses_a")) == 2
    assert [seq for seq, _ in harness.stored("ses_a")] == [1, 2]
