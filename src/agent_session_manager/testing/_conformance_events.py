"""Conformance checks for the event log: sequencing, idempotency, batches and queries."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any, cast

from ..core import ErrorCode, EventType
from ..ports import SessionStore
from ._conformance_base import (
    BASE_TIME,
    append_many,
    check,
    expect_asm_error,
    make_event,
    make_run,
    new_session,
    seqs,
)

__all__ = ()

_E = EventType


@check("sequence_starts_at_one_gapless")
async def _sequence_gapless(store: SessionStore) -> None:
    """Appends get 1, 2, 3, ... and get_latest_sequence follows."""
    session = await new_session(store)
    assert await store.get_latest_sequence(session.id) == 0
    stored = await append_many(store, session.id, 7)
    assert seqs(stored) == list(range(1, 8))
    assert await store.get_latest_sequence(session.id) == 7
    assert seqs(await store.get_events(session.id)) == list(range(1, 8))


@check("sequence_independent_per_session")
async def _sequence_per_session(store: SessionStore) -> None:
    """Each session numbers its own events from 1, even when appends interleave."""
    a, b = await new_session(store), await new_session(store)
    got: dict[str, list[int | None]] = {a.id: [], b.id: []}
    for i in range(6):
        target = a.id if i % 3 else b.id
        stored = await store.append_event(make_event(target, offset_s=i))
        got[target].append(stored.sequence_number)
    assert got[a.id] == [1, 2, 3, 4]
    assert got[b.id] == [1, 2]
    assert await store.get_latest_sequence(a.id) == 4
    assert await store.get_latest_sequence(b.id) == 2


@check("caller_sequence_number_ignored")
async def _caller_sequence_ignored(store: SessionStore) -> None:
    """A caller-supplied sequence_number is replaced by the store's."""
    session = await new_session(store)
    first = await store.append_event(make_event(session.id, sequence_number=99))
    second = await store.append_event(make_event(session.id, sequence_number=1))
    assert (first.sequence_number, second.sequence_number) == (1, 2)
    assert seqs(await store.get_events(session.id)) == [1, 2]


@check("append_returns_stored_event")
async def _append_returns_event(store: SessionStore) -> None:
    """append_event returns the event with its fields unchanged and a sequence number."""
    session = await new_session(store)
    run = make_run(session)
    await store.save_run(run)
    event = make_event(session.id, _E.TOOL_CALL_STARTED, run_id=run.id, provider="claude", data={"tool": "x"})
    stored = await store.append_event(event)
    assert stored.sequence_number == 1
    assert stored.model_dump(exclude={"sequence_number"}) == event.model_dump(exclude={"sequence_number"})
    assert (await store.get_events(session.id)) == [stored]


@check("append_idempotent_by_id")
async def _append_idempotent(store: SessionStore) -> None:
    """Re-appending a stored id returns the stored event (original sequence) and appends nothing."""
    session = await new_session(store)
    first = await store.append_event(make_event(session.id, data={"v": "original"}))
    await store.append_event(make_event(session.id))
    again = await store.append_event(
        first.model_copy(update={"data": {"v": "changed"}, "sequence_number": None})
    )
    assert again.sequence_number == 1
    assert again.id == first.id
    assert again.data == {"v": "original"}
    assert await store.get_latest_sequence(session.id) == 2
    assert [e.id for e in await store.get_events(session.id)].count(first.id) == 1
    nxt = await store.append_event(make_event(session.id))
    assert nxt.sequence_number == 3, "a duplicate append consumed a sequence number"


@check("append_events_batch_in_order")
async def _batch_in_order(store: SessionStore) -> None:
    """append_events stores a batch in order with consecutive numbers after the current tail."""
    session = await new_session(store)
    await append_many(store, session.id, 2)
    batch = [make_event(session.id, offset_s=10 + i, data={"i": i}) for i in range(5)]
    stored = await store.append_events(batch)
    assert [e.id for e in stored] == [e.id for e in batch]
    assert seqs(stored) == [3, 4, 5, 6, 7]
    listed = await store.get_events(session.id, after=2)
    assert [e.id for e in listed] == [e.id for e in batch]
    assert [e.data["i"] for e in listed] == list(range(5))


@check("append_events_with_stored_id")
async def _batch_with_stored(store: SessionStore) -> None:
    """A batch containing an already-stored id returns that event as stored and stays gapless."""
    session = await new_session(store)
    old = await store.append_event(make_event(session.id))
    new1, new2 = make_event(session.id), make_event(session.id)
    stored = await store.append_events([new1, old.model_copy(update={"sequence_number": None}), new2])
    assert [e.id for e in stored] == [new1.id, old.id, new2.id]
    assert seqs(stored) == [2, 1, 3]
    assert seqs(await store.get_events(session.id)) == [1, 2, 3]


@check("append_events_duplicate_within_batch")
async def _batch_self_duplicate(store: SessionStore) -> None:
    """An id repeated inside one batch is stored once; both positions return the stored event."""
    session = await new_session(store)
    event = make_event(session.id)
    stored = await store.append_events([event, event, make_event(session.id)])
    assert seqs(stored) == [1, 1, 2]
    assert await store.get_latest_sequence(session.id) == 2


