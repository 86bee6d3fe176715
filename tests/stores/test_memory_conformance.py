"""The store conformance suite against InMemorySessionStore, one pytest test per check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from agent_session_manager.core import AsmError, ErrorCode
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import CONFORMANCE_CHECKS, run_store_conformance

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("name", CONFORMANCE_CHECKS)
async def test_conformance(name: str) -> None:
    report = await run_store_conformance(InMemorySessionStore, only=[name])
    assert report.passed == (name,)


def test_suite_is_large_and_uniquely_named() -> None:
    assert len(CONFORMANCE_CHECKS) >= 45
    assert len(set(CONFORMANCE_CHECKS)) == len(CONFORMANCE_CHECKS)


async def test_async_factory_store_is_closed_after_each_check() -> None:
    made: list[InMemorySessionStore] = []

    async def make() -> InMemorySessionStore:
        made.append(InMemorySessionStore())
        return made[-1]

    names = ["session_round_trip", "sequence_starts_at_one_gapless"]
    report = await run_store_conformance(make, only=names)
    assert report.names == tuple(names)
    assert report.ok
    assert len(made) == 2
    assert made[0] is not made[1]
    for store in made:  # closed: further use is a typed error
        with pytest.raises(AsmError):
            await store.get_latest_sequence("ses_x")


async def test_context_manager_factory() -> None:
    entered: list[str] = []

    @asynccontextmanager
    async def make() -> AsyncIterator[InMemorySessionStore]:
        async with InMemorySessionStore() as store:
            entered.append("in")
            yield store
            entered.append("out")

    report = await run_store_conformance(make, only=["get_run_not_found", "async_context_manager"])
    assert report.ok
    assert entered == ["in", "out", "in", "out"]


class _ForgetfulStore(InMemorySessionStore):
    """A deliberately broken store: reports a wrong latest sequence."""

    async def get_latest_sequence(self, session_id: str) -> int:
        return 42


async def test_failures_are_collected_and_reported_by_name() -> None:
    report = await run_store_conformance(
        _ForgetfulStore,
        only=["get_latest_sequence_unknown_session", "session_round_trip", "sequence_starts_at_one_gapless"],
        raise_on_failure=False,
    )
    assert report.passed == ("session_round_trip",)
    assert [f.name for f in report.failures] == [
        "get_latest_sequence_unknown_session",
        "sequence_starts_at_one_gapless",
    ]
    assert all("AssertionError" in f.error for f in report.failures)
    with pytest.raises(AssertionError) as info:
        await run_store_conformance(_ForgetfulStore, only=["get_latest_sequence_unknown_session"])
    assert "get_latest_sequence_unknown_session" in str(info.value)


async def test_unknown_check_name_is_rejected() -> None:
    with pytest.raises(AsmError) as info:
        await run_store_conformance(InMemorySessionStore, only=["no_such_check"])
    assert info.value.code is ErrorCode.INVALID_INPUT


async def test_hanging_check_fails_by_timeout() -> None:
    class _NeverWakes(InMemorySessionStore):
        async def close(self) -> None:  # does not wake long-pollers; the suite must not hang
            self._closed_flag = True

    report = await run_store_conformance(
        _NeverWakes, only=["close_wakes_long_pollers"], raise_on_failure=False, check_timeout=0.5
    )
    assert [f.name for f in report.failures] == ["close_wakes_long_pollers"]
    assert "did not finish" in report.failures[0].error
