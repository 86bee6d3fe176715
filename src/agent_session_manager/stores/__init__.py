"""Session store backends and ``open_store(url)``.

``PostgresSessionStore`` is imported lazily: it needs the ``postgres`` extra (psycopg).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._open import default_store_url, open_store
from .memory import InMemorySessionStore
from .sqlite import SQLiteSessionStore

if TYPE_CHECKING:
    from .postgres import PostgresSessionStore

__all__ = (
    "InMemorySessionStore",
    "PostgresSessionStore",
    "SQLiteSessionStore",
    "default_store_url",
    "open_store",
)


def __getattr__(name: str) -> Any:
    if name == "PostgresSessionStore":
        from .postgres import PostgresSessionStore

        return PostgresSessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
