"""Closed sets of the domain: statuses, event types, capability types, permission modes."""

from __future__ import annotations

from enum import StrEnum

__all__ = (
    "CapabilityType",
    "EventType",
    "PermissionMode",
    "RunStatus",
    "SessionStatus",
)


class SessionStatus(StrEnum):
    """Lifecycle status of a session."""

    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Completed, failed and cancelled are final."""
        return self in _TERMINAL_SESSION


class RunStatus(StrEnum):
    """Lifecycle status of a run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"

    @property
    def is_terminal(self) -> bool:
        """Completed, failed, cancelled and timeout are final."""
        return self in _TERMINAL_RUN


_TERMINAL_SESSION = frozenset({SessionStatus.COMPLETED, SessionStatus.FAILED, SessionStatus.CANCELLED})
_TERMINAL_RUN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.TIMEOUT})


class EventType(StrEnum):
    """The 25 anchor event types plus the three tool-approval types."""

    SESSION_CREATED = "session_created"
    SESSION_STARTED = "session_started"
    SESSION_PAUSED = "session_paused"
    SESSION_RESUMED = "session_resumed"
    SESSION_COMPLETED = "session_completed"
    SESSION_FAILED = "session_failed"
    SESSION_CANCELLED = "session_cancelled"
    RUN_STARTED = "run_started"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"
    RUN_TIMEOUT = "run_timeout"
    MESSAGE_SENT = "message_sent"
    MESSAGE_RECEIVED = "message_received"
    MESSAGE_STREAMED = "message_streamed"
    TOOL_CALL_STARTED = "tool_call_started"
    TOOL_CALL_COMPLETED = "tool_call_completed"
    TOOL_CALL_FAILED = "tool_call_failed"
    ERROR_OCCURRED = "error_occurred"
    ERROR_RECOVERED = "error_recovered"
    TOKEN_USAGE_UPDATED = "token_usage_updated"
    TURN_COMPLETED = "turn_completed"
    WORKSPACE_SNAPSHOT_TAKEN = "workspace_snapshot_taken"
    WORKSPACE_DIFF_COMPUTED = "workspace_diff_computed"
    POLICY_VIOLATION = "policy_violation"
    TOOL_APPROVAL_REQUESTED = "tool_approval_requested"
    TOOL_APPROVAL_GRANTED = "tool_approval_granted"
    TOOL_APPROVAL_DENIED = "tool_approval_denied"

    @property
    def is_terminal_run_event(self) -> bool:
        """True for run_completed, run_failed, run_cancelled and run_timeout."""
        return self in TERMINAL_RUN_EVENTS


TERMINAL_RUN_EVENTS: frozenset[EventType] = frozenset(
    {
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_TIMEOUT,
    }
)

RUN_STATUS_EVENT: dict[RunStatus, EventType] = {
    RunStatus.COMPLETED: EventType.RUN_COMPLETED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
    RunStatus.TIMEOUT: EventType.RUN_TIMEOUT,
}


class CapabilityType(StrEnum):
    """What kind of thing a provider capability is."""

    TOOL = "tool"
    RESOURCE = "resource"
    PROMPT = "prompt"
    SAMPLING = "sampling"
    FILE_ACCESS = "file_access"
    NETWORK_ACCESS = "network_access"
    CODE_EXECUTION = "code_execution"


class PermissionMode(StrEnum):
    """Provider-neutral permission modes, mapped per provider by each adapter."""

    DEFAULT = "default"
    ACCEPT_EDITS = "accept_edits"
    PLAN = "plan"
    FULL_AUTO = "full_auto"
    DANGEROUSLY_SKIP_PERMISSIONS = "dangerously_skip_permissions"
