"""Pure domain core: models, state machines, capabilities, errors. No I/O."""

from ._base import new_id, utc_now
from .capability import Capability, CapabilityResolver, Manifest, NegotiationResult, Registry
from .enums import (
    CapabilityType,
    EventType,
    PermissionMode,
    RunStatus,
    SessionStatus,
)
from .errors import (
    AsmError,
    ConcurrencyError,
    ErrorCategory,
    ErrorCode,
    NotFoundError,
    OperationError,
    PolicyViolationError,
    ProviderError,
    ResourceError,
    StateError,
    StorageError,
    ToolError,
    ValidationError,
)
from .models import Event, Run, Session, TokenUsage

__all__ = (
    "AsmError",
    "Capability",
    "CapabilityResolver",
    "CapabilityType",
    "ConcurrencyError",
    "ErrorCategory",
    "ErrorCode",
    "Event",
    "EventType",
    "Manifest",
    "NegotiationResult",
    "NotFoundError",
    "OperationError",
    "PermissionMode",
    "PolicyViolationError",
    "ProviderError",
    "Registry",
    "ResourceError",
    "Run",
    "RunStatus",
    "Session",
    "SessionStatus",
    "StateError",
    "StorageError",
    "TokenUsage",
    "ToolError",
    "ValidationError",
    "new_id",
    "utc_now",
)
