"""Conformance checks for sessions and runs (save, get, list, delete, active run)."""

from __future__ import annotations

import random
from datetime import timedelta

from ..core import AsmError, ErrorCode, EventType, Run, RunStatus, SessionStatus, TokenUsage
from ..ports import SessionStore
from ._conformance_base import (
    BASE_TIME,
    append_many,
    check,
    expect_asm_error,
    make_event,
    make_run,
    new_session,
)

__all__ = ()

_S = SessionStatus
_R = RunStatus


@check("session_round_trip")
async def _session_round_trip(store: SessionStore) -> None:
    """A saved session reads back equal, every field included."""
    parent = await new_session(store, agent_id="parent")
    session = await new_session(
        store,
        agent_id="agent-ü",
        status=_S.ACTIVE,
        tags=["b", "a"],
        context={"system": "ты помощник", "nested": {"list": [1, 2.5, None, True]}},
        metadata={"provider_sessions": {"claude": "abc"}, "k": "🙂"},
        parent_session_id=parent.id,
        created_at=BASE_TIME,
    )
    got = await store.get_session(session.id)
    assert got == session, f"session changed on round trip: {got!r} != {session!r}"
    assert got.created_at.tzinfo is not None
    assert got.updated_at.tzinfo is not None


@check("session_upsert_replaces")
async def _session_upsert(store: SessionStore) -> None:
    """Saving a session with an existing id replaces it (no duplicate)."""
    session = await new_session(store)
    updated = session.with_status(_S.ACTIVE).with_metadata(step=2)
    await store.save_session(updated)
    got = await store.get_session(session.id)
    assert got.status is _S.ACTIVE
    assert got.metadata == {"step": 2}
    listed = await store.list_sessions()
    assert [s.id for s in listed] == [session.id], "upsert created a duplicate session"


@check("get_session_not_found")
async def _get_session_not_found(store: SessionStore) -> None:
    """get_session of an unknown id raises AsmError(session_not_found)."""
    with expect_asm_error(ErrorCode.SESSION_NOT_FOUND):
        await store.get_session("ses_does_not_exist")


@check("list_sessions_newest_first")
async def _list_sessions_order(store: SessionStore) -> None:
    """list_sessions orders by created_at descending regardless of save order."""
    offsets = list(range(6))
    random.Random(7).shuffle(offsets)
    for i in offsets:
        await new_session(store, agent_id=f"a{i}", created_at=BASE_TIME + timedelta(minutes=i))
    listed = await store.list_sessions()
    assert [s.agent_id for s in listed] == [f"a{i}" for i in reversed(range(6))]


@check("list_sessions_empty_store")
async def _list_sessions_empty(store: SessionStore) -> None:
    """A fresh store lists no sessions."""
    assert await store.list_sessions() == []


@check("list_sessions_filter_status")
async def _list_sessions_status(store: SessionStore) -> None:
    """The status filter accepts a SessionStatus or its string and rejects unknown values."""
    active = await new_session(store, status=_S.ACTIVE)
    await new_session(store, status=_S.PENDING)
    await new_session(store, status=_S.COMPLETED)
    assert [s.id for s in await store.list_sessions(status=_S.ACTIVE)] == [active.id]
    assert [s.id for s in await store.list_sessions(status="active")] == [active.id]
    assert await store.list_sessions(status=_S.PAUSED) == []
    with expect_asm_error(ErrorCode.INVALID_STATUS, ErrorCode.VALIDATION_ERROR):
        await store.list_sessions(status="sleeping")


@check("list_sessions_filter_agent_id")
async def _list_sessions_agent(store: SessionStore) -> None:
    """The agent_id filter matches exactly."""
    a1 = await new_session(store, agent_id="alpha", created_at=BASE_TIME)
    a2 = await new_session(store, agent_id="alpha", created_at=BASE_TIME + timedelta(seconds=1))
    await new_session(store, agent_id="alphabet")
    await new_session(store, agent_id="beta")
    assert [s.id for s in await store.list_sessions(agent_id="alpha")] == [a2.id, a1.id]
    assert await store.list_sessions(agent_id="gamma") == []


@check("list_sessions_filter_tags")
async def _list_sessions_tags(store: SessionStore) -> None:
    """The tags filter keeps sessions carrying every given tag."""
    ab = await new_session(store, tags=["a", "b"], created_at=BASE_TIME + timedelta(seconds=3))
    a = await new_session(store, tags=["a"], created_at=BASE_TIME + timedelta(seconds=2))
    b = await new_session(store, tags=["b", "c"], created_at=BASE_TIME + timedelta(seconds=1))
    none = await new_session(store, tags=[], created_at=BASE_TIME)
    assert [s.id for s in await store.list_sessions(tags=["a"])] == [ab.id, a.id]
    assert [s.id for s in await store.list_sessions(tags=["b", "a"])] == [ab.id]
    assert [s.id for s in await store.list_sessions(tags=["b"])] == [ab.id, b.id]
    assert await store.list_sessions(tags=["zzz"]) == []
    assert [s.id for s in await store.list_sessions(tags=[])] == [ab.id, a.id, b.id, none.id]


