"""Session store backends."""

from .memory import InMemorySessionStore

__all__ = ("InMemorySessionStore",)
