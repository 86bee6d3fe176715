"""Runtime tests reuse the stores' throwaway PostgreSQL fixtures."""

from tests.stores.conftest import pg_server, pg_url

__all__ = ("pg_server", "pg_url")