@check("list_sessions_combined_filters")
async def _list_sessions_combined(store: SessionStore) -> None:
    """Filters combine with AND."""
    want = await new_session(store, agent_id="x", status=_S.ACTIVE, tags=["t"])
    await new_session(store, agent_id="x", status=_S.PENDING, tags=["t"])
    await new_session(store, agent_id="y", status=_S.ACTIVE, tags=["t"])
    await new_session(store, agent_id="x", status=_S.ACTIVE, tags=["u"])
    got = await store.list_sessions(agent_id="x", status=_S.ACTIVE, tags=["t"])
    assert [s.id for s in got] == [want.id]


@check("list_sessions_limit_offset")
async def _list_sessions_paging(store: SessionStore) -> None:
    """Limit caps the page, offset skips; offset past the end is empty; bad values are rejected."""
    for i in range(5):
        await new_session(store, agent_id=f"a{i}", created_at=BASE_TIME + timedelta(minutes=i))
    assert [s.agent_id for s in await store.list_sessions(limit=2)] == ["a4", "a3"]
    assert [s.agent_id for s in await store.list_sessions(limit=2, offset=2)] == ["a2", "a1"]
    assert [s.agent_id for s in await store.list_sessions(offset=4)] == ["a0"]
    assert await store.list_sessions(offset=5) == []
    assert len(await store.list_sessions(limit=100)) == 5
    with expect_asm_error(ErrorCode.VALIDATION_ERROR):
        await store.list_sessions(limit=0)
    with expect_asm_error(ErrorCode.VALIDATION_ERROR):
        await store.list_sessions(offset=-1)


@check("list_sessions_paging_stable_on_ties")
async def _list_sessions_ties(store: SessionStore) -> None:
    """Sessions with equal created_at page deterministically: every session exactly once."""
    ids = {(await new_session(store, created_at=BASE_TIME)).id for _ in range(10)}
    first = [s.id for s in await store.list_sessions()]
    assert first == [s.id for s in await store.list_sessions()], "order is not deterministic"
    paged: list[str] = []
    for offset in range(0, 10, 3):
        paged += [s.id for s in await store.list_sessions(limit=3, offset=offset)]
    assert paged == first
    assert set(paged) == ids


@check("delete_session_cascades")
async def _delete_cascades(store: SessionStore) -> None:
    """delete_session removes the session, its runs and its events, and nothing else."""
    gone = await new_session(store)
    kept = await new_session(store)
    gone_run, kept_run = make_run(gone), make_run(kept)
    await store.save_run(gone_run)
    await store.save_run(kept_run)
    await append_many(store, gone.id, 3, run_id=gone_run.id)
    await append_many(store, kept.id, 2, run_id=kept_run.id)
    await store.delete_session(gone.id)
    with expect_asm_error(ErrorCode.SESSION_NOT_FOUND):
        await store.get_session(gone.id)
    with expect_asm_error(ErrorCode.RUN_NOT_FOUND):
        await store.get_run(gone_run.id)
    assert await store.list_runs(gone.id) == []
    assert await store.get_events(gone.id) == []
    assert await store.get_latest_sequence(gone.id) == 0
    assert (await store.get_session(kept.id)).id == kept.id
    assert (await store.get_run(kept_run.id)).id == kept_run.id
    assert [e.sequence_number for e in await store.get_events(kept.id)] == [1, 2]
    assert [s.id for s in await store.list_sessions()] == [kept.id]


@check("delete_session_idempotent")
async def _delete_idempotent(store: SessionStore) -> None:
    """Deleting twice, or deleting an unknown id, is not an error."""
    session = await new_session(store)
    await store.delete_session(session.id)
    await store.delete_session(session.id)
    await store.delete_session("ses_never_existed")
    assert await store.list_sessions() == []


@check("delete_session_resets_sequence")
async def _delete_resets_sequence(store: SessionStore) -> None:
    """After a delete, a session saved again under the same id numbers its events from 1."""
    session = await new_session(store)
    await append_many(store, session.id, 3)
    await store.delete_session(session.id)
    await store.save_session(session)
    assert await store.get_events(session.id) == []
    assert (await store.append_event(make_event(session.id))).sequence_number == 1


