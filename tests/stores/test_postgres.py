"""PostgresSessionStore on a real server: processes, crashes, failures, LISTEN/NOTIFY."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
import pytest
from anyio.abc import Process
from psycopg_pool import AsyncConnectionPool

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, RunStatus, Session
from agent_session_manager.stores.postgres import PostgresSessionStore
from agent_session_manager.testing.pgserver import PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]

CHILD = Path(__file__).with_name("_pg_child.py")
STORAGE_CODES = {
    ErrorCode.STORAGE_ERROR,
    ErrorCode.STORAGE_CONNECTION_FAILED,
    ErrorCode.STORAGE_READ_FAILED,
    ErrorCode.STORAGE_WRITE_FAILED,
}


def child_cmd(*args: str) -> list[str]:
    return [sys.executable, str(CHILD), *args]


async def read_line(proc: Process, buffer: bytearray) -> str:
    assert proc.stdout is not None
    while b"\n" not in buffer:
        chunk = await proc.stdout.receive()
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


def event(session_id: str, **data: object) -> Event:
    return Event(type=EventType.MESSAGE_STREAMED, session_id=session_id, data=dict(data))


async def admin(url: str, query: str) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(query.encode())
        return await cur.fetchall() if cur.description else []


# -- several processes ---------------------------------------------------------------------


async def test_four_processes_append_to_one_session_gaplessly(pg_url: str) -> None:
    async with await PostgresSessionStore.connect(pg_url) as store:
        session = Session(agent_id="multi")
        await store.save_session(session)
        with anyio.fail_after(100):
            async with anyio.create_task_group() as tg:
                for tag in "abcd":
                    tg.start_soon(anyio.run_process, child_cmd("append", pg_url, session.id, "500", tag))
        events = await store.get_events(session.id)
        assert [e.sequence_number for e in events] == list(range(1, 2001))
        assert await store.get_latest_sequence(session.id) == 2000
        for tag in "abcd":  # each process's appends keep their order
            assert [e.data["i"] for e in events if e.data["w"] == tag] == list(range(500))


async def test_kill_9_loses_no_acknowledged_event_and_recovery_finalizes_the_run(pg_url: str) -> None:
    acked: dict[str, int] = {}
    async with await anyio.open_process(child_cmd("crash", pg_url)) as proc:
        buffer = bytearray()
        with anyio.fail_after(60):
            _, session_id, run_id = (await read_line(proc, buffer)).split()
            while len(acked) < 150:
                _, event_id, seq = (await read_line(proc, buffer)).split()
                acked[event_id] = int(seq)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL

    async with await PostgresSessionStore.connect(pg_url) as store:
        stored = {e.id: e.sequence_number for e in await store.get_events(session_id)}
        assert acked.items() <= stored.items()
        assert sorted(stored.values()) == list(range(1, len(stored) + 1))
        assert (await store.get_run(run_id)).status is RunStatus.RUNNING

        recovered = await store.recover_interrupted_runs()

        assert [r.id for r in recovered] == [run_id]
        run = await store.get_run(run_id)
        assert run.status is RunStatus.FAILED
        assert run.ended_at is not None
        last = (await store.get_events(session_id))[-1]
        assert last.type is EventType.RUN_FAILED
        assert last.run_id == run_id
        assert await store.get_active_run(session_id) is None


async def test_long_poll_is_woken_by_an_append_in_another_process(pg_url: str) -> None:
    async with await PostgresSessionStore.connect(pg_url) as store:
        session = Session(agent_id="follow")
        await store.save_session(session)
        async with await anyio.open_process(child_cmd("serve", pg_url, session.id)) as proc:
            assert proc.stdin is not None
            buffer = bytearray()
            for cursor in range(5):
                got: list[Event] = []

                async def follow(after: int = cursor, out: list[Event] = got) -> None:
                    out.extend(await store.get_events(session.id, after=after, wait_timeout=30))

                with anyio.fail_after(25):  # a NOTIFY that never arrives fails here, not at 30 s
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(follow)
                        await anyio.wait_all_tasks_blocked()
                        await proc.stdin.send(b"go\n")
                        _, event_id, seq = (await read_line(proc, buffer)).split()
                assert [(e.id, e.sequence_number) for e in got] == [(event_id, int(seq))]
                assert int(seq) == cursor + 1
            await proc.stdin.aclose()
            assert await proc.wait() == 0


# -- LISTEN connection failure -------------------------------------------------------------


async def _listener_pids(url: str, app: str) -> list[int]:
    rows = await admin(
        url,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        f"AND application_name = '{app}-listener' AND query LIKE 'LISTEN%'",
    )
    return [int(r[0]) for r in rows]  # type: ignore[call-overload]


async def _wait_for_listener(url: str, app: str, *, not_pid: int | None = None) -> int:
    # Polls the server's view of the connection: a condition, not a timing assumption.
    with anyio.fail_after(20):
        while True:
            pids = [p for p in await _listener_pids(url, app) if p != not_pid]
            if pids:
                return pids[0]
            await anyio.sleep(0.02)


async def test_long_poll_survives_the_listen_connection_being_terminated(pg_url: str) -> None:
    async with (
        await PostgresSessionStore.connect(pg_url, application_name="asm-follower") as follower,
        await PostgresSessionStore.connect(pg_url, application_name="asm-writer") as writer,
    ):
        session = Session(agent_id="listen")
        await follower.save_session(session)
        for cursor in range(2):
            got: list[Event] = []

            async def follow(after: int = cursor, out: list[Event] = got) -> None:
                out.extend(await follower.get_events(session.id, after=after, wait_timeout=30))

            with anyio.fail_after(25):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(follow)
                    pid = await _wait_for_listener(pg_url, "asm-follower")
                    await admin(pg_url, f"SELECT pg_terminate_backend({pid})")
                    await _wait_for_listener(pg_url, "asm-follower", not_pid=pid)
                    # Only the follower's NOTIFY listener can wake it: the writer is another store.
                    appended = await writer.append_event(event(session.id, n=cursor))
            assert [e.id for e in got] == [appended.id]


# -- connection failures -------------------------------------------------------------------


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def test_wrong_password_is_storage_connection_failed(pg_server: PostgresServer, pg_url: str) -> None:
    with anyio.fail_after(20), pytest.raises(AsmError) as info:
        await PostgresSessionStore.connect(_with_password(pg_url, "not-the-password"))
    assert info.value.code is ErrorCode.STORAGE_CONNECTION_FAILED
    assert info.value.retryable
    assert "password authentication failed" in info.value.message
    assert pg_server.password not in str(info.value.to_dict())


async def test_unreachable_server_is_storage_connection_failed(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    with anyio.fail_after(20), pytest.raises(AsmError) as info:
        await PostgresSessionStore.connect(
            urlunsplit(parts._replace(netloc=f"asm:x@127.0.0.1:{_closed_port()}")), connect_timeout=2
        )
    assert info.value.code is ErrorCode.STORAGE_CONNECTION_FAILED


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_database_dropped_mid_run_raises_typed_errors_without_hanging(
    pg_server: PostgresServer, pg_url: str
) -> None:
    name = urlsplit(pg_url).path.lstrip("/")
    store = await PostgresSessionStore.connect(pg_url, pool_timeout=5, connect_timeout=2)
    session = Session(agent_id="doomed")
    await store.save_session(session)
    await store.append_event(event(session.id))
    outcome: list[object] = []

    async def follow() -> None:
        try:
            outcome.append(await store.get_events(session.id, after=1, wait_timeout=60))
        except AsmError as exc:
            outcome.append(exc)

    with anyio.fail_after(45):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await _wait_for_listener(pg_url, "agent-session-manager")
            await anyio.to_thread.run_sync(pg_server.drop_database, name)
            for call in (
                lambda: store.append_event(event(session.id)),
                lambda: store.append_events([event(session.id), event(session.id)]),
                lambda: store.get_events(session.id),
                lambda: store.get_session(session.id),
            ):
                with pytest.raises(AsmError) as info:
                    await call()
                assert info.value.code in STORAGE_CODES
        await store.close()
    (result,) = outcome
    assert isinstance(result, AsmError), f"long-poll returned {result!r} instead of failing"
    assert result.code in STORAGE_CODES


async def test_backends_terminated_between_calls_are_replaced_transparently(pg_url: str) -> None:
    async with await PostgresSessionStore.connect(pg_url) as store:
        session = Session(agent_id="resilient")
        await store.save_session(session)
        await store.append_event(event(session.id))
        await admin(
            pg_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        assert (await store.append_event(event(session.id))).sequence_number == 2
        assert (await store.get_session(session.id)).id == session.id
        assert [e.sequence_number for e in await store.get_events(session.id)] == [1, 2]


# -- schema management ---------------------------------------------------------------------


async def test_concurrent_openers_migrate_once(pg_url: str) -> None:
    stores: list[PostgresSessionStore] = []

    async def open_one() -> None:
        stores.append(await PostgresSessionStore.connect(pg_url))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(open_one)
    for store in stores:
        await store.close()
    assert await admin(pg_url, "SELECT version FROM schema_version") == [(1,)]


async def test_schema_newer_than_code_is_refused(pg_url: str) -> None:
    await (await PostgresSessionStore.connect(pg_url)).close()
    await admin(pg_url, "INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(AsmError) as info:
        await PostgresSessionStore.connect(pg_url)
    assert info.value.code is ErrorCode.STORAGE_ERROR
    assert "newer" in info.value.message
    assert info.value.details["database_version"] == 99


# -- group commit and pools ----------------------------------------------------------------


async def test_rejected_request_in_a_merged_batch_fails_alone(pg_url: str) -> None:
    async with await PostgresSessionStore.connect(pg_url) as store:
        session = Session(agent_id="mixed")
        await store.save_session(session)
        good: list[Event] = []
        failures: list[AsmError] = []

        async def append(payload: str) -> None:
            try:
                good.append(await store.append_event(event(session.id, text=payload)))
            except AsmError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                # PostgreSQL's jsonb rejects NUL characters: this request must fail on its own.
                tg.start_soon(append, "bad\u0000" if i == 17 else f"ok {i}")
        assert len(good) == 39
        assert [f.code for f in failures] == [ErrorCode.STORAGE_WRITE_FAILED]
        assert sorted(e.sequence_number or 0 for e in good) == list(range(1, 40))
        assert [e.sequence_number for e in await store.get_events(session.id)] == list(range(1, 40))


async def test_lone_appends_survive_a_session_deleted_by_another_store(pg_url: str) -> None:
    # `a` remembers that the session has a counter row (cheaper UPDATE path); `b` deletes the
    # session behind its back, so `a` must notice the missing row and start again from 1.
    async with (
        await PostgresSessionStore.connect(pg_url) as a,
        await PostgresSessionStore.connect(pg_url) as b,
    ):
        session = Session(agent_id="deleted")
        await a.save_session(session)
        first = [await a.append_event(event(session.id, i=i)) for i in range(3)]
        assert [e.sequence_number for e in first] == [1, 2, 3]
        assert await a.append_event(first[1]) == first[1]  # idempotent on the UPDATE path too
        await b.delete_session(session.id)
        again = await a.append_event(event(session.id, i=9))
        assert again.sequence_number == 1
        assert await a.append_event(again) == again  # a duplicate on the fallback path
        assert await a.append_event(event(session.id, i=10)) == (await b.get_events(session.id))[-1]
        assert [(e.sequence_number, e.data["i"]) for e in await b.get_events(session.id)] == [(1, 9), (2, 10)]
        assert await b.get_latest_sequence(session.id) == 2


async def test_caller_owned_pool_is_used_and_left_open(pg_url: str) -> None:
    pool: AsyncConnectionPool[psycopg.AsyncConnection[tuple[object, ...]]] = AsyncConnectionPool(
        pg_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    try:
        async with PostgresSessionStore(pool=pool) as store:
            session = Session(agent_id="pooled", tags=["x"])
            await store.save_session(session)
            assert (await store.append_event(event(session.id))).sequence_number == 1
            assert await store.list_sessions(tags=["x"]) == [session]
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM events")
            assert await cur.fetchone() == (1,)
    finally:
        await pool.close()


async def test_unix_socket_url_and_url_scheme_variants(pg_server: PostgresServer, pg_url: str) -> None:
    name = urlsplit(pg_url).path.lstrip("/")
    socket_url = pg_server.socket_url_for(name)
    async with await PostgresSessionStore.connect(socket_url) as store:
        session = Session(agent_id="socket")
        await store.save_session(session)
    variant = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    async with await PostgresSessionStore.connect(variant) as store:
        assert await store.get_session(session.id) == session


def test_pg_server_stop_removes_its_directory() -> None:
    if not PostgresServer.available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PostgreSQL server binaries not found; CI must run the postgres tests")
        pytest.skip("PostgreSQL server binaries not found")
    server = PostgresServer(durable=False).start()
    base = server.base_dir
    assert base is not None
    assert base.exists()
    assert server.admin_execute("SELECT 1") == [(1,)]
    server.stop()
    assert not base.exists()
    server.stop()  # idempotent
    assert os.environ.get("ASM_PG_BIN") is None or PostgresServer.available()
