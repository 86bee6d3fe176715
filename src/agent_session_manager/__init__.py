"""agent-session-manager: sessions, runs and durable event logs over AI coding agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import (
    AsmError,
    Capability,
    CapabilityResolver,
    CapabilityType,
    ErrorCode,
    Event,
    EventType,
    Manifest,
    PermissionMode,
    Registry,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    TokenUsage,
)
from .manager import RunResult, SessionManager
from .ports import ArtifactStore, Emit, ProviderAdapter, ProviderEvent, ProviderResult, SessionStore
from .runtime import (
    ConcurrencyLimiter,
    ControlOperations,
    SessionServer,
    SessionServerStatus,
    SessionSupervisor,
    Subscription,
)
from .stores import InMemorySessionStore, SQLiteSessionStore, default_store_url, open_store

if TYPE_CHECKING:
    from .stores.postgres import PostgresSessionStore

__version__ = "0.1.0"

__all__ = (
    "ArtifactStore",
    "AsmError",
    "Capability",
    "ConcurrencyLimiter",
    "ControlOperations",
    "CapabilityResolver",
    "CapabilityType",
    "Emit",
    "ErrorCode",
    "Event",
    "EventType",
    "InMemorySessionStore",
    "Manifest",
    "PermissionMode",
    "PostgresSessionStore",
    "ProviderAdapter",
    "ProviderEvent",
    "ProviderResult",
    "Registry",
    "Run",
    "RunResult",
    "RunStatus",
    "SQLiteSessionStore",
    "Session",
    "SessionManager",
    "SessionServer",
    "SessionServerStatus",
    "SessionStatus",
    "SessionStore",
    "SessionSupervisor",
    "Subscription",
    "TokenUsage",
    "__version__",
    "default_store_url",
    "open_store",
)


def __getattr__(name: str) -> Any:
    if name == "PostgresSessionStore":
        from .stores.postgres import PostgresSessionStore

        return PostgresSessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
