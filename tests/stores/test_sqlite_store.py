"""SQLiteSessionStore behaviour beyond the conformance suite: durability modes, group
commit, error translation, schema versioning and lifecycle."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, Run, RunStatus, Session
from agent_session_manager.stores._migrations import SQLITE_MIGRATIONS
from agent_session_manager.stores._sqlite_writer import _CHECKPOINT_PAGES_FSYNC, _WAL_RESTART_FRAMES
from agent_session_manager.stores.sqlite import SQLiteSessionStore

pytestmark = pytest.mark.anyio


def ev(session_id: str, **kw: object) -> Event:
    return Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data={"delta": "x", **kw})


async def seed(path: Path, events: int = 3) -> Session:
    async with SQLiteSessionStore(path) as store:
        session = Session(agent_id="agent")
        await store.save_session(session)
        await store.append_events([ev(session.id, i=i) for i in range(events)])
    return session


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_appends_survive_reopen_in_both_durability_modes(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, synchronous=synchronous) as store:  # type: ignore[arg-type]
        stored = [await store.append_event(ev("ses_1", i=i)) for i in range(20)]
    assert [e.sequence_number for e in stored] == list(range(1, 21))
    async with SQLiteSessionStore(path) as store:
        again = await store.get_events("ses_1")
    assert [e.id for e in again] == [e.id for e in stored]
    assert [e.data["i"] for e in again] == list(range(20))


@pytest.mark.parametrize(
    ("synchronous", "tasks", "per_task", "max_frames"),
    [
        ("NORMAL", 1, 12_000, 3 * _WAL_RESTART_FRAMES),
        ("NORMAL", 20, 600, 3 * _WAL_RESTART_FRAMES),
        ("FULL", 1, 2_500, 4 * _CHECKPOINT_PAGES_FSYNC),
    ],
)
async def test_wal_stays_bounded_under_steady_appends(
    tmp_path: Path, synchronous: str, tasks: int, per_task: int, max_frames: int
) -> None:
    # Without checkpoints that let the WAL restart, each append adds ~4-5 frames for good
    # (~50,000 frames for 12,000 appends); the bound is a few checkpoint intervals.
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path, synchronous=synchronous) as store:  # type: ignore[arg-type]

        async def worker(k: int) -> None:
            for i in range(per_task):
                await store.append_event(ev(f"ses_{k}", i=i))

        async with anyio.create_task_group() as tg:
            for k in range(tasks):
                tg.start_soon(worker, k)
        wal_bytes = os.path.getsize(f"{path}-wal")
        assert [await store.get_latest_sequence(f"ses_{k}") for k in range(tasks)] == [per_task] * tasks
    frame_bytes = 4096 + 24  # default page size plus the frame header
    assert wal_bytes <= 32 + max_frames * frame_bytes, wal_bytes // frame_bytes


async def test_a_burst_of_lone_appends_still_lets_timers_run(tmp_path: Path) -> None:
    # Lone appends commit on the loop without yielding, but a burst yields every _MAX_HOLD
    # (2 ms), so a 1 ms timer fires many times during 3,000 appends (>= 30 ms anywhere).
    # Without those yields it would fire only when a checkpoint holds the writer lock
    # (with NORMAL: about every 1,000 appends).
    count = 3000
    appended = 0
    seen: list[int] = []
    async with SQLiteSessionStore(tmp_path / "s.db") as store:
        await store.append_event(ev("ses_0"))
        async with anyio.create_task_group() as tg:

            async def ticker() -> None:
                while True:
                    await anyio.sleep(0.001)  # a timer: it fires only when the loop gets a turn
                    seen.append(appended)

            tg.start_soon(ticker)
            await anyio.wait_all_tasks_blocked()  # the ticker is waiting on its timer
            for i in range(count):
                await store.append_event(ev("ses_1", i=i))
                appended += 1
            tg.cancel_scope.cancel()
    assert len({n for n in seen if 0 < n < count}) >= 8, seen


async def test_wal_mode_and_schema_version_are_set(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with SQLiteSessionStore(path) as store:
        await store.append_event(ev("ses_1"))
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        finally:
            conn.close()
    assert versions == [m.version for m in SQLITE_MIGRATIONS]


async def test_concurrent_appends_group_commit_keep_sessions_gapless(tmp_path: Path) -> None:
    sessions = [f"ses_{i}" for i in range(20)]
    acked: dict[str, list[int]] = {s: [] for s in sessions}
    async with SQLiteSessionStore(tmp_path / "s.db") as store:

        async def writer(session_id: str) -> None:
            for i in range(15):
                stored = await store.append_event(ev(session_id, i=i))
                acked[session_id].append(stored.sequence_number or 0)

        async with anyio.create_task_group() as tg:
            for session_id in sessions:
                tg.start_soon(writer, session_id)
        for session_id in sessions:
            assert acked[session_id] == list(range(1, 16))
            events = await store.get_events(session_id)
            assert [e.data["i"] for e in events] == list(range(15))
            assert await store.get_latest_sequence(session_id) == 15


async def test_concurrent_batches_and_single_appends_mix(tmp_path: Path) -> None:
    async with SQLiteSessionStore(tmp_path / "s.db") as store:
        results: list[list[Event]] = []

        async def batch(n: int) -> None:
            results.append(await store.append_events([ev("ses_m", n=n, k=k) for k in range(5)]))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(batch, n)
        # Each batch is contiguous: atomic batches are never interleaved with others.
        for stored in results:
            seqs = [e.sequence_number or 0 for e in stored]
            assert seqs == list(range(seqs[0], seqs[0] + 5))
        assert sorted(e.sequence_number for r in results for e in r) == list(range(1, 51))


async def test_idempotent_append_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    event = ev("ses_1")
    async with SQLiteSessionStore(path) as store:
        first = await store.append_event(event)
    async with SQLiteSessionStore(path) as store:
        again = await store.append_event(event)
        batch = await store.append_events([ev("ses_1"), event])
        assert again == first
        assert batch[1] == first
        assert batch[0].sequence_number == 2
        assert await store.get_latest_sequence("ses_1") == 2


async def test_in_process_long_poll_wakes_on_append(tmp_path: Path) -> None:
    async with SQLiteSessionStore(tmp_path / "s.db", poll_interval=3600) as store:
        got: list[Event] = []

        async def follow() -> None:
            got.extend(await store.get_events("ses_1", after=0, wait_timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.wait_all_tasks_blocked()
            appended = await store.append_event(ev("ses_1"))
        # With an hour-long poll interval only the in-process wake-up can explain this.
        assert got == [appended]


async def test_close_wakes_long_pollers_and_flushes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = await SQLiteSessionStore.connect(path)
    result: list[list[Event]] = []

    async def follow() -> None:
        result.append(await store.get_events("ses_1", wait_timeout=30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        await anyio.wait_all_tasks_blocked()
        await store.close()
    assert result == [[]]
    await store.close()  # idempotent


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.append_event(ev("ses_1")),
        lambda s: s.get_events("ses_1"),
        lambda s: s.save_session(Session(agent_id="a")),
        lambda s: s.get_latest_sequence("ses_1"),
        lambda s: s.open(),
    ],
)
async def test_closed_store_raises_connection_failed(tmp_path: Path, call: object) -> None:
    store = await SQLiteSessionStore.connect(tmp_path / "s.db")
    await store.close()
    with pytest.raises(AsmError) as info:
        await call(store)  # type: ignore[operator]
    assert info.value.code is ErrorCode.STORAGE_CONNECTION_FAILED


async def test_lazy_open_on_first_use(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db")
    try:
        assert (await store.append_event(ev("ses_1"))).sequence_number == 1
    finally:
        await store.close()


async def test_corrupt_file_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is definitely not an SQLite database\n" * 200)
    with pytest.raises(AsmError) as info:
        await SQLiteSessionStore.connect(path)
    assert info.value.code is ErrorCode.STORAGE_ERROR
    assert info.value.details["path"] == str(path)
    assert path.read_bytes().startswith(b"this is definitely")  # untouched


async def test_unopenable_path_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(AsmError) as info:
        await SQLiteSessionStore.connect(tmp_path / "missing-dir" / "s.db")
    assert info.value.code is ErrorCode.STORAGE_ERROR


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    await seed(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO schema_version (version, description, applied_us) VALUES (99, 'future', 0)")
    conn.close()
    with pytest.raises(AsmError) as info:
        await SQLiteSessionStore.connect(path)
    assert info.value.code is ErrorCode.STORAGE_ERROR
    supported = SQLITE_MIGRATIONS[-1].version
    assert info.value.message == (
        f"database schema version 99 is newer than this code supports ({supported}); "
        "upgrade agent-session-manager"
    )


async def test_read_only_store_reads_but_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    session = await seed(path, events=3)
    async with SQLiteSessionStore(path, read_only=True) as store:
        assert (await store.get_session(session.id)).id == session.id
        assert len(await store.get_events(session.id)) == 3
        with pytest.raises(AsmError) as info:
            await store.append_events([ev(session.id), ev(session.id)])
        assert info.value.code is ErrorCode.STORAGE_WRITE_FAILED
        with pytest.raises(AsmError) as info:
            await store.save_run(Run(session_id=session.id))
        assert info.value.code is ErrorCode.STORAGE_WRITE_FAILED
    async with SQLiteSessionStore(path) as store:  # nothing half-written
        assert await store.get_latest_sequence(session.id) == 3
        assert await store.list_runs(session.id) == []


async def test_read_only_store_needs_an_existing_schema(tmp_path: Path) -> None:
    with pytest.raises(AsmError) as info:
        await SQLiteSessionStore.connect(tmp_path / "absent.db", read_only=True)
    assert info.value.code is ErrorCode.STORAGE_ERROR


def _make_unwritable(path: Path) -> Callable[[], None]:
    """Make ``path`` unwritable even for root (``chattr +i``), else by permissions; returns undo."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        assert chattr is not None, "running as root needs chattr to make a file unwritable"
        subprocess.run([chattr, "+i", str(path)], check=True)
        return lambda: subprocess.run([chattr, "-i", str(path)], check=True) and None
    path.chmod(stat.S_IRUSR)
    return lambda: path.chmod(stat.S_IRUSR | stat.S_IWUSR)


