"""Store-backed event subscriptions for :class:`~agent_session_manager.runtime.SessionServer`.

Design: every subscriber has its own *follower* task (owned by the server's task group) that
reads the session's log from the store by cursor — ``get_events(after=cursor)`` — and pushes
each event into a bounded memory object stream that the subscriber iterates. When the follower
has caught up it long-polls the store (``wait_timeout``); the server also *nudges* followers
after every event it persists, cutting the long-poll short so delivery latency stays low even
for stores whose cross-process wake-up is a poll.

Guarantees, all following from "the store is the only source":

* **Order, no gap, no duplicate.** Events come in sequence order; the cursor only advances
  past events that were handed to the stream, and the store never returns an event at or
  below the cursor.
* **Slow subscribers.** The stream holds at most ``buffer_size`` events. A subscriber that
  does not keep up makes only its own follower wait; runs never block on subscribers and
  memory never grows past the buffer (plus one store page). The follower simply lags and
  catches up from the store.
* **Filters** (``run_id``, ``types``) are applied by the store query; the cursor then moves
  from one matching event to the next.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core import AsmError, ErrorCode, Event, EventType
from ..ports import SessionStore

__all__ = ("Subscription", "SubscriptionHub", "check_from_sequence", "check_types")

log = logging.getLogger(__name__)


class _Follower:
    """Copies a session's events from the store, after a cursor, into a bounded stream."""

    def __init__(
        self,
        store: SessionStore,
        session_id: str,
        cursor: int,
        send: MemoryObjectSendStream[Event],
        *,
        run_id: str | None,
        types: Sequence[EventType | str] | None,
        page_size: int,
        long_poll: float,
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.cursor = cursor
        self.run_id = run_id
        self.types = list(types) if types is not None else None
        self.error: AsmError | None = None
        self.finished = anyio.Event()
        self.scope = anyio.CancelScope()
        self._send = send
        self._page_size = page_size
        self._long_poll = long_poll
        self._nudged = False
        self._closing = False
        self._wait_scope: anyio.CancelScope | None = None

    def nudge(self) -> None:
        """New events may be in the store: stop waiting and read now."""
        self._nudged = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def close(self) -> None:
        """Deliver what the store holds now, then end the stream."""
        self._closing = True
        self.nudge()

    def stop(self) -> None:
        """End at once (the subscriber left)."""
        self.scope.cancel()

    def abort(self) -> None:
        """End the subscriber's stream even if this follower never ran (server closed)."""
        self._send.close()

    async def _read(self, wait: float) -> list[Event]:
        return await self.store.get_events(
            self.session_id,
            after=self.cursor,
            limit=self._page_size,
            run_id=self.run_id,
            types=self.types,
            wait_timeout=wait,
        )

    async def _wait_for_page(self) -> list[Event]:
        page: list[Event] = []
        with anyio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                if self._nudged or self._closing:
                    scope.cancel()
                page = await self._read(self._long_poll)
            finally:
                self._wait_scope = None
        return page

    async def run(self) -> None:
        """Follow until stopped, closed (after catching up) or the subscriber goes away."""
        try:
            with self.scope, self._send:
                while True:
                    self._nudged = False
                    page = await self._read(0)
                    if not page:
                        if self._closing:
                            return
                        page = await self._wait_for_page()
                    for event in page:
                        await self._send.send(event)
                        self.cursor = event.sequence_number or self.cursor
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the subscriber closed its end
        except AsmError as exc:
            log.warning("subscription to %s ended by a store error: %s", self.session_id, exc)
            self.error = exc
        finally:
            self.finished.set()


class Subscription:
    """An async iterator over a session's events (see the module docstring).

    Iteration ends when the server closes (after the events persisted up to then were
    delivered) and raises the store's ``AsmError`` if following failed.

    Attributes:
        from_sequence: Events after this sequence number were requested.
        run_id: Only this run's events (``None``: all).
        types: Only these event types (``None``: all).
        last_sequence: Sequence number of the last event yielded (``from_sequence`` before).
    """

    def __init__(
        self,
        receive: MemoryObjectReceiveStream[Event],
        follower: _Follower,
        from_sequence: int,
    ) -> None:
        self._receive = receive
        self._follower = follower
        self.from_sequence = from_sequence
        self.run_id = follower.run_id
        self.types = tuple(follower.types) if follower.types is not None else None
        self.last_sequence = from_sequence

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            event = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._follower.error is not None:
                raise self._follower.error from None
            raise StopAsyncIteration from None
        self.last_sequence = event.sequence_number or self.last_sequence
        return event

    async def receive(self) -> Event:
        """The next event.

        Raises:
            AsmError: ``invalid_operation`` when the subscription has ended; the store's
                error if following failed.
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise AsmError(ErrorCode.INVALID_OPERATION, "the subscription has ended") from None


def check_from_sequence(value: object) -> int:
    """Validate ``from_sequence`` (a non-negative int)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR, f"from_sequence must be a non-negative integer, got {value!r}"
        )
    return value


def check_types(types: Sequence[EventType | str] | None) -> list[EventType] | None:
    """Validate an event-type filter."""
    if types is None:
        return None
    if isinstance(types, str) or not isinstance(types, Sequence):
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"types must be a sequence of event types, got {types!r}")
    out: list[EventType] = []
    for item in types:
        try:
            out.append(EventType(item))
        except ValueError:
            raise AsmError(ErrorCode.VALIDATION_ERROR, f"unknown event type: {item!r}") from None
    return out


class SubscriptionHub:
    """The subscriptions of one session: opens them, nudges them, closes them.

    Args:
        store: Where followers read from.
        session_id: The session followed.
        long_poll: Seconds a caught-up follower long-polls the store between nudges.
    """

    def __init__(self, store: SessionStore, session_id: str, *, long_poll: float) -> None:
        self._store = store
        self._session_id = session_id
        self._long_poll = long_poll
        self._followers: set[_Follower] = set()

    def __len__(self) -> int:
        return len(self._followers)

    def nudge(self) -> None:
        """New events were persisted: every waiting follower reads now."""
        for follower in self._followers:
            follower.nudge()

    @asynccontextmanager
    async def open(
        self,
        tg: TaskGroup,
        from_sequence: int,
        run_id: str | None,
        types: list[EventType] | None,
        *,
        buffer_size: int,
        page_size: int,
    ) -> AsyncIterator[Subscription]:
        """A subscription whose follower runs in ``tg``; leaving the block unsubscribes."""
        send, receive = anyio.create_memory_object_stream[Event](buffer_size)
        follower = _Follower(
            self._store,
            self._session_id,
            from_sequence,
            send,
            run_id=run_id,
            types=types,
            page_size=page_size,
            long_poll=self._long_poll,
        )
        self._followers.add(follower)
        tg.start_soon(follower.run, name=f"asm-subscriber-{self._session_id}")
        try:
            with receive:
                yield Subscription(receive, follower, from_sequence)
        finally:
            follower.stop()
            self._followers.discard(follower)

    async def close(self, grace: float) -> None:
        """Let followers deliver what is stored now, waiting at most ``grace`` seconds.

        A subscriber that does not read must not hold a close up; its follower is cancelled
        with the task group that owns it.
        """
        followers = list(self._followers)
        for follower in followers:
            follower.close()
        with anyio.move_on_after(grace):
            for follower in followers:
                await follower.finished.wait()

    def abort(self) -> None:
        """End every subscriber's stream (after the owning task group has exited)."""
        for follower in self._followers:
            follower.abort()
