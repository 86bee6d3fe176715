"""Ports: the small ABCs every backend and provider implements."""

from .artifact_store import ArtifactStore
from .provider import Emit, ProviderAdapter, ProviderEvent, ProviderResult
from .session_store import SessionStore

__all__ = (
    "ArtifactStore",
    "Emit",
    "ProviderAdapter",
    "ProviderEvent",
    "ProviderResult",
    "SessionStore",
)
