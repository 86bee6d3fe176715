"""SQLiteSessionStore passes every check of the store conformance suite."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from agent_session_manager.stores.sqlite import SQLiteSessionStore
from agent_session_manager.testing import CONFORMANCE_CHECKS, run_store_conformance

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("name", CONFORMANCE_CHECKS)
async def test_sqlite_conformance(name: str, tmp_path: Path) -> None:
    counter = itertools.count()

    def make_store() -> SQLiteSessionStore:
        return SQLiteSessionStore(tmp_path / f"store-{next(counter)}.db")

    await run_store_conformance(make_store, only=[name])
