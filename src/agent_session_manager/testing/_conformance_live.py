"""Conformance checks for long-polling, concurrency, close and context-manager use."""

from __future__ import annotations

import functools
import time

import anyio

from ..core import Event, EventType
from ..ports import SessionStore
from ._conformance_base import append_many, check, make_event, new_session, seqs

__all__ = ()

_E = EventType

# The long waits below are upper bounds that a correct store never reaches: a waiter that
# is woken returns long before them, one that is not fails the check instead of hanging.
_LONG_WAIT = 20.0
_SHORT_WAIT = 0.15


async def _wait_in_task(
    store: SessionStore, session_id: str, results: list[list[Event]], started: anyio.Event, **kwargs: object
) -> None:
    started.set()
    results.append(await store.get_events(session_id, **kwargs))  # type: ignore[arg-type]


async def _until_waiting(started: anyio.Event) -> None:
    """Return once the waiter task has started and every task is blocked (no sleeps)."""
    await started.wait()
    await anyio.wait_all_tasks_blocked()


@check("long_poll_returns_immediately_when_events_exist")
async def _poll_immediate(store: SessionStore) -> None:
    """With matching events present, a long-poll returns them without waiting."""
    session = await new_session(store)
    await append_many(store, session.id, 3)
    t0 = time.monotonic()
    got = await store.get_events(session.id, after=1, wait_timeout=_LONG_WAIT)
    assert seqs(got) == [2, 3]
    assert time.monotonic() - t0 < _LONG_WAIT / 2, "long-poll waited although events existed"
    assert seqs(await store.get_events(session.id, wait_timeout=0)) == [1, 2, 3]


@check("long_poll_times_out_empty")
async def _poll_timeout(store: SessionStore) -> None:
    """With nothing after the cursor, a long-poll waits about wait_timeout and returns []."""
    session = await new_session(store)
    await append_many(store, session.id, 2)
    t0 = time.monotonic()
    assert await store.get_events(session.id, after=2, wait_timeout=_SHORT_WAIT) == []
    assert time.monotonic() - t0 >= _SHORT_WAIT * 0.8, "long-poll returned before its timeout"
    assert await store.get_events("ses_unknown", wait_timeout=_SHORT_WAIT) == []


@check("long_poll_wakes_on_append")
async def _poll_wakes(store: SessionStore) -> None:
    """A long-poller is woken by another task's append, well before its timeout."""
    session = await new_session(store)
    await append_many(store, session.id, 2)
    results: list[list[Event]] = []
    started = anyio.Event()
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: _wait_in_task(store, session.id, results, started, after=2, wait_timeout=_LONG_WAIT)
        )
        await _until_waiting(started)
        appended = await store.append_event(make_event(session.id, _E.MESSAGE_RECEIVED))
    elapsed = time.monotonic() - t0
    assert [[e.id for e in r] for r in results] == [[appended.id]], f"waiter got {results!r}"
    assert seqs(results[0]) == [3]
    assert elapsed < _LONG_WAIT / 2, f"long-poll was not woken by the append ({elapsed:.2f}s)"


@check("long_poll_wakes_on_batch_append")
async def _poll_wakes_batch(store: SessionStore) -> None:
    """append_events wakes a long-poller, which sees the whole (atomic) batch in order."""
    session = await new_session(store)
    results: list[list[Event]] = []
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _wait_in_task(store, session.id, results, started, wait_timeout=_LONG_WAIT))
        await _until_waiting(started)
        await store.append_events([make_event(session.id) for _ in range(3)])
    assert results
    assert seqs(results[0]) == [1, 2, 3]


@check("long_poll_wakes_all_waiters")
async def _poll_many_waiters(store: SessionStore) -> None:
    """One append wakes every long-poller of the session."""
    session = await new_session(store)
    results: list[list[Event]] = []
    starts = [anyio.Event() for _ in range(5)]
    async with anyio.create_task_group() as tg:
        for started in starts:
            waiter = functools.partial(
                _wait_in_task, store, session.id, results, started, wait_timeout=_LONG_WAIT
            )
            tg.start_soon(waiter)
        for started in starts:
            await started.wait()
        await anyio.wait_all_tasks_blocked()
        await store.append_event(make_event(session.id))
    assert [seqs(r) for r in results] == [[1]] * 5


@check("long_poll_ignores_other_sessions")
async def _poll_other_session(store: SessionStore) -> None:
    """An append to another session does not satisfy a long-poll."""
    session, other = await new_session(store), await new_session(store)
    results: list[list[Event]] = []
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _wait_in_task(store, session.id, results, started, wait_timeout=_LONG_WAIT))
        await _until_waiting(started)
        await store.append_event(make_event(other.id))
        await anyio.wait_all_tasks_blocked()
        mine = await store.append_event(make_event(session.id))
    assert [[e.id for e in r] for r in results] == [[mine.id]]


@check("long_poll_filter_not_woken_by_non_matching")
async def _poll_filter(store: SessionStore) -> None:
    """A filtered long-poll skips non-matching appends and returns only the matching one."""
    session = await new_session(store)
    results: list[list[Event]] = []
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: _wait_in_task(
                store, session.id, results, started, types=[_E.RUN_COMPLETED], wait_timeout=_LONG_WAIT
            )
        )
        await _until_waiting(started)
        await store.append_event(make_event(session.id, _E.MESSAGE_STREAMED))
        await anyio.wait_all_tasks_blocked()
        await store.append_event(make_event(session.id, _E.MESSAGE_STREAMED))
        await anyio.wait_all_tasks_blocked()
        done = await store.append_event(make_event(session.id, _E.RUN_COMPLETED))
    assert [[e.id for e in r] for r in results] == [[done.id]], f"waiter got {results!r}"
    assert seqs(results[0]) == [3]


