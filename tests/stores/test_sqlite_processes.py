"""SQLiteSessionStore shared by several OS processes: concurrent appends, kill -9 safety,
cross-process long-poll and concurrent first opens."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from agent_session_manager.core import Event, EventType, RunStatus
from agent_session_manager.stores.sqlite import SQLiteSessionStore

pytestmark = pytest.mark.anyio

APPENDER = """
import sys, anyio
from agent_session_manager.core import Event, EventType
from agent_session_manager.stores.sqlite import SQLiteSessionStore

async def main(path: str, worker: int, n: int) -> None:
    async with SQLiteSessionStore(path) as store:
        print("ready", flush=True)
        sys.stdin.readline()  # start together, so the appends really contend
        for i in range(n):
            await store.append_event(
                Event(type=EventType.MESSAGE_STREAMED, session_id="ses_shared", data={"w": worker, "i": i})
            )
    print("done", flush=True)

anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""

CRASHER = """
import sys, anyio
from agent_session_manager.core import Event, EventType, Run, RunStatus, Session
from agent_session_manager.stores.sqlite import SQLiteSessionStore

async def main(path: str) -> None:
    store = await SQLiteSessionStore.connect(path)
    session = Session(agent_id="crash")
    await store.save_session(session)
    run = Run(session_id=session.id).with_status(RunStatus.RUNNING)
    await store.save_run(run)
    print("run", session.id, run.id, flush=True)
    i = 0
    while True:
        stored = await store.append_event(
            Event(type=EventType.MESSAGE_STREAMED, session_id=session.id, run_id=run.id, data={"i": i})
        )
        print("ack", stored.sequence_number, stored.id, flush=True)
        i += 1

anyio.run(main, sys.argv[1])
"""

APPEND_ON_GO = """
import sys, anyio
from agent_session_manager.core import Event, EventType
from agent_session_manager.stores.sqlite import SQLiteSessionStore

async def main(path: str) -> None:
    async with SQLiteSessionStore(path) as store:
        print("ready", flush=True)
        sys.stdin.readline()
        await store.append_event(
            Event(type=EventType.MESSAGE_SENT, session_id="ses_lp", data={"from": "child"})
        )

anyio.run(main, sys.argv[1])
"""


def spawn(code: str, *args: object, stdin: int | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_four_processes_append_to_one_session_gapless(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"  # new file: the four first opens also race on the migration
    procs = [spawn(APPENDER, path, worker, 500, stdin=subprocess.PIPE) for worker in range(4)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line != "ready":
                _, err = proc.communicate(timeout=30)
                pytest.fail(f"a child failed to open the store: {err[-2000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            out, err = proc.communicate(timeout=100)
            assert proc.returncode == 0, err
            assert out.strip() == "done"
    finally:
        for proc in procs:  # never leave a child or an open pipe behind, even on failure
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        assert "locked" not in err
    async with SQLiteSessionStore(path) as store:
        events = await store.get_events("ses_shared")
    assert [e.sequence_number for e in events] == list(range(1, 2001))
    assert len({e.id for e in events}) == 2000
    for worker in range(4):
        mine = [e.data["i"] for e in events if e.data["w"] == worker]
        assert mine == list(range(500))  # each process's appends keep their order


async def test_kill_9_loses_no_acknowledged_event_and_run_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    proc = spawn(CRASHER, path)
    assert proc.stdout is not None
    try:
        header = proc.stdout.readline().split()
        assert header[0] == "run", proc.stderr.read() if proc.stderr else ""
        session_id, run_id = header[1], header[2]
        acked: dict[int, str] = {}
        while len(acked) < 300:
            line = proc.stdout.readline()
            assert line, "child exited early"
            _, seq, event_id = line.split()
            acked[int(seq)] = event_id
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    async with SQLiteSessionStore(path) as store:
        events = await store.get_events(session_id)
        by_seq = {e.sequence_number: e.id for e in events}
        assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
        for seq, event_id in acked.items():
            assert by_seq[seq] == event_id
        assert (await store.get_run(run_id)).status is RunStatus.RUNNING
        recovered = await store.recover_interrupted_runs()
        assert [r.id for r in recovered] == [run_id]
        run = await store.get_run(run_id)
        assert run.status is RunStatus.FAILED
        failed = await store.get_events(session_id, types=[EventType.RUN_FAILED])
        assert len(failed) == 1
        assert failed[0].run_id == run_id
        assert await store.recover_interrupted_runs() == []  # nothing left to recover


async def test_long_poll_sees_another_processes_append(tmp_path: Path) -> None:
    path = tmp_path / "lp.db"
    async with SQLiteSessionStore(path, poll_interval=0.02) as store:
        proc = spawn(APPEND_ON_GO, path, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "ready"
            got: list[Event] = []

            async def follow() -> None:
                got.extend(await store.get_events("ses_lp", after=0, wait_timeout=60))

            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await anyio.wait_all_tasks_blocked()
                proc.stdin.write("go\n")
                proc.stdin.flush()
            assert [(e.sequence_number, e.data) for e in got] == [(1, {"from": "child"})]
        finally:
            _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
