"""Session and run state machines, checked against the table in DESIGN.md (written out here)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_session_manager.core import AsmError, ErrorCode, Run, RunStatus, Session, SessionStatus

S = SessionStatus
R = RunStatus

# pending → active; active ↔ paused; pending|active|paused → completed | failed | cancelled.
SESSION_ALLOWED = {
    (S.PENDING, S.ACTIVE),
    (S.ACTIVE, S.PAUSED),
    (S.PAUSED, S.ACTIVE),
    *((src, dst) for src in (S.PENDING, S.ACTIVE, S.PAUSED) for dst in (S.COMPLETED, S.FAILED, S.CANCELLED)),
}
# pending → running; pending|running → completed | failed | cancelled | timeout.
RUN_ALLOWED = {
    (R.PENDING, R.RUNNING),
    *(
        (src, dst)
        for src in (R.PENDING, R.RUNNING)
        for dst in (R.COMPLETED, R.FAILED, R.CANCELLED, R.TIMEOUT)
    ),
}
SESSION_TERMINAL = {S.COMPLETED, S.FAILED, S.CANCELLED}
RUN_TERMINAL = {R.COMPLETED, R.FAILED, R.CANCELLED, R.TIMEOUT}


def test_terminal_flags() -> None:
    assert {s for s in S if s.is_terminal} == SESSION_TERMINAL
    assert {r for r in R if r.is_terminal} == RUN_TERMINAL


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(S, S)))
def test_every_session_pair(src: SessionStatus, dst: SessionStatus) -> None:
    session = Session(agent_id="a", status=src)
    before = session.model_dump()
    if (src, dst) in SESSION_ALLOWED:
        moved = session.with_status(dst)
        assert moved.status is dst
        assert moved.id == session.id
        assert moved.updated_at >= session.updated_at
        # the string value is accepted too
        assert session.with_status(dst.value).status is dst
    else:
        with pytest.raises(AsmError) as info:
            session.with_status(dst)
        assert info.value.code is ErrorCode.INVALID_TRANSITION
        assert info.value.details == {"from": src.value, "to": dst.value, "entity": "session"}
    assert session.model_dump() == before
    assert session.status is src


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(R, R)))
def test_every_run_pair(src: RunStatus, dst: RunStatus) -> None:
    run = Run(session_id="ses_1", status=src)
    before = run.model_dump()
    if (src, dst) in RUN_ALLOWED:
        moved = run.with_status(dst)
        assert moved.status is dst
        assert moved.id == run.id
        assert run.with_status(dst.value).status is dst
    else:
        with pytest.raises(AsmError) as info:
            run.with_status(dst)
        assert info.value.code is ErrorCode.INVALID_TRANSITION
        assert info.value.details == {"from": src.value, "to": dst.value, "entity": "run"}
    assert run.model_dump() == before


@pytest.mark.parametrize("bad", ["", "ACTIVE ", "sleeping", "done"])
def test_invalid_status_string(bad: str) -> None:
    with pytest.raises(AsmError) as info:
        Session(agent_id="a").with_status(bad)
    assert info.value.code is ErrorCode.INVALID_STATUS
    with pytest.raises(AsmError) as info:
        Run(session_id="ses_1").with_status(bad)
    assert info.value.code is ErrorCode.INVALID_STATUS


def test_run_timestamps_on_normal_path() -> None:
    run = Run(session_id="ses_1")
    assert run.started_at is None
    assert run.ended_at is None
    running = run.with_status(R.RUNNING)
    assert running.started_at is not None
    assert running.started_at >= run.created_at
    assert running.ended_at is None
    done = running.with_status(R.COMPLETED, output={"content": "ok"}, turn_count=2)
    assert done.started_at == running.started_at
    assert done.ended_at is not None
    assert done.ended_at >= done.started_at
    assert done.output == {"content": "ok"}
    assert done.turn_count == 2


def test_run_cancelled_before_start_has_end_but_no_start() -> None:
    cancelled = Run(session_id="ses_1").with_status(R.CANCELLED)
    assert cancelled.started_at is None
    assert cancelled.ended_at is not None


def test_explicit_timestamps_are_kept() -> None:
    run = Run(session_id="ses_1")
    t = run.created_at + timedelta(seconds=5)
    assert run.with_status(R.RUNNING, started_at=t).started_at == t
    assert run.with_status(R.FAILED, ended_at=t).ended_at == t


def test_with_status_validates_updates() -> None:
    with pytest.raises(AsmError) as info:
        Run(session_id="ses_1").with_status(R.RUNNING, turn_count=-1)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


def test_with_status_updates_cannot_override_status() -> None:
    pending = Run(session_id="ses_1")
    with pytest.raises(TypeError):
        pending.with_status(R.RUNNING, status=R.COMPLETED)  # type: ignore[misc]
    with pytest.raises(AsmError) as info:
        pending.with_status(R.RUNNING, id="run_other")
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert pending.status is R.PENDING


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list(S)), max_size=12), st.sampled_from(list(S)))
def test_session_random_walk(steps: list[SessionStatus], start: SessionStatus) -> None:
    session = Session(agent_id="walker", status=start)
    for target in steps:
        allowed = (session.status, target) in SESSION_ALLOWED
        if session.status in SESSION_TERMINAL:
            assert not allowed
        if allowed:
            nxt = session.with_status(target)
            assert nxt.status is target
            assert nxt.model_dump(exclude={"status", "updated_at"}) == session.model_dump(
                exclude={"status", "updated_at"}
            )
            session = nxt
        else:
            snapshot = session.model_dump()
            with pytest.raises(AsmError) as info:
                session.with_status(target)
            assert info.value.code is ErrorCode.INVALID_TRANSITION
            assert session.model_dump() == snapshot
    if session.status in SESSION_TERMINAL:
        for target in S:
            with pytest.raises(AsmError):
                session.with_status(target)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(list(R)), max_size=10))
def test_run_random_walk(steps: list[RunStatus]) -> None:
    run = Run(session_id="ses_walk")
    was_running = False
    for target in steps:
        allowed = (run.status, target) in RUN_ALLOWED
        if run.status in RUN_TERMINAL:
            assert not allowed
        if not allowed:
            snapshot = run.model_dump()
            with pytest.raises(AsmError) as info:
                run.with_status(target)
            assert info.value.code is ErrorCode.INVALID_TRANSITION
            assert run.model_dump() == snapshot
            continue
        previous = run
        run = run.with_status(target)
        assert run.status is target
        if target is R.RUNNING:
            was_running = True
            assert run.started_at is not None
        else:
            assert run.started_at == previous.started_at
    # invariants of the final state
    assert (run.started_at is not None) == was_running
    assert (run.ended_at is not None) == (run.status in RUN_TERMINAL)
    if run.started_at is not None and run.ended_at is not None:
        assert run.ended_at >= run.started_at