@check("run_round_trip")
async def _run_round_trip(store: SessionStore) -> None:
    """A saved run reads back equal, every field included."""
    session = await new_session(store)
    run = make_run(
        session,
        status=_R.COMPLETED,
        input={"messages": [{"role": "user", "content": "héllo 👋"}]},
        output={"content": "done", "tool_calls": [{"name": "bash", "input": {"cmd": "ls"}}]},
        error={"code": "provider_error", "message": "x", "details": {}},
        token_usage=TokenUsage(
            input_tokens=10, output_tokens=5, cache_read_tokens=3, cache_creation_tokens=1
        ),
        turn_count=3,
        cost_usd=0.0123,
        metadata={"model": "m"},
        created_at=BASE_TIME,
        started_at=BASE_TIME + timedelta(seconds=1),
        ended_at=BASE_TIME + timedelta(seconds=2, microseconds=5),
    )
    await store.save_run(run)
    got = await store.get_run(run.id)
    assert got == run, f"run changed on round trip: {got!r} != {run!r}"
    assert got.token_usage.total_tokens == 15


@check("run_upsert_replaces")
async def _run_upsert(store: SessionStore) -> None:
    """Saving a run with an existing id replaces it (no duplicate)."""
    session = await new_session(store)
    run = make_run(session)
    await store.save_run(run)
    running = run.with_status(_R.RUNNING)
    await store.save_run(running)
    got = await store.get_run(run.id)
    assert got.status is _R.RUNNING
    assert got.started_at == running.started_at
    assert [r.id for r in await store.list_runs(session.id)] == [run.id]


@check("get_run_not_found")
async def _get_run_not_found(store: SessionStore) -> None:
    """get_run of an unknown id raises AsmError(run_not_found)."""
    with expect_asm_error(ErrorCode.RUN_NOT_FOUND):
        await store.get_run("run_does_not_exist")


async def _runs(store: SessionStore, statuses: list[RunStatus]) -> tuple[str, list[Run]]:
    session = await new_session(store)
    runs = [
        make_run(session, status=st, created_at=BASE_TIME + timedelta(seconds=i))
        for i, st in enumerate(statuses)
    ]
    for run in reversed(runs):
        await store.save_run(run)
    return session.id, runs


@check("list_runs_oldest_first")
async def _list_runs_order(store: SessionStore) -> None:
    """list_runs returns only the session's runs, oldest first; unknown session gives []."""
    session_id, runs = await _runs(store, [_R.PENDING] * 4)
    other = await new_session(store)
    await store.save_run(make_run(other))
    assert [r.id for r in await store.list_runs(session_id)] == [r.id for r in runs]
    assert await store.list_runs("ses_unknown") == []


@check("list_runs_filter_status_and_limit")
async def _list_runs_filters(store: SessionStore) -> None:
    """list_runs filters by status (enum or string) and caps with limit."""
    session_id, runs = await _runs(store, [_R.COMPLETED, _R.RUNNING, _R.COMPLETED, _R.FAILED, _R.COMPLETED])
    completed = [runs[0].id, runs[2].id, runs[4].id]
    assert [r.id for r in await store.list_runs(session_id, status=_R.COMPLETED)] == completed
    assert [r.id for r in await store.list_runs(session_id, status="completed", limit=2)] == completed[:2]
    assert [r.id for r in await store.list_runs(session_id, limit=1)] == [runs[0].id]
    assert await store.list_runs(session_id, status=_R.TIMEOUT) == []
    with expect_asm_error(ErrorCode.VALIDATION_ERROR):
        await store.list_runs(session_id, limit=0)
    with expect_asm_error(ErrorCode.INVALID_STATUS, ErrorCode.VALIDATION_ERROR):
        await store.list_runs(session_id, status="sleeping")


@check("get_active_run")
async def _active_run(store: SessionStore) -> None:
    """get_active_run is None without a running run, else the oldest running one."""
    session_id, _ = await _runs(store, [_R.COMPLETED, _R.PENDING])
    assert await store.get_active_run(session_id) is None
    assert await store.get_active_run("ses_unknown") is None
    second_id, more = await _runs(store, [_R.COMPLETED, _R.RUNNING, _R.RUNNING])
    active = await store.get_active_run(second_id)
    assert active is not None
    assert active.id == more[1].id
    await store.save_run(more[1].with_status(_R.COMPLETED))
    active = await store.get_active_run(second_id)
    assert active is not None
    assert active.id == more[2].id
    assert await store.get_active_run(session_id) is None


@check("use_after_close_raises_asm_error")
async def _use_after_close(store: SessionStore) -> None:
    """Reads and appends on a closed store raise a typed AsmError, never a driver exception."""
    session = await new_session(store)
    await store.close()
    for what, call in (
        ("get_session", lambda: store.get_session(session.id)),
        ("append_event", lambda: store.append_event(make_event(session.id, EventType.MESSAGE_SENT))),
    ):
        try:
            await call()
        except AsmError:
            continue
        except Exception as exc:
            raise AssertionError(
                f"{what} on a closed store raised {type(exc).__name__}, not AsmError"
            ) from exc
        raise AssertionError(f"{what} on a closed store succeeded")
