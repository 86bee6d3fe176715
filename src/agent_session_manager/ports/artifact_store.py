"""The ArtifactStore port."""

from __future__ import annotations

from abc import ABC, abstractmethod

__all__ = ("ArtifactStore",)


class ArtifactStore(ABC):
    """Blob storage keyed by string (patches, snapshots).

    Contract: ``put`` overwrites; ``get`` raises ``AsmError(not_found)`` for a missing key;
    ``delete`` is idempotent; I/O failures raise ``AsmError(storage_error)``.
    """

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``."""

    @abstractmethod
    async def get(self, key: str) -> bytes:
        """Return the bytes stored under ``key``."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