@check("append_events_empty_batch")
async def _batch_empty(store: SessionStore) -> None:
    """An empty batch returns [] and stores nothing."""
    session = await new_session(store)
    assert await store.append_events([]) == []
    assert await store.get_latest_sequence(session.id) == 0
    assert (await store.append_event(make_event(session.id))).sequence_number == 1


@check("append_events_multi_session_batch")
async def _batch_multi_session(store: SessionStore) -> None:
    """A batch may span sessions; each session's numbers continue its own sequence."""
    a, b = await new_session(store), await new_session(store)
    await append_many(store, b.id, 1)
    stored = await store.append_events([make_event(a.id), make_event(b.id), make_event(a.id)])
    assert seqs(stored) == [1, 2, 2]
    assert seqs(await store.get_events(a.id)) == [1, 2]


@check("append_events_atomic_on_bad_item")
async def _batch_atomic(store: SessionStore) -> None:
    """A batch with an invalid item raises AsmError and stores none of the batch."""
    session = await new_session(store)
    await append_many(store, session.id, 1)
    bad = cast(Any, {"type": "message_sent", "session_id": session.id})
    with expect_asm_error():
        await store.append_events([make_event(session.id), make_event(session.id), bad])
    assert await store.get_latest_sequence(session.id) == 1
    assert seqs(await store.get_events(session.id)) == [1]
    assert (await store.append_event(make_event(session.id))).sequence_number == 2


@check("event_json_round_trip")
async def _event_json(store: SessionStore) -> None:
    """Data and metadata round-trip: unicode, nesting, numbers, booleans, nulls, empties."""
    session = await new_session(store)
    data: dict[str, Any] = {
        "text": 'héllo wörld — 你好 🌍 \u2028 "quoted" \\ back\nslash\ttab',
        "nested": {"a": [1, [2, [3, {"b": None}]]], "empty_list": [], "empty_dict": {}},
        "numbers": [0, -1, 2**53, 1.5, -0.25, 1e-9, 12345678.875],
        "flags": [True, False, None],
        "ключ": "значение",
        "": "empty key",
    }
    metadata = {"raw": {"line": '{"x": 1}'}, "tags": ["a", "b"]}
    stored = await store.append_event(make_event(session.id, data=data, metadata=metadata, provider="codex"))
    (got,) = await store.get_events(session.id)
    assert got.data == data
    assert got.metadata == metadata
    assert got.provider == "codex"
    assert got == stored


@check("event_timestamps_preserved")
async def _event_timestamps(store: SessionStore) -> None:
    """Timestamps come back timezone-aware and equal (microseconds, non-UTC offsets included)."""
    session = await new_session(store)
    ist = timezone(timedelta(hours=5, minutes=30))
    stamps = [
        BASE_TIME,
        BASE_TIME.astimezone(ist) + timedelta(microseconds=1),
        BASE_TIME.replace(year=1999, microsecond=999999),
    ]
    for ts in stamps:
        await store.append_event(make_event(session.id, timestamp=ts))
    got = await store.get_events(session.id)
    assert [e.timestamp for e in got] == stamps
    assert all(e.timestamp.tzinfo is not None for e in got)


@check("get_events_unknown_session_empty")
async def _events_unknown(store: SessionStore) -> None:
    """get_events on an unknown session returns [] and its latest sequence is 0."""
    assert await store.get_events("ses_unknown") == []
    assert await store.get_events("ses_unknown", after=5, limit=3) == []
    assert await store.get_latest_sequence("ses_unknown") == 0


@check("get_events_after_strict")
async def _events_after(store: SessionStore) -> None:
    """After is a strict lower bound."""
    session = await new_session(store)
    await append_many(store, session.id, 6)
    assert seqs(await store.get_events(session.id, after=0)) == [1, 2, 3, 4, 5, 6]
    assert seqs(await store.get_events(session.id, after=3)) == [4, 5, 6]
    assert await store.get_events(session.id, after=6) == []
    assert await store.get_events(session.id, after=100) == []


@check("get_events_before_strict")
async def _events_before(store: SessionStore) -> None:
    """Before is a strict upper bound, combinable with after."""
    session = await new_session(store)
    await append_many(store, session.id, 6)
    assert seqs(await store.get_events(session.id, before=3)) == [1, 2]
    assert await store.get_events(session.id, before=1) == []
    assert seqs(await store.get_events(session.id, after=2, before=5)) == [3, 4]
    assert await store.get_events(session.id, after=3, before=4) == []
    assert seqs(await store.get_events(session.id, before=100)) == [1, 2, 3, 4, 5, 6]


@check("get_events_limit_pages")
async def _events_limit(store: SessionStore) -> None:
    """Limit caps a page; walking pages by cursor visits every event once."""
    session = await new_session(store)
    await append_many(store, session.id, 7)
    assert seqs(await store.get_events(session.id, limit=2)) == [1, 2]
    assert seqs(await store.get_events(session.id, after=5, limit=10)) == [6, 7]
    walked: list[int | None] = []
    cursor = 0
    while page := await store.get_events(session.id, after=cursor, limit=3):
        assert len(page) <= 3
        walked += seqs(page)
        cursor = page[-1].sequence_number or 0
    assert walked == list(range(1, 8))


