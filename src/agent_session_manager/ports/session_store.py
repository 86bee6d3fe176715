"""The SessionStore port."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Self

from ..core import Event, EventType, Run, RunStatus, Session, SessionStatus
from ._query import EventQuery, check_limit, check_offset, coerce_run_status, coerce_session_status

__all__ = ("SessionStore",)


class SessionStore(ABC):
    """Persistence of sessions, runs and each session's append-only event log.

    Contract shared by every backend (checked by ``testing.run_store_conformance``):

    * **Sessions and runs** are upserted by id (``save_*``). ``get_session``/``get_run``
      raise ``AsmError(session_not_found | run_not_found)`` for unknown ids.
      ``delete_session`` is idempotent and removes the session's runs and events.
    * **Sequence numbers**: ``append_event`` assigns the next number of the event's session,
      starting at 1, gapless, under a per-session lock inside the insert's transaction, so
      commit order equals sequence order and a reader of ``sequence_number > cursor`` never
      skips an event, even across processes. A caller-supplied ``sequence_number`` is ignored.
    * **Idempotent**: appending an event whose ``id`` is already stored returns the stored
      event (with its original sequence number) and appends nothing.
    * ``append_events`` is atomic: all events are stored (in order) or none is.
    * **Durable**: an append returns only after its commit.
    * ``get_events`` returns events in sequence order; ``after`` and ``before`` are strict
      bounds on ``sequence_number``; ``since`` keeps events with ``timestamp >= since``;
      ``run_id`` and ``types`` filter; ``limit`` caps the page (``None`` = no cap).
    * **Long-poll**: with ``wait_timeout > 0`` and no matching event, block until a matching
      event is appended or the timeout passes (then return ``[]``). Within one process this
      wakes on the append itself, without busy polling.
    * ``get_latest_sequence`` is 0 for a session with no events (or an unknown session).
    * Invalid arguments (negative cursors, ``limit < 1``) raise ``AsmError(validation_error)``;
      backend failures raise ``AsmError`` with a ``storage_*`` code.
    * ``close()`` releases resources and wakes long-pollers (they return ``[]``); it does
      not block beyond the in-flight writes. Stores are async context managers.
    """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def save_session(self, session: Session) -> None:
        """Insert or replace ``session``."""

    @abstractmethod
    async def get_session(self, session_id: str) -> Session:
        """Return the session; ``session_not_found`` if absent."""

    async def list_sessions(
        self,
        *,
        status: SessionStatus | str | None = None,
        agent_id: str | None = None,
        tags: Sequence[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Session]:
        """Sessions matching every filter (``tags``: all given tags present), newest first.

        Ordered by ``created_at`` descending, then id, so ``offset``/``limit`` pages are stable.
        Arguments are validated here (``invalid_status`` / ``validation_error``); backends
        implement :meth:`_list_sessions`.
        """
        return await self._list_sessions(
            coerce_session_status(status), agent_id, tags, check_limit(limit), check_offset(offset)
        )

    @abstractmethod
    async def _list_sessions(
        self,
        wanted: SessionStatus | None,
        agent_id: str | None,
        tags: Sequence[str] | None,
        limit: int | None,
        offset: int,
    ) -> list[Session]:
        """Answer :meth:`list_sessions` with validated arguments."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """Delete a session with its runs and events; no error if absent."""

    @abstractmethod
    async def save_run(self, run: Run) -> None:
        """Insert or replace ``run``."""

    @abstractmethod
    async def get_run(self, run_id: str) -> Run:
        """Return the run; ``run_not_found`` if absent."""

    async def list_runs(
        self,
        session_id: str,
        *,
        status: RunStatus | str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """The session's runs, oldest first (by ``created_at``, then id)."""
        return await self._list_runs(session_id, coerce_run_status(status), check_limit(limit))

    @abstractmethod
    async def _list_runs(self, session_id: str, wanted: RunStatus | None, limit: int | None) -> list[Run]:
        """Answer :meth:`list_runs` with validated arguments."""

    @abstractmethod
    async def get_active_run(self, session_id: str) -> Run | None:
        """The session's oldest ``running`` run, or ``None``."""

    @abstractmethod
    async def append_event(self, event: Event) -> Event:
        """Persist ``event`` and return it with its sequence number (idempotent by id)."""

    @abstractmethod
    async def append_events(self, events: Sequence[Event]) -> list[Event]:
        """Atomically persist ``events`` in order; returns them with sequence numbers."""

    async def get_events(
        self,
        session_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        run_id: str | None = None,
        types: Sequence[EventType | str] | None = None,
        since: datetime | None = None,
        wait_timeout: float | None = None,
    ) -> list[Event]:
        """Events of ``session_id`` in sequence order, filtered (see class contract).

        Validates the arguments (``validation_error`` / ``invalid_event_type``) into an
        :class:`EventQuery` and hands it to :meth:`_get_events`, which backends implement.
        """
        query = EventQuery.build(
            session_id,
            after=after,
            before=before,
            limit=limit,
            run_id=run_id,
            types=types,
            since=since,
            wait_timeout=wait_timeout,
        )
        return await self._get_events(query)

    @abstractmethod
    async def _get_events(self, query: EventQuery) -> list[Event]:
        """Answer a validated query, long-polling when ``query.wait_timeout > 0``."""

    @abstractmethod
    async def get_latest_sequence(self, session_id: str) -> int:
        """The highest sequence number of the session (0 if none)."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources; idempotent."""

    async def recover_interrupted_runs(self, *, reason: str = "owner process died") -> list[Run]:
        """Finalize runs left ``running`` by a dead owner (see ``ports._recovery``).

        The default implementation is generic over the port; backends may override it.
        """
        from ._recovery import recover_interrupted_runs  # late: it uses this module's class

        return await recover_interrupted_runs(self, reason=reason)