async def test_read_only_file_fails_writes_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    session = await seed(path)
    undo = _make_unwritable(path)
    try:
        with pytest.raises(AsmError) as info:
            async with SQLiteSessionStore(path) as store:
                await store.append_event(ev(session.id))
        assert info.value.code in (ErrorCode.STORAGE_WRITE_FAILED, ErrorCode.STORAGE_ERROR)
    finally:
        undo()
    async with SQLiteSessionStore(path) as store:  # nothing half-written
        assert await store.get_latest_sequence(session.id) == 3


@pytest.mark.parametrize(
    "kwargs",
    [{"synchronous": "SOMETIMES"}, {"poll_interval": 0}, {"busy_timeout": -1}, {"max_readers": 0}],
)
def test_bad_options_are_validation_errors(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(AsmError) as info:
        SQLiteSessionStore(tmp_path / "s.db", **kwargs)  # type: ignore[arg-type]
    assert info.value.code is ErrorCode.VALIDATION_ERROR


@pytest.mark.parametrize("path", [":memory:", "", "file:x.db?mode=memory"])
def test_non_file_paths_are_rejected(path: str) -> None:
    with pytest.raises(AsmError) as info:
        SQLiteSessionStore(path)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


async def test_runs_round_trip_and_active_run(tmp_path: Path) -> None:
    async with SQLiteSessionStore(tmp_path / "s.db") as store:
        session = Session(agent_id="a")
        await store.save_session(session)
        run = Run(session_id=session.id)
        await store.save_run(run)
        running = run.with_status(RunStatus.RUNNING)
        await store.save_run(running)
        assert await store.get_active_run(session.id) == running
        done = running.with_status(RunStatus.COMPLETED, output={"content": "ok"})
        await store.save_run(done)
        assert await store.get_active_run(session.id) is None
        assert await store.get_run(run.id) == done


async def test_a_database_locked_past_busy_timeout_is_a_typed_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    session = await seed(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    ticks = 0
    try:
        async with SQLiteSessionStore(path, busy_timeout=0.3) as store:
            async with anyio.create_task_group() as tg:

                async def ticker() -> None:
                    nonlocal ticks
                    while True:
                        await anyio.sleep(0.01)
                        ticks += 1

                tg.start_soon(ticker)
                with pytest.raises(AsmError) as info:
                    await store.append_event(ev(session.id))
                tg.cancel_scope.cancel()
            assert info.value.code is ErrorCode.STORAGE_CONNECTION_FAILED
            assert info.value.retryable  # lock contention is transient: the caller may retry
            assert info.value.details["sqlite_error"] == "SQLITE_BUSY"
            assert ticks > 5  # the loop kept running while the store waited for the lock
            holder.execute("ROLLBACK")
            stored = await store.append_event(ev(session.id))
            assert stored.sequence_number == 4  # nothing half-written, no gap
    finally:
        holder.close()