@check("long_poll_filter_times_out_on_non_matching")
async def _poll_filter_timeout(store: SessionStore) -> None:
    """A run_id-filtered long-poll returns [] at its timeout when only other runs' events arrive."""
    session = await new_session(store)
    results: list[list[Event]] = []
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: _wait_in_task(
                store, session.id, results, started, run_id="run_wanted", wait_timeout=_SHORT_WAIT
            )
        )
        await _until_waiting(started)
        await store.append_event(make_event(session.id))
    assert results == [[]]


@check("close_wakes_long_pollers")
async def _close_wakes(store: SessionStore) -> None:
    """close() wakes blocked long-pollers (they return []) and is idempotent."""
    session = await new_session(store)
    results: list[list[Event]] = []
    started = anyio.Event()
    t0 = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: _wait_in_task(store, session.id, results, started, wait_timeout=_LONG_WAIT))
        await _until_waiting(started)
        await store.close()
    assert results == [[]]
    assert time.monotonic() - t0 < _LONG_WAIT / 2, "close() did not wake the long-poller"
    await store.close()


@check("async_context_manager")
async def _context_manager(store: SessionStore) -> None:
    """``async with store`` yields the store and closes it on exit (close stays idempotent)."""
    async with store as entered:
        assert entered is store
        session = await new_session(store)
        assert (await store.append_event(make_event(session.id))).sequence_number == 1
    await store.close()


@check("concurrent_appends_one_session")
async def _concurrent_one(store: SessionStore) -> None:
    """50 tasks x 20 appends into one session: sequence exactly 1..1000, per-task order kept."""
    session = await new_session(store)
    per_task: dict[int, list[Event]] = {}

    async def worker(n: int) -> None:
        per_task[n] = [
            await store.append_event(make_event(session.id, data={"w": n, "i": i})) for i in range(20)
        ]

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(worker, n)
    events = await store.get_events(session.id)
    assert seqs(events) == list(range(1, 1001))
    assert len({e.id for e in events}) == 1000
    assert await store.get_latest_sequence(session.id) == 1000
    for n, stored in per_task.items():
        numbers = [e.sequence_number or 0 for e in stored]
        assert numbers == sorted(numbers), f"task {n}'s appends are out of order: {numbers}"
        assert [e.data["i"] for e in events if e.data["w"] == n] == list(range(20))


@check("concurrent_appends_many_sessions")
async def _concurrent_many(store: SessionStore) -> None:
    """50 tasks x 20 appends spread over 5 sessions: every session numbered 1..N exactly."""
    sessions = [await new_session(store) for _ in range(5)]

    async def worker(n: int) -> None:
        for i in range(20):
            await store.append_event(make_event(sessions[(n + i) % 5].id, data={"w": n, "i": i}))

    async with anyio.create_task_group() as tg:
        for n in range(50):
            tg.start_soon(worker, n)
    for session in sessions:
        events = await store.get_events(session.id)
        assert seqs(events) == list(range(1, 201)), f"session {session.id} is not gapless"
        assert await store.get_latest_sequence(session.id) == 200


@check("concurrent_batches_contiguous")
async def _concurrent_batches(store: SessionStore) -> None:
    """Concurrent append_events batches each get a contiguous run of numbers."""
    session = await new_session(store)
    batches: list[list[Event]] = []

    async def worker(n: int) -> None:
        batches.append(await store.append_events([make_event(session.id, data={"b": n}) for _ in range(10)]))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(worker, n)
    assert seqs(await store.get_events(session.id)) == list(range(1, 201))
    for batch in batches:
        numbers = [e.sequence_number or 0 for e in batch]
        assert numbers == list(range(numbers[0], numbers[0] + 10)), f"batch interleaved: {numbers}"


@check("concurrent_same_event_id")
async def _concurrent_same_id(store: SessionStore) -> None:
    """The same event appended by 30 tasks at once is stored once; every task gets it back."""
    session = await new_session(store)
    event = make_event(session.id, data={"once": True})
    results: list[Event] = []

    async def worker() -> None:
        results.append(await store.append_event(event))

    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(worker)
    assert len(results) == 30
    assert {(e.id, e.sequence_number) for e in results} == {(event.id, 1)}
    assert seqs(await store.get_events(session.id)) == [1]
    assert await store.get_latest_sequence(session.id) == 1


@check("long_poll_respects_cursor_and_limit")
async def _poll_cursor_limit(store: SessionStore) -> None:
    """A woken long-poll still applies its cursor and limit to what arrived."""
    session = await new_session(store)
    await append_many(store, session.id, 2)
    results: list[list[Event]] = []
    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: _wait_in_task(
                store, session.id, results, started, after=2, limit=2, wait_timeout=_LONG_WAIT
            )
        )
        await _until_waiting(started)
        await store.append_events([make_event(session.id) for _ in range(4)])
    assert [seqs(r) for r in results] == [[3, 4]]
