"""The SessionServer's transcript cache."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ..core import AsmError, ErrorCode
from ..core.transcript import Transcript, build_transcript
from ..ports import SessionStore

__all__ = ("TranscriptCache",)

log = logging.getLogger(__name__)

_LIMIT_KEYS = frozenset({"max_messages", "max_chars", "max_tokens_approx"})


class TranscriptCache:
    """A session's transcript kept up to date from the store by cursor.

    The first use reads the whole log (``build_transcript``); every later use reads only the
    events after ``last_sequence`` (``Transcript.extend``), so continuation costs
    O(new events) per run. The cached transcript is untruncated; ``continuation_opts``
    limits are applied to the copy handed to a run. A failed store read clears the cache (the
    next use rebuilds it) and makes :meth:`current` return ``None``.

    Attributes:
        full_reads: How many times the whole log was read.
        incremental_reads: How many cursor reads extended the cache.
    """

    def __init__(self, store: SessionStore, session_id: str) -> None:
        self._store = store
        self.session_id = session_id
        self._transcript: Transcript | None = None
        self._lock: anyio.Lock | None = None
        self.full_reads = 0
        self.incremental_reads = 0

    @property
    def transcript(self) -> Transcript | None:
        """The cached (untruncated) transcript, if built."""
        return self._transcript

    def invalidate(self) -> None:
        """Drop the cache; the next use rebuilds it from the whole log."""
        self._transcript = None

    @staticmethod
    def check_limits(limits: dict[str, Any] | None) -> dict[str, Any]:
        """Validate ``continuation_opts`` (``max_messages``, ``max_chars``, ``max_tokens_approx``)."""
        limits = dict(limits or {})
        unknown = set(limits) - _LIMIT_KEYS
        if unknown:
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                f"unknown continuation_opts: {sorted(unknown)}; allowed: {sorted(_LIMIT_KEYS)}",
            )
        return limits

    async def current(self, limits: dict[str, Any] | None = None) -> Transcript | None:
        """The transcript up to the store's current tail (``None`` after a store read error)."""
        limits = self.check_limits(limits)
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            try:
                if self._transcript is None:
                    events = await self._store.get_events(self.session_id)
                    self.full_reads += 1
                    self._transcript = build_transcript(events, session_id=self.session_id)
                else:
                    new = await self._store.get_events(self.session_id, after=self._transcript.last_sequence)
                    self.incremental_reads += 1
                    if new:
                        self._transcript = self._transcript.extend(new)
            except AsmError as exc:
                log.warning("transcript cache of %s invalidated by a store error: %s", self.session_id, exc)
                self._transcript = None
                return None
            transcript = self._transcript
        return transcript.extend((), **limits) if limits else transcript
