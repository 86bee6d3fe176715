"""The store conformance suite against PostgresSessionStore on a real server."""

from __future__ import annotations

import psycopg
import pytest

from agent_session_manager.stores.postgres import PostgresSessionStore
from agent_session_manager.testing.conformance import CONFORMANCE_CHECKS, run_store_conformance

pytestmark = [pytest.mark.postgres, pytest.mark.anyio]


@pytest.fixture(scope="module")
def migrated_url(pg_module_url: str) -> str:
    # Create the schema once; each check then starts from truncated tables.
    import anyio

    async def migrate() -> None:
        store = await PostgresSessionStore.connect(pg_module_url)
        await store.close()

    anyio.run(migrate)
    return pg_module_url


@pytest.mark.parametrize("name", CONFORMANCE_CHECKS)
async def test_conformance(name: str, migrated_url: str) -> None:
    async def make_store() -> PostgresSessionStore:
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            await conn.execute("TRUNCATE sessions, runs, events, session_counters")
        return await PostgresSessionStore.connect(migrated_url)

    await run_store_conformance(make_store, only=[name], check_timeout=60)
