"""Session, Run, Event and TokenUsage: immutable pydantic models (no I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    Field,
    NonNegativeInt,
    StringConstraints,
    computed_field,
    model_validator,
)

from ._base import DomainModel, new_id, utc_now
from .enums import EventType, RunStatus, SessionStatus
from .errors import AsmError, ErrorCode
from .state import check_run_transition, check_session_transition

__all__ = ("Event", "NonEmptyStr", "Run", "Session", "TokenUsage")

NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=False, min_length=1)]


def _nonblank(value: str, field: str) -> str:
    if not value.strip():
        raise ValueError(f"{field} cannot be empty")
    return value


class TokenUsage(DomainModel):
    """Token counts of a run; ``a + b`` sums every counter.

    ``total_tokens`` is derived as ``input_tokens + output_tokens``; cache counters are
    reported separately and not added to the total.
    """

    input_tokens: NonNegativeInt = 0
    output_tokens: NonNegativeInt = 0
    cache_read_tokens: NonNegativeInt = 0
    cache_creation_tokens: NonNegativeInt = 0

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        if isinstance(data, dict) and "total_tokens" in data:
            data = {k: v for k, v in data.items() if k != "total_tokens"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: object) -> TokenUsage:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_creation_tokens=self.cache_creation_tokens + other.cache_creation_tokens,
        )

    def __sub__(self, other: object) -> TokenUsage:
        """Counter-wise difference floored at zero (for running totals → per-run deltas)."""
        if not isinstance(other, TokenUsage):
            return NotImplemented
        return TokenUsage(
            input_tokens=max(0, self.input_tokens - other.input_tokens),
            output_tokens=max(0, self.output_tokens - other.output_tokens),
            cache_read_tokens=max(0, self.cache_read_tokens - other.cache_read_tokens),
            cache_creation_tokens=max(0, self.cache_creation_tokens - other.cache_creation_tokens),
        )


class Session(DomainModel):
    """A logical container of runs. Create with ``Session(agent_id=...)``."""

    id: NonEmptyStr = Field(default_factory=lambda: new_id("ses"))
    agent_id: NonEmptyStr
    status: SessionStatus = SessionStatus.PENDING
    context: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_session_id: str | None = None
    created_at: AwareDatetime = Field(default_factory=utc_now)
    updated_at: AwareDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _check(self) -> Self:
        _nonblank(self.agent_id, "agent_id")
        _nonblank(self.id, "id")
        return self

    def with_status(self, status: SessionStatus | str) -> Session:
        """Return a copy in ``status``; raises ``invalid_transition`` if illegal."""
        new = check_session_transition(self.status, status)
        return self.model_copy(update={"status": new, "updated_at": utc_now()})

    def with_metadata(self, **updates: Any) -> Session:
        """Return a copy whose metadata is merged with ``updates``."""
        return self.model_copy(update={"metadata": {**self.metadata, **updates}, "updated_at": utc_now()})


class Run(DomainModel):
    """One execution within a session.

    ``started_at`` is set when the run enters ``running``; ``ended_at`` when it reaches a
    terminal status.
    """

    id: NonEmptyStr = Field(default_factory=lambda: new_id("run"))
    session_id: NonEmptyStr
    status: RunStatus = RunStatus.PENDING
    input: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    turn_count: NonNegativeInt = 0
    cost_usd: float | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: AwareDatetime = Field(default_factory=utc_now)
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _nonblank(self.session_id, "session_id")
        return self

    def with_status(self, status: RunStatus | str, **updates: Any) -> Run:
        """Return a copy in ``status`` (with extra field ``updates``); raises if illegal."""
        new = check_run_transition(self.status, status)
        if "id" in updates:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "with_status updates cannot change the run's id")
        now = utc_now()
        fields: dict[str, Any] = {**updates, "status": new}
        if new is RunStatus.RUNNING:
            fields.setdefault("started_at", now)
        if new.is_terminal:
            fields.setdefault("ended_at", now)
        if updates:
            # Field updates are validated like a fresh model (model_copy would skip that).
            return Run.model_validate({**dict(self), **fields})
        return self.model_copy(update=fields)

    def with_metadata(self, **updates: Any) -> Run:
        """Return a copy whose metadata is merged with ``updates``."""
        return self.model_copy(update={"metadata": {**self.metadata, **updates}})


class Event(DomainModel):
    """An immutable record in a session's event log.

    ``sequence_number`` is ``None`` until a store assigns it (from 1 per session).
    """

    id: NonEmptyStr = Field(default_factory=lambda: new_id("evt"))
    type: EventType
    session_id: NonEmptyStr
    run_id: str | None = None
    sequence_number: int | None = Field(default=None, ge=1)
    timestamp: AwareDatetime = Field(default_factory=utc_now)
    data: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    provider: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        _nonblank(self.session_id, "session_id")
        return self

    def with_sequence(self, sequence_number: int) -> Event:
        """Return a copy carrying the store-assigned ``sequence_number``.

        Every store calls this once per append, so it copies the (already validated) field
        values directly instead of going through ``model_copy``'s generic machinery.
        """
        copy = object.__new__(Event)
        object.__setattr__(copy, "__dict__", {**self.__dict__, "sequence_number": sequence_number})
        fields_set = self.__pydantic_fields_set__ | {"sequence_number"}
        object.__setattr__(copy, "__pydantic_fields_set__", fields_set)
        object.__setattr__(copy, "__pydantic_extra__", None)
        object.__setattr__(copy, "__pydantic_private__", None)
        return copy


def ensure_aware(value: datetime) -> datetime:
    """Raise ``ValueError`` for naive datetimes (helper for adapters)."""
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return value
