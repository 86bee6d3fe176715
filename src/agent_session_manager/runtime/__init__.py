"""Per-session runtime: SessionServer, SessionSupervisor, ConcurrencyLimiter, ControlOperations."""

from .control import ControlOperations, OperationRecord, OperationStatus
from .limiter import ConcurrencyLimiter, LimiterLimits, LimiterStatus
from .server import SessionServer, SessionServerStatus
from .subscriptions import Subscription
from .supervisor import SessionSupervisor

__all__ = (
    "ConcurrencyLimiter",
    "ControlOperations",
    "LimiterLimits",
    "LimiterStatus",
    "OperationRecord",
    "OperationStatus",
    "SessionServer",
    "SessionServerStatus",
    "SessionSupervisor",
    "Subscription",
)
