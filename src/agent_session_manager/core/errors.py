"""The one error tree of agent-session-manager.

Every failure the library reports is an :class:`AsmError` carrying an :class:`ErrorCode`,
a human message and a JSON-safe ``details`` dict. Constructing ``AsmError(code, ...)``
returns an instance of the category subclass for that code, so callers may catch either
the root or a category::

    AsmError
    ├── ValidationError      validation_error, invalid_input, missing_required_field, invalid_format
    ├── StateError           invalid_status, invalid_transition, invalid_event_type, ...
    ├── ResourceError        not_found, session_not_found, run_not_found, already_exists, ...
    │   └── NotFoundError    not_found, session_not_found, run_not_found, capability_not_found
    ├── ProviderError        provider_error, provider_unavailable, provider_rate_limited, ...
    ├── StorageError         storage_error, storage_connection_failed, storage_write_failed, ...
    ├── OperationError       timeout, cancelled, policy_violation, internal_error, unknown_error
    │   └── PolicyViolationError   policy_violation
    ├── ConcurrencyError     max_sessions_exceeded, max_runs_exceeded, capability_not_supported, ...
    └── ToolError            tool_error, tool_not_found, tool_execution_failed, ...

``AsmError.retryable`` is true exactly for provider_timeout, provider_rate_limited,
provider_unavailable, storage_connection_failed and timeout. Library code translates
driver and OS exceptions at its boundary with ``raise AsmError(...) from exc``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

__all__ = (
    "RETRYABLE_CODES",
    "AsmError",
    "ConcurrencyError",
    "ErrorCategory",
    "ErrorCode",
    "NotFoundError",
    "OperationError",
    "PolicyViolationError",
    "ProviderError",
    "ResourceError",
    "StateError",
    "StorageError",
    "ToolError",
    "ValidationError",
)


class ErrorCategory(StrEnum):
    """The family an :class:`ErrorCode` belongs to."""

    VALIDATION = "validation"
    STATE = "state"
    RESOURCE = "resource"
    PROVIDER = "provider"
    STORAGE = "storage"
    RUNTIME = "runtime"
    CONCURRENCY = "concurrency"
    TOOL = "tool"


class ErrorCode(StrEnum):
    """The 43 error codes of the anchor taxonomy."""

    VALIDATION_ERROR = "validation_error"
    INVALID_INPUT = "invalid_input"
    MISSING_REQUIRED_FIELD = "missing_required_field"
    INVALID_FORMAT = "invalid_format"
    INVALID_STATUS = "invalid_status"
    INVALID_TRANSITION = "invalid_transition"
    INVALID_EVENT_TYPE = "invalid_event_type"
    INVALID_CAPABILITY_TYPE = "invalid_capability_type"
    MISSING_REQUIRED_CAPABILITY = "missing_required_capability"
    STREAM_CLOSED = "stream_closed"
    CONTEXT_MISMATCH = "context_mismatch"
    INVALID_CURSOR = "invalid_cursor"
    SESSION_MISMATCH = "session_mismatch"
    RUN_MISMATCH = "run_mismatch"
    NOT_FOUND = "not_found"
    SESSION_NOT_FOUND = "session_not_found"
    RUN_NOT_FOUND = "run_not_found"
    CAPABILITY_NOT_FOUND = "capability_not_found"
    ALREADY_EXISTS = "already_exists"
    DUPLICATE_CAPABILITY = "duplicate_capability"
    PROVIDER_ERROR = "provider_error"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_RATE_LIMITED = "provider_rate_limited"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_AUTHENTICATION_FAILED = "provider_authentication_failed"
    PROVIDER_QUOTA_EXCEEDED = "provider_quota_exceeded"
    STORAGE_ERROR = "storage_error"
    STORAGE_CONNECTION_FAILED = "storage_connection_failed"
    STORAGE_WRITE_FAILED = "storage_write_failed"
    STORAGE_READ_FAILED = "storage_read_failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    POLICY_VIOLATION = "policy_violation"
    INTERNAL_ERROR = "internal_error"
    UNKNOWN_ERROR = "unknown_error"
    MAX_SESSIONS_EXCEEDED = "max_sessions_exceeded"
    MAX_RUNS_EXCEEDED = "max_runs_exceeded"
    CAPABILITY_NOT_SUPPORTED = "capability_not_supported"
    INVALID_OPERATION = "invalid_operation"
    TOOL_ERROR = "tool_error"
    TOOL_NOT_FOUND = "tool_not_found"
    TOOL_EXECUTION_FAILED = "tool_execution_failed"
    TOOL_PERMISSION_DENIED = "tool_permission_denied"

    @property
    def category(self) -> ErrorCategory:
        """The category of this code."""
        return _CATEGORY[self]

    @property
    def retryable(self) -> bool:
        """Whether an operation that failed with this code may succeed when retried."""
        return self in RETRYABLE_CODES

    @property
    def default_message(self) -> str:
        """The message used when none is given."""
        return _DEFAULT_MESSAGE[self]


_C = ErrorCode
_CAT = ErrorCategory
_TABLE: tuple[tuple[ErrorCode, ErrorCategory, str], ...] = (
    (_C.VALIDATION_ERROR, _CAT.VALIDATION, "Validation error occurred"),
    (_C.INVALID_INPUT, _CAT.VALIDATION, "Invalid input provided"),
    (_C.MISSING_REQUIRED_FIELD, _CAT.VALIDATION, "Required field is missing"),
    (_C.INVALID_FORMAT, _CAT.VALIDATION, "Invalid format"),
    (_C.INVALID_STATUS, _CAT.STATE, "Invalid status value"),
    (_C.INVALID_TRANSITION, _CAT.STATE, "Invalid state transition"),
    (_C.INVALID_EVENT_TYPE, _CAT.STATE, "Invalid event type"),
    (_C.INVALID_CAPABILITY_TYPE, _CAT.STATE, "Invalid capability type"),
    (_C.MISSING_REQUIRED_CAPABILITY, _CAT.STATE, "Required capability is missing"),
    (_C.STREAM_CLOSED, _CAT.STATE, "Stream is closed"),
    (_C.CONTEXT_MISMATCH, _CAT.STATE, "Event context does not match stream context"),
    (_C.INVALID_CURSOR, _CAT.STATE, "Invalid cursor operation"),
    (_C.SESSION_MISMATCH, _CAT.STATE, "Session IDs do not match"),
    (_C.RUN_MISMATCH, _CAT.STATE, "Run IDs do not match"),
    (_C.NOT_FOUND, _CAT.RESOURCE, "Resource not found"),
    (_C.SESSION_NOT_FOUND, _CAT.RESOURCE, "Session not found"),
    (_C.RUN_NOT_FOUND, _CAT.RESOURCE, "Run not found"),
    (_C.CAPABILITY_NOT_FOUND, _CAT.RESOURCE, "Capability not found"),
    (_C.ALREADY_EXISTS, _CAT.RESOURCE, "Resource already exists"),
    (_C.DUPLICATE_CAPABILITY, _CAT.RESOURCE, "Capability with this name already exists"),
    (_C.PROVIDER_ERROR, _CAT.PROVIDER, "Provider error occurred"),
    (_C.PROVIDER_UNAVAILABLE, _CAT.PROVIDER, "Provider is unavailable"),
    (_C.PROVIDER_RATE_LIMITED, _CAT.PROVIDER, "Provider rate limit exceeded"),
    (_C.PROVIDER_TIMEOUT, _CAT.PROVIDER, "Provider request timed out"),
    (_C.PROVIDER_AUTHENTICATION_FAILED, _CAT.PROVIDER, "Provider authentication failed"),
    (_C.PROVIDER_QUOTA_EXCEEDED, _CAT.PROVIDER, "Provider quota exceeded"),
    (_C.STORAGE_ERROR, _CAT.STORAGE, "Storage error occurred"),
    (_C.STORAGE_CONNECTION_FAILED, _CAT.STORAGE, "Storage connection failed"),
    (_C.STORAGE_WRITE_FAILED, _CAT.STORAGE, "Storage write operation failed"),
    (_C.STORAGE_READ_FAILED, _CAT.STORAGE, "Storage read operation failed"),
    (_C.TIMEOUT, _CAT.RUNTIME, "Operation timed out"),
    (_C.CANCELLED, _CAT.RUNTIME, "Operation was cancelled"),
    (_C.POLICY_VIOLATION, _CAT.RUNTIME, "Policy violation occurred"),
    (_C.INTERNAL_ERROR, _CAT.RUNTIME, "Internal error occurred"),
    (_C.UNKNOWN_ERROR, _CAT.RUNTIME, "An unknown error occurred"),
    (_C.MAX_SESSIONS_EXCEEDED, _CAT.CONCURRENCY, "Maximum parallel sessions limit exceeded"),
    (_C.MAX_RUNS_EXCEEDED, _CAT.CONCURRENCY, "Maximum parallel runs limit exceeded"),
    (_C.CAPABILITY_NOT_SUPPORTED, _CAT.CONCURRENCY, "Capability not supported by provider"),
    (_C.INVALID_OPERATION, _CAT.CONCURRENCY, "Operation not valid for current state"),
    (_C.TOOL_ERROR, _CAT.TOOL, "Tool error occurred"),
    (_C.TOOL_NOT_FOUND, _CAT.TOOL, "Tool not found"),
    (_C.TOOL_EXECUTION_FAILED, _CAT.TOOL, "Tool execution failed"),
    (_C.TOOL_PERMISSION_DENIED, _CAT.TOOL, "Tool permission denied"),
)
_CATEGORY: dict[ErrorCode, ErrorCategory] = {code: cat for code, cat, _ in _TABLE}
_DEFAULT_MESSAGE: dict[ErrorCode, str] = {code: msg for code, _, msg in _TABLE}

RETRYABLE_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.PROVIDER_TIMEOUT,
        ErrorCode.PROVIDER_RATE_LIMITED,
        ErrorCode.PROVIDER_UNAVAILABLE,
        ErrorCode.STORAGE_CONNECTION_FAILED,
        ErrorCode.TIMEOUT,
    }
)

_NOT_FOUND_CODES = frozenset(
    {
        ErrorCode.NOT_FOUND,
        ErrorCode.SESSION_NOT_FOUND,
        ErrorCode.RUN_NOT_FOUND,
        ErrorCode.CAPABILITY_NOT_FOUND,
    }
)


class AsmError(Exception):
    """Root of every error raised by agent-session-manager.

    Args:
        code: The error code (an :class:`ErrorCode` or its string value).
        message: A human-readable message; defaults to the code's default message.
        details: JSON-safe extra information (never secrets).

    ``AsmError(code)`` returns an instance of the category subclass of ``code``.
    """

    code: ErrorCode
    message: str
    details: dict[str, Any]

    def __new__(
        cls,
        code: ErrorCode | str = ErrorCode.UNKNOWN_ERROR,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AsmError:
        """Pick the category subclass of ``code`` when constructing the root class."""
        target: type[AsmError] = cls
        if cls is AsmError:
            target = _subclass_for(_coerce_code(code))
        return super().__new__(target)

    def __init__(
        self,
        code: ErrorCode | str = ErrorCode.UNKNOWN_ERROR,
        message: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = _coerce_code(code)
        self.message = message if message else self.code.default_message
        self.details = dict(details) if details else {}
        super().__init__(self.code, self.message, self.details)

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (AsmError, (self.code, self.message, self.details))

    @property
    def category(self) -> ErrorCategory:
        """The category of this error's code."""
        return self.code.category

    @property
    def retryable(self) -> bool:
        """True exactly for the five retryable codes."""
        return self.code.retryable

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``code``, ``message``, ``details``)."""
        return {"code": self.code.value, "message": self.message, "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AsmError:
        """Rebuild an error from :meth:`to_dict` output; unknown codes become unknown_error."""
        raw = data.get("code", ErrorCode.UNKNOWN_ERROR)
        try:
            code = ErrorCode(raw)
        except ValueError:
            code = ErrorCode.UNKNOWN_ERROR
        details = data.get("details")
        return AsmError(code, str(data.get("message") or ""), details if isinstance(details, dict) else None)


def _coerce_code(code: ErrorCode | str) -> ErrorCode:
    if isinstance(code, ErrorCode):
        return code
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN_ERROR


class ValidationError(AsmError):
    """Invalid arguments or malformed data."""


class StateError(AsmError):
    """An operation that is illegal in the current state (e.g. an illegal transition)."""


class ResourceError(AsmError):
    """A missing or conflicting resource."""


class NotFoundError(ResourceError):
    """A session, run, capability or other resource does not exist."""


class ProviderError(AsmError):
    """The AI provider failed, refused, timed out or is unavailable."""


class StorageError(AsmError):
    """The session store failed to read or write."""


class OperationError(AsmError):
    """Runtime failures: timeouts, cancellation, policy violations, internal errors."""


class PolicyViolationError(OperationError):
    """A policy cancelled a run."""


class ConcurrencyError(AsmError):
    """Limits exceeded or an operation not supported in the current state."""


class ToolError(AsmError):
    """A tool failed, was not found, or was denied."""


_CATEGORY_CLASS: dict[ErrorCategory, type[AsmError]] = {
    ErrorCategory.VALIDATION: ValidationError,
    ErrorCategory.STATE: StateError,
    ErrorCategory.RESOURCE: ResourceError,
    ErrorCategory.PROVIDER: ProviderError,
    ErrorCategory.STORAGE: StorageError,
    ErrorCategory.RUNTIME: OperationError,
    ErrorCategory.CONCURRENCY: ConcurrencyError,
    ErrorCategory.TOOL: ToolError,
}


def _subclass_for(code: ErrorCode) -> type[AsmError]:
    if code in _NOT_FOUND_CODES:
        return NotFoundError
    if code is ErrorCode.POLICY_VIOLATION:
        return PolicyViolationError
    return _CATEGORY_CLASS[code.category]
