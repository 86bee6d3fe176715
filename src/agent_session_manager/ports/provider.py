"""The ProviderAdapter port."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pydantic import Field

from ..core import Capability, Event, EventType, Run, Session, TokenUsage
from ..core._base import DomainModel

__all__ = ("Emit", "ProviderAdapter", "ProviderEvent", "ProviderResult")


class ProviderEvent(DomainModel):
    """A normalized event an adapter reports while a run executes.

    ``type`` is an :class:`EventType` (or its string value). Tool events carry the
    canonical keys ``tool_call_id``, ``tool_name``, ``tool_input``, ``tool_output``.
    """

    type: EventType
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None


class ProviderResult(DomainModel):
    """What an adapter returns when a run succeeds.

    ``output`` holds ``content`` (final text), ``tool_calls`` and ``stop_reason``.
    ``token_usage`` is the usage of this run alone (not a thread's running total).
    """

    output: dict[str, Any] = Field(default_factory=dict)
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float | None = None
    provider_session_id: str | None = None
    model: str | None = None
    turn_count: int = 0


Emit = Callable[[ProviderEvent], Awaitable[Event]]
"""Persists a :class:`ProviderEvent` and returns the stored :class:`Event`."""


class ProviderAdapter(ABC):
    """Drives one AI provider.

    Contract:

    * ``execute`` streams normalized events through ``emit`` (each returns the persisted
      event) and returns a :class:`ProviderResult` on success. On failure it raises
      ``AsmError`` with a provider code (``provider_error``, ``provider_timeout``, …).
    * Terminal run events (run_completed/failed/cancelled/timeout) are owned by the
      SessionManager: an adapter may emit them, but their data is folded into the single
      terminal event the manager writes. ``run_started`` data (``provider_session_id``,
      ``model``) is recorded on the run.
    * ``cancel(run_id)`` asks the in-flight ``execute`` of ``run_id`` to stop; ``execute``
      then raises ``AsmError(cancelled)`` promptly. Cancelling an unknown or finished run
      is a no-op. Cancellation of the calling task (anyio cancel scope) must also stop the
      provider and leave no child process behind.
    * ``validate_config`` raises ``AsmError(validation_error | provider_unavailable)`` when
      the adapter cannot work (bad options, missing binary).
    """

    name: str = "provider"

    @abstractmethod
    def capabilities(self) -> list[Capability]:
        """The capabilities this provider offers."""

    @abstractmethod
    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        """Execute ``run`` within ``session``; see class contract."""

    @abstractmethod
    async def cancel(self, run_id: str) -> None:
        """Stop the in-flight execution of ``run_id`` (no-op if none)."""

    def validate_config(self) -> None:  # noqa: B027 - optional hook with a no-op default
        """Raise ``AsmError`` if the adapter's configuration cannot work."""
