"""The SessionServer's transcript cache: O(new events) reads, correctness, invalidation."""

from __future__ import annotations

import itertools

import pytest

from agent_session_manager.core import AsmError, ErrorCode
from agent_session_manager.core.transcript import build_transcript
from agent_session_manager.runtime import SessionServer
from agent_session_manager.testing import ScriptedAdapter

from ._helpers import CountingStore

pytestmark = pytest.mark.anyio


def full_reads(store: CountingStore) -> list[tuple[int | None, str | None, int]]:
    return [r for r in store.reads if r[0] is None and r[1] is None]


def cursor_reads(store: CountingStore) -> list[tuple[int | None, str | None, int]]:
    return [r for r in store.reads if r[0] is not None]


async def test_replay_reads_only_new_events_per_run() -> None:
    store = CountingStore()
    adapter = ScriptedAdapter()
    async with SessionServer(
        store, adapter, session_opts={"agent_id": "t"}, default_execute_opts={"continuation": "replay"}
    ) as server:
        seen_before: list[int] = []
        store.reads.clear()
        for i in range(6):
            seen_before.append(await store.get_latest_sequence(server.session_id))
            await server.execute_run(f"turn {i}")
        total = await store.get_latest_sequence(server.session_id)
        cache = server.transcript_cache
        assert cache is not None
        assert cache.full_reads == 1
        assert cache.incremental_reads == 5
    # One full read (the first continuation run); every later run read only what was new.
    assert len(full_reads(store)) == 1
    increments = cursor_reads(store)
    assert [after for after, _, _ in increments] == seen_before[:-1]
    new_per_run = [b - a for a, b in itertools.pairwise(seen_before)]
    assert [n for _, _, n in increments] == new_per_run
    assert sum(n for _, _, n in store.reads) < total  # far less than re-reading the log each run


async def test_cached_transcript_equals_a_fresh_build() -> None:
    store = CountingStore()
    adapter = ScriptedAdapter()
    async with SessionServer(
        store, adapter, session_opts={"agent_id": "t"}, default_execute_opts={"continuation": "replay"}
    ) as server:
        for i in range(4):
            await server.execute_run(f"question {i}")
        events = await store.get_events(server.session_id)
    last_call = adapter.calls[-1]
    passed = last_call.context["transcript"]
    # What the 4th run saw = a transcript built from the log as it was when that run started.
    start_seq = min(e.sequence_number or 0 for e in events if e.run_id == last_call.run_id)
    expected = build_transcript(
        [e for e in events if (e.sequence_number or 0) < start_seq], session_id=server.session_id
    )
    assert passed["messages"] == expected.model_dump(mode="json")["messages"]
    contents = [m["content"] for m in passed["messages"]]
    assert "question 0" in contents
    assert "question 2" in contents
    assert "Hello from the scripted provider." in contents


async def test_continuation_limits_apply_to_the_copy_passed_to_the_run() -> None:
    adapter = ScriptedAdapter()
    async with SessionServer(
        CountingStore(),
        adapter,
        session_opts={"agent_id": "t"},
        default_execute_opts={"continuation": "replay", "continuation_opts": {"max_messages": 2}},
    ) as server:
        for i in range(4):
            await server.execute_run(f"q{i}")
        cache = server.transcript_cache
        assert cache is not None
        assert cache.transcript is not None
        assert len(cache.transcript.messages) > 2  # the cache itself stays whole
    assert len(adapter.calls[-1].context["transcript"]["messages"]) == 2


async def test_store_read_error_invalidates_and_next_run_rebuilds() -> None:
    store = CountingStore()
    adapter = ScriptedAdapter()
    async with SessionServer(
        store, adapter, session_opts={"agent_id": "t"}, default_execute_opts={"continuation": "replay"}
    ) as server:
        await server.execute_run("one")
        await server.execute_run("two")
        store.fail_next_incremental_read = True
        result = await server.execute_run("three")  # falls back to the manager's full read
        cache = server.transcript_cache
        assert cache is not None
        assert cache.transcript is None  # invalidated
        await server.execute_run("four")
        assert cache.full_reads == 2  # rebuilt once
    assert result.output["content"]
    contents = [m["content"] for m in adapter.calls[2].context["transcript"]["messages"]]
    assert "two" in contents


async def test_runs_without_continuation_do_not_touch_the_cache() -> None:
    store = CountingStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "t"}) as server:
        await server.execute_run("plain")
        cache = server.transcript_cache
        assert cache is not None
        assert cache.full_reads == 0
        assert cache.transcript is None
    assert full_reads(store) == []


async def test_unknown_continuation_opts_fail_the_run_cleanly() -> None:
    store = CountingStore()
    async with SessionServer(store, ScriptedAdapter(), session_opts={"agent_id": "t"}) as server:
        with pytest.raises(AsmError) as info:
            await server.execute_run("x", continuation="replay", continuation_opts={"bogus": 1})
        assert info.value.code is ErrorCode.VALIDATION_ERROR
        runs = await store.list_runs(server.session_id)
    assert runs[0].status.value == "failed"
