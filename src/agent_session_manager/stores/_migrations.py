"""Schema versioning shared by the SQL backends, and the SQLite schema itself.

Every SQL store keeps a ``schema_version`` table holding one row per applied migration.
Migrations are forward-only, numbered from 1, and applied on open inside one write
transaction (SQLite: ``BEGIN IMMEDIATE``), so several processes opening the same new
database at once serialise on the lock and all but the first find nothing to do. A
database whose version is newer than the code raises ``AsmError(storage_error)`` rather
than being touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..core import AsmError, ErrorCode

__all__ = ("SQLITE_MIGRATIONS", "Migration", "check_schema_version", "pending_migrations")


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of a schema: ``statements`` run in order inside the open transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


def check_schema_version(current: int, migrations: Sequence[Migration], *, where: str) -> None:
    """Raise ``storage_error`` when the stored schema is newer than the newest migration known."""
    supported = migrations[-1].version if migrations else 0
    if current > supported:
        raise AsmError(
            ErrorCode.STORAGE_ERROR,
            f"database schema version {current} is newer than this code supports ({supported}); "
            "upgrade agent-session-manager",
            {"schema_version": current, "supported_version": supported, "database": where},
        )


def pending_migrations(current: int, migrations: Sequence[Migration]) -> list[Migration]:
    """The migrations to apply to a schema at version ``current`` (after checking it)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise AsmError(ErrorCode.INTERNAL_ERROR, f"migrations must be numbered 1..n, got {versions}")
    return [m for m in migrations if m.version > current]


#: The SQLite schema. Bodies are the model's JSON; queried fields are duplicated into columns.
#: Times are integer microseconds since the Unix epoch (exact for ``datetime``).
SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "sessions, runs and the per-session event log",
        (
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                agent_id TEXT NOT NULL,
                status TEXT NOT NULL,
                tags TEXT NOT NULL,
                created_us INTEGER NOT NULL,
                body TEXT NOT NULL
            )""",
            "CREATE INDEX sessions_by_created ON sessions (created_us DESC, id DESC)",
            """CREATE TABLE runs (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                status TEXT NOT NULL,
                created_us INTEGER NOT NULL,
                body TEXT NOT NULL
            )""",
            "CREATE INDEX runs_by_session ON runs (session_id, created_us, id)",
            """CREATE TABLE events (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL,
                sequence_number INTEGER NOT NULL,
                run_id TEXT,
                type TEXT NOT NULL,
                ts_us INTEGER NOT NULL,
                body TEXT NOT NULL,
                UNIQUE (session_id, sequence_number)
            )""",
            "CREATE INDEX events_by_run ON events (run_id, sequence_number)",
        ),
    ),
)
