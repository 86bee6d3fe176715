"""Fixtures for the store tests: one throwaway PostgreSQL server per test session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from agent_session_manager.testing.pgserver import PostgresServer


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server (fsync off: the tests kill clients, never the server).

    Skipped when the server binaries are missing, except in CI (env CI=true), where the
    Postgres tests must run and a missing server is a failure.
    """
    if not PostgresServer.available():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(
                "PostgreSQL server binaries (initdb, pg_ctl) not found; CI must run the postgres tests"
            )
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    server = PostgresServer(durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fresh_database(server: PostgresServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty database for one test."""
    yield from _fresh_database(pg_server)


@pytest.fixture(scope="module")
def pg_module_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a database shared by one test module (tests truncate what they need)."""
    yield from _fresh_database(pg_server)
