"""Capabilities, capability negotiation, manifests and the manifest registry (pure)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from ._base import DomainModel
from .enums import CapabilityType
from .errors import AsmError, ErrorCode
from .models import NonEmptyStr

__all__ = (
    "Capability",
    "CapabilityResolver",
    "Manifest",
    "NegotiationResult",
    "Registry",
)


class Capability(DomainModel):
    """Something a provider can do: ``Capability(name="bash", type="code_execution")``."""

    name: NonEmptyStr
    type: CapabilityType
    enabled: bool = True
    description: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    permissions: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _typed_error(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" in data:
            raw = data["type"]
            try:
                CapabilityType(raw)
            except ValueError:
                raise AsmError(
                    ErrorCode.INVALID_CAPABILITY_TYPE,
                    f"Invalid capability type: {raw!r}",
                    {"type": str(raw), "valid": [t.value for t in CapabilityType]},
                ) from None
        return data

    def enable(self) -> Capability:
        """Return an enabled copy."""
        return self.model_copy(update={"enabled": True})

    def disable(self) -> Capability:
        """Return a disabled copy."""
        return self.model_copy(update={"enabled": False})


class NegotiationResult(DomainModel):
    """Outcome of :meth:`CapabilityResolver.negotiate`."""

    status: Literal["full", "degraded"]
    supported: list[str] = Field(default_factory=list)
    unsupported: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def _requirement(value: CapabilityType | str | Capability) -> str:
    if isinstance(value, Capability):
        return value.type.value
    if isinstance(value, str) and value.strip():
        return str(value)
    raise AsmError(
        ErrorCode.INVALID_CAPABILITY_TYPE,
        f"Capability requirement must be a type or a name, got {value!r}",
    )


class CapabilityResolver:
    """Checks a provider's capabilities against required and optional ones.

    Each requirement is a :class:`CapabilityType` (matched against enabled capabilities'
    types) or any other string (matched against enabled capabilities' names).
    """

    def __init__(
        self,
        required: Iterable[CapabilityType | str | Capability] = (),
        optional: Iterable[CapabilityType | str | Capability] = (),
    ) -> None:
        self.required: tuple[str, ...] = tuple(dict.fromkeys(_requirement(r) for r in required))
        self.optional: tuple[str, ...] = tuple(
            r for r in dict.fromkeys(_requirement(o) for o in optional) if r not in self.required
        )

    @staticmethod
    def _present(capabilities: Sequence[Capability]) -> set[str]:
        present: set[str] = set()
        for cap in capabilities:
            if cap.enabled:
                present.add(cap.type.value)
                present.add(cap.name)
        return present

    def negotiate(self, capabilities: Sequence[Capability]) -> NegotiationResult:
        """Negotiate; ``full`` when every optional one is present, else ``degraded``.

        Raises:
            AsmError: ``missing_required_capability`` naming every missing requirement.
        """
        present = self._present(capabilities)
        missing = [r for r in self.required if r not in present]
        if missing:
            raise AsmError(
                ErrorCode.MISSING_REQUIRED_CAPABILITY,
                f"Missing required capabilities: {', '.join(missing)}",
                {"missing": missing},
            )
        unsupported = [o for o in self.optional if o not in present]
        supported = [r for r in (*self.required, *self.optional) if r in present]
        return NegotiationResult(
            status="degraded" if unsupported else "full",
            supported=supported,
            unsupported=unsupported,
            warnings=[f"Optional capability '{o}' is not supported by the provider" for o in unsupported],
        )


class Manifest(DomainModel):
    """Describes an agent: name, version, provider and capabilities (unique by name)."""

    name: NonEmptyStr
    version: NonEmptyStr
    description: str | None = None
    provider: str | None = None
    capabilities: list[Capability] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique(self) -> Self:
        names = [c.name for c in self.capabilities]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise AsmError(ErrorCode.DUPLICATE_CAPABILITY, f"Duplicate capability names: {', '.join(dupes)}")
        return self

    def add_capability(self, capability: Capability) -> Manifest:
        """Return a copy with ``capability`` added; ``duplicate_capability`` if the name exists."""
        if any(c.name == capability.name for c in self.capabilities):
            raise AsmError(ErrorCode.DUPLICATE_CAPABILITY, f"Capability already exists: {capability.name}")
        return self.model_copy(update={"capabilities": [*self.capabilities, capability]})

    def get_capability(self, name: str) -> Capability:
        """Return the named capability; ``capability_not_found`` if absent."""
        for cap in self.capabilities:
            if cap.name == name:
                return cap
        raise AsmError(ErrorCode.CAPABILITY_NOT_FOUND, f"Capability not found: {name}")

    def remove_capability(self, name: str) -> Manifest:
        """Return a copy without the named capability; ``capability_not_found`` if absent."""
        self.get_capability(name)
        return self.model_copy(update={"capabilities": [c for c in self.capabilities if c.name != name]})

    def enabled_capabilities(self) -> list[Capability]:
        """The enabled capabilities."""
        return [c for c in self.capabilities if c.enabled]


class Registry:
    """An immutable name → :class:`Manifest` registry; every change returns a new one."""

    __slots__ = ("_manifests",)

    def __init__(self, manifests: Iterable[Manifest] = ()) -> None:
        table: dict[str, Manifest] = {}
        for manifest in manifests:
            if manifest.name in table:
                raise AsmError(ErrorCode.ALREADY_EXISTS, f"Manifest already registered: {manifest.name}")
            table[manifest.name] = manifest
        self._manifests = table

    def register(self, manifest: Manifest) -> Registry:
        """Add ``manifest``; ``already_exists`` if its name is taken."""
        return Registry([*self._manifests.values(), manifest])

    def update(self, manifest: Manifest) -> Registry:
        """Replace the manifest of the same name; ``not_found`` if absent."""
        self.get(manifest.name)
        return Registry(manifest if m.name == manifest.name else m for m in self._manifests.values())

    def unregister(self, name: str) -> Registry:
        """Remove the named manifest; ``not_found`` if absent."""
        self.get(name)
        return Registry(m for m in self._manifests.values() if m.name != name)

    def get(self, name: str) -> Manifest:
        """Return the named manifest; ``not_found`` if absent."""
        try:
            return self._manifests[name]
        except KeyError:
            raise AsmError(ErrorCode.NOT_FOUND, f"Manifest not found: {name}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._manifests

    def __len__(self) -> int:
        return len(self._manifests)

    def list(self) -> list[Manifest]:
        """All manifests sorted by name."""
        return sorted(self._manifests.values(), key=lambda m: m.name)

    def filter_by_provider(self, provider: str) -> builtins.list[Manifest]:
        """Manifests whose provider is ``provider``, sorted by name."""
        return [m for m in self.list() if m.provider == provider]

    def filter_by_capability(self, capability_type: CapabilityType | str) -> builtins.list[Manifest]:
        """Manifests with an enabled capability of ``capability_type``, sorted by name."""
        try:
            wanted = CapabilityType(capability_type)
        except ValueError:
            raise AsmError(
                ErrorCode.INVALID_CAPABILITY_TYPE, f"Invalid capability type: {capability_type!r}"
            ) from None
        return [m for m in self.list() if any(c.type is wanted for c in m.enabled_capabilities())]