@check("get_events_filter_run_id")
async def _events_run(store: SessionStore) -> None:
    """run_id keeps only that run's events."""
    session = await new_session(store)
    r1, r2 = make_run(session), make_run(session)
    await store.save_run(r1)
    await store.save_run(r2)
    for i in range(6):
        await store.append_event(make_event(session.id, run_id=(r1 if i % 2 else r2).id))
    assert seqs(await store.get_events(session.id, run_id=r1.id)) == [2, 4, 6]
    assert seqs(await store.get_events(session.id, run_id=r2.id)) == [1, 3, 5]
    assert await store.get_events(session.id, run_id="run_other") == []


@check("get_events_filter_types")
async def _events_types(store: SessionStore) -> None:
    """Types accepts EventType members and strings; unknown types are rejected."""
    session = await new_session(store)
    kinds = [_E.RUN_STARTED, _E.MESSAGE_STREAMED, _E.TOOL_CALL_STARTED, _E.MESSAGE_STREAMED, _E.RUN_COMPLETED]
    for kind in kinds:
        await store.append_event(make_event(session.id, kind))
    assert seqs(await store.get_events(session.id, types=[_E.MESSAGE_STREAMED])) == [2, 4]
    assert seqs(await store.get_events(session.id, types=["message_streamed"])) == [2, 4]
    assert seqs(await store.get_events(session.id, types=["run_started", _E.RUN_COMPLETED])) == [1, 5]
    assert await store.get_events(session.id, types=[_E.POLICY_VIOLATION]) == []
    with expect_asm_error(ErrorCode.INVALID_EVENT_TYPE, ErrorCode.VALIDATION_ERROR):
        await store.get_events(session.id, types=["not_a_type"])


@check("get_events_filter_since")
async def _events_since(store: SessionStore) -> None:
    """Since keeps events with timestamp >= since (inclusive), whatever their order."""
    session = await new_session(store)
    for offset in (0, 10, 5, 20):
        await store.append_event(make_event(session.id, offset_s=offset))
    assert seqs(await store.get_events(session.id, since=BASE_TIME + timedelta(seconds=5))) == [2, 3, 4]
    assert seqs(await store.get_events(session.id, since=BASE_TIME + timedelta(seconds=6))) == [2, 4]
    other_tz = (BASE_TIME + timedelta(seconds=20)).astimezone(timezone(timedelta(hours=-7)))
    assert seqs(await store.get_events(session.id, since=other_tz)) == [4]
    assert await store.get_events(session.id, since=BASE_TIME + timedelta(days=1)) == []


@check("get_events_combined_filters")
async def _events_combined(store: SessionStore) -> None:
    """after, before, run_id, types, since and limit combine with AND; limit counts matches."""
    session = await new_session(store)
    run = make_run(session)
    await store.save_run(run)
    for i in range(12):
        kind = _E.MESSAGE_STREAMED if i % 2 == 0 else _E.TOKEN_USAGE_UPDATED
        await store.append_event(make_event(session.id, kind, run_id=run.id if i % 3 else None, offset_s=i))
    # run events: seq 2,3,5,6,8,9,11,12; of those streamed (odd seq): 3,5,9,11
    got = await store.get_events(session.id, run_id=run.id, types=[_E.MESSAGE_STREAMED])
    assert seqs(got) == [3, 5, 9, 11]
    got = await store.get_events(session.id, after=3, run_id=run.id, types=["message_streamed"], limit=2)
    assert seqs(got) == [5, 9]
    got = await store.get_events(
        session.id,
        after=1,
        before=11,
        run_id=run.id,
        types=[_E.MESSAGE_STREAMED],
        since=BASE_TIME + timedelta(seconds=4),
    )
    assert seqs(got) == [5, 9]


@check("get_events_invalid_arguments")
async def _events_invalid(store: SessionStore) -> None:
    """Negative cursors, limit < 1 and negative wait_timeout raise AsmError(validation_error)."""
    session = await new_session(store)
    await append_many(store, session.id, 1)
    bad: list[dict[str, Any]] = [
        {"after": -1},
        {"before": -1},
        {"limit": 0},
        {"limit": -3},
        {"wait_timeout": -0.5},
        {"wait_timeout": float("nan")},
    ]
    for kwargs in bad:
        try:
            with expect_asm_error(ErrorCode.VALIDATION_ERROR):
                await store.get_events(session.id, **kwargs)
        except AssertionError as exc:
            raise AssertionError(f"get_events(**{kwargs!r}): {exc}") from exc


@check("get_latest_sequence_unknown_session")
async def _latest_unknown(store: SessionStore) -> None:
    """get_latest_sequence is 0 for unknown sessions and sessions without events."""
    session = await new_session(store)
    assert await store.get_latest_sequence("ses_unknown") == 0
    assert await store.get_latest_sequence(session.id) == 0
