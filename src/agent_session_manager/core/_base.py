"""Shared base for the immutable domain models (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Self

import pydantic
from pydantic import BaseModel, ConfigDict

from .errors import AsmError, ErrorCode

__all__ = ("DomainModel", "new_id", "utc_now")


def new_id(prefix: str) -> str:
    """Return ``<prefix>_`` followed by 32 random lowercase hex characters."""
    return f"{prefix}_{uuid.uuid4().hex}"


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _to_asm_error(exc: pydantic.ValidationError, model: str) -> AsmError:
    errors = [
        {"loc": ".".join(str(p) for p in err["loc"]), "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
    summary = "; ".join(f"{e['loc'] or model}: {e['msg']}" for e in errors)
    return AsmError(
        ErrorCode.VALIDATION_ERROR, f"invalid {model}: {summary}", {"model": model, "errors": errors}
    )


class DomainModel(BaseModel):
    """Immutable pydantic model whose validation failures raise ``AsmError(validation_error)``."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise _to_asm_error(exc, type(self).__name__) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as exc:
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                f"{type(self).__name__} is immutable; use model_copy or with_* methods",
                {"field": name},
            ) from exc

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        """Validate ``obj``; failures raise ``AsmError(validation_error)``."""
        try:
            return super().model_validate(obj, **kwargs)
        except pydantic.ValidationError as exc:
            raise _to_asm_error(exc, cls.__name__) from None

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        """Validate JSON text; failures raise ``AsmError(validation_error)``."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except pydantic.ValidationError as exc:
            raise _to_asm_error(exc, cls.__name__) from None
