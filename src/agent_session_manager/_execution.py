"""Per-call machinery of ``SessionManager.execute_run``: ordered event persistence and results."""

from __future__ import annotations

import inspect
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import Field

from .core import AsmError, ErrorCode, Event, EventType, Run, RunStatus, Session, TokenUsage
from .core._base import DomainModel, new_id, utc_now
from .core.enums import RUN_STATUS_EVENT, TERMINAL_RUN_EVENTS
from .core.redaction import redact_data
from .ports import ProviderEvent

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ("EventCallback", "RunExecution", "RunResult", "as_input", "input_messages")

log = logging.getLogger(__name__)

EventCallback = Callable[[Event], Any]
"""A plain or async callable receiving each persisted :class:`Event`."""


class RunResult(DomainModel):
    """The outcome of a successful run.

    ``output`` holds ``content``, ``tool_calls`` and ``stop_reason``; ``events`` are the run's
    persisted events (with sequence numbers) written during this execution.
    """

    session_id: str
    run_id: str
    output: dict[str, Any] = Field(default_factory=dict)
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float | None = None
    events: list[Event] = Field(default_factory=list)
    provider_session_id: str | None = None
    model: str | None = None
    policy: dict[str, Any] | None = None
    workspace: dict[str, Any] | None = None


class _OrderLock:
    """A FIFO async lock that costs nothing when uncontended.

    ``emit`` takes it once per event, so unlike ``anyio.Lock`` it does not checkpoint on an
    uncontended acquire (the store call inside the critical section awaits anyway). Waiters
    are handed the lock in arrival order.
    """

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: deque[anyio.Event] = deque()

    async def __aenter__(self) -> None:
        if not self._locked:
            self._locked = True
            return
        turn = anyio.Event()
        self._waiters.append(turn)
        try:
            await turn.wait()
        except BaseException:
            if turn.is_set():  # handed the lock while being cancelled: pass it on
                self._release()
            else:
                self._waiters.remove(turn)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # ownership moves to the next waiter
        else:
            self._locked = False


@dataclass(eq=False)
class Inflight:
    scope: anyio.CancelScope
    done: anyio.Event = field(default_factory=anyio.Event)
    cancel_requested: bool = False


def as_input(value: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, str):
        if not value.strip():
            raise AsmError(ErrorCode.INVALID_INPUT, "prompt cannot be empty")
        return {"prompt": value}
    if isinstance(value, dict):
        return dict(value)
    raise AsmError(ErrorCode.INVALID_INPUT, f"run input must be a str or a dict, got {type(value).__name__}")


def input_messages(run_input: dict[str, Any]) -> list[dict[str, str]]:
    messages = run_input.get("messages")
    out: list[dict[str, str]] = []
    if isinstance(messages, list):
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            content = msg.get("content")
            if content is None or content == "":
                continue
            text = content if isinstance(content, str) else repr(content)
            out.append({"role": str(msg.get("role") or "user").lower(), "content": text})
    elif isinstance(run_input.get("prompt"), str) and run_input["prompt"]:
        out.append({"role": "user", "content": run_input["prompt"]})
    return out


class RunExecution:
    """Per-call state of one ``execute_run``: persists events in the guaranteed order."""

    def __init__(
        self,
        manager: SessionManager,
        run: Run,
        session: Session,
        on_event: EventCallback | None,
    ) -> None:
        self.manager = manager
        self.run = run
        self.session = session
        self.on_event = on_event
        self.events: list[Event] = []
        self.started: Event | None = None
        self.provider_info: dict[str, Any] = {}
        self.terminal_data: dict[str, Any] = {}
        self.callback_error: Exception | None = None
        self._lock = _OrderLock()

    def _event(
        self,
        type_: EventType,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> Event:
        # Every field comes from already-validated models (ProviderEvent, Run), so the Event is
        # assembled without a second validation pass: this is the hot path of every run.
        name = self.manager.adapter.name
        return Event.model_construct(
            id=new_id("evt"),
            type=type_,
            session_id=self.run.session_id,
            run_id=self.run.id,
            sequence_number=None,
            timestamp=timestamp if timestamp is not None and timestamp.tzinfo is not None else utc_now(),
            data=redact_data(data) if self.manager.redact_secrets else dict(data),
            metadata={**metadata, "provider": name} if metadata else {"provider": name},
            provider=name,
        )

    async def _deliver(self, events: Sequence[Event], *, finalizing: bool = False) -> None:
        """Record ``events`` and hand them to ``on_event``.

        While the run executes, an exception from ``on_event`` propagates into the adapter's
        ``emit`` call (aborting the run; see :meth:`SessionManager.execute_run`). While the
        run is being finalized it is logged and swallowed: the terminal event and status
        must still be written and the run's own outcome reported.
        """
        self.events.extend(events)
        if self.on_event is None:
            return
        for event in events:
            try:
                outcome = self.on_event(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                if not finalizing:
                    self.callback_error = exc
                    raise
                log.warning(
                    "on_event callback raised %s while finalizing run %s",
                    type(exc).__name__,
                    self.run.id,
                    exc_info=True,
                )

    async def ensure_started(self, data: dict[str, Any] | None = None, *, finalizing: bool = False) -> Event:
        if self.started is not None:
            return self.started
        info = dict(data or {})
        info.setdefault("provider", self.manager.adapter.name)
        started = self._event(EventType.RUN_STARTED, info)
        batch = [started] + [
            self._event(EventType.MESSAGE_SENT, msg) for msg in input_messages(self.run.input)
        ]
        stored = await self.manager.store.append_events(batch)
        self.started = stored[0]
        await self._deliver(stored, finalizing=finalizing)
        return self.started

    def _note_provider_info(self, data: dict[str, Any]) -> None:
        psid = data.get("provider_session_id") or data.get("session_id") or data.get("thread_id")
        if isinstance(psid, str) and psid:
            self.provider_info.setdefault("provider_session_id", psid)
        for key in ("model", "tools"):
            if data.get(key) is not None:
                self.provider_info.setdefault(key, data[key])

    async def emit(self, pe: ProviderEvent) -> Event:
        async with self._lock:
            if pe.type is EventType.RUN_STARTED:
                self._note_provider_info(pe.data)
                return await self.ensure_started(pe.data)
            if pe.type in TERMINAL_RUN_EVENTS:
                # The manager owns the single terminal event; keep the adapter's details.
                self.terminal_data.update(pe.data)
                return self._event(pe.type, pe.data, pe.metadata, pe.timestamp)
            await self.ensure_started()
            stored = await self.manager.store.append_event(
                self._event(pe.type, pe.data, pe.metadata, pe.timestamp)
            )
            await self._deliver([stored])
            return stored

    async def finish(self, status: RunStatus, data: dict[str, Any], **run_updates: Any) -> Run:
        """Write the one terminal event, then the terminal run (recovery relies on this order)."""
        async with self._lock:
            current = await self.manager.store.get_run(self.run.id)
            if current.status.is_terminal:
                # Finalized elsewhere (e.g. a cross-process cancel): never write a second terminal.
                self.run = current
                return current
            await self.ensure_started(finalizing=True)
            event = self._event(RUN_STATUS_EVENT[status], {**self.terminal_data, **data})
            stored = await self.manager.store.append_event(event)
            metadata = {**self.run.metadata, "provider": self.manager.adapter.name, **self.provider_info}
            self.run = self.run.with_status(status, metadata=metadata, **run_updates)
            await self.manager.store.save_run(self.run)
            await self._deliver([stored], finalizing=True)
            return self.run
