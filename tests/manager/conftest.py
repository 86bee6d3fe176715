"""Fixtures for the SessionManager suite: the in-memory store and the ScriptedAdapter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agent_session_manager import InMemorySessionStore, SessionManager
from agent_session_manager.testing import ScriptedAdapter


@pytest.fixture
async def store() -> AsyncIterator[InMemorySessionStore]:
    async with InMemorySessionStore() as s:
        yield s


@pytest.fixture
def adapter() -> ScriptedAdapter:
    return ScriptedAdapter()


@pytest.fixture
def manager(store: InMemorySessionStore, adapter: ScriptedAdapter) -> SessionManager:
    return SessionManager(store, adapter)
