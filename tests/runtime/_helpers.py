"""Shared fakes for the runtime tests (real subclasses, no mocks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, Run, RunStatus
from agent_session_manager.core.enums import TERMINAL_RUN_EVENTS
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.testing import Script, ScriptedAdapter, text_script


def blocking_script() -> Script:
    base = text_script()
    return Script(steps=base.steps, result=base.result, block=True)


def blocking_adapter(**kwargs: Any) -> ScriptedAdapter:
    return ScriptedAdapter(blocking_script(), **kwargs)


class CountingStore(InMemorySessionStore):
    """Records every get_events call: (after, run_id, number of events returned)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[int | None, str | None, int]] = []
        self.fail_next_incremental_read = False

    async def get_events(self, session_id: str, **kwargs: Any) -> list[Event]:
        after = kwargs.get("after")
        if self.fail_next_incremental_read and after is not None:
            self.fail_next_incremental_read = False
            raise AsmError(ErrorCode.STORAGE_ERROR, "injected read failure")
        events = await super().get_events(session_id, **kwargs)
        self.reads.append((after, kwargs.get("run_id"), len(events)))
        return events


class CrashingStore(InMemorySessionStore):
    """Raises a non-AsmError when a chosen run is saved as running (a crash inside execute_run)."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_runs: set[str] = set()

    async def save_run(self, run: Run) -> None:
        if run.id in self.crash_runs and run.status is RunStatus.RUNNING:
            raise RuntimeError("disk on fire")
        await super().save_run(run)


async def terminal_events(store: InMemorySessionStore, session_id: str, run_id: str) -> list[Event]:
    events = await store.get_events(session_id, run_id=run_id)
    return [e for e in events if e.type in TERMINAL_RUN_EVENTS]


def types_of(events: Sequence[Event]) -> list[EventType]:
    return [e.type for e in events]
