"""agent-session-manager: sessions, runs and durable event logs over AI coding agents."""

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
from .ports import ArtifactStore, Emit, ProviderAdapter, ProviderEvent, ProviderResult, SessionStore
from .manager import RunResult, SessionManager
from .stores import InMemorySessionStore

__version__ = "0.1.0"

__all__ = (
    "ArtifactStore",
    "AsmError",
    "Capability",
    "CapabilityResolver",
    "CapabilityType",
    "Emit",
    "ErrorCode",
    "Event",
    "EventType",
    "InMemorySessionStore",
    "Manifest",
    "PermissionMode",
    "ProviderAdapter",
    "ProviderEvent",
    "ProviderResult",
    "Registry",
    "Run",
    "RunResult",
    "RunStatus",
    "Session",
    "SessionManager",
    "SessionStatus",
    "SessionStore",
    "TokenUsage",
    "__version__",
)
