"""ScriptedAdapter: a deterministic provider for tests, demos and benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..core import AsmError, Capability, CapabilityType, ErrorCode, EventType, Run, Session, TokenUsage
from ..ports import Emit, ProviderAdapter, ProviderEvent, ProviderResult

__all__ = ("Script", "ScriptedAdapter", "ScriptedCall", "Step", "text_script")


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted event, emitted after ``delay`` seconds."""

    type: EventType | str
    data: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Script:
    """What one run does.

    Steps are emitted in order (each after its delay). Then, if ``block`` is set, the run
    waits until :meth:`ScriptedAdapter.release` (or cancel). Then it raises ``error`` if given
    (after ``fail_after`` steps when that is set), else returns ``result``.
    """

    steps: Sequence[Step | ProviderEvent] = ()
    result: ProviderResult | None = None
    error: AsmError | Exception | None = None
    fail_after: int | None = None
    block: bool = False
    delay: float = 0.0


def text_script(
    text: str = "Hello from the scripted provider.",
    *,
    chunks: int = 4,
    usage: TokenUsage | None = None,
    model: str = "scripted-1",
    delay: float = 0.0,
    session_id: str = "scripted-session",
) -> Script:
    """A typical streamed answer: run_started, deltas, message_received, token usage."""
    usage = usage or TokenUsage(input_tokens=12, output_tokens=len(text.split()))
    size = max(1, -(-len(text) // max(1, chunks)))
    parts = [text[i : i + size] for i in range(0, len(text), size)] or [""]
    steps: list[Step] = [
        Step(EventType.RUN_STARTED, {"provider_session_id": session_id, "model": model}),
        *(Step(EventType.MESSAGE_STREAMED, {"delta": p, "content": p}, delay) for p in parts),
        Step(EventType.MESSAGE_RECEIVED, {"role": "assistant", "content": text}),
        Step(EventType.TOKEN_USAGE_UPDATED, usage.model_dump(mode="json")),
    ]
    return Script(
        steps=steps,
        result=ProviderResult(
            output={"content": text, "tool_calls": [], "stop_reason": "end_turn"},
            token_usage=usage,
            provider_session_id=session_id,
            model=model,
            turn_count=1,
        ),
    )


@dataclass(slots=True)
class ScriptedCall:
    """A record of one ``execute`` call."""

    run_id: str
    session_id: str
    input: dict[str, Any]
    opts: dict[str, Any]
    context: dict[str, Any]
    outcome: str = "running"


class ScriptedAdapter(ProviderAdapter):
    """A provider whose behaviour is scripted per run.

    Args:
        scripts: Scripts used in order, one per ``execute`` call (the last repeats);
            default :func:`text_script`.
        script_for: Alternatively, a function choosing the script for each run.
        name: The provider name.
        capabilities: What the adapter declares.

    It honours :meth:`cancel` and anyio cancellation, records every call in ``calls``, and
    tracks ``in_flight`` and ``max_in_flight`` (the most runs it executed at once).
    """

    def __init__(
        self,
        scripts: Sequence[Script] | Script | None = None,
        *,
        script_for: Callable[[Run], Script] | None = None,
        name: str = "scripted",
        capabilities: Sequence[Capability] | None = None,
    ) -> None:
        if isinstance(scripts, Script):
            scripts = [scripts]
        self._scripts: list[Script] = list(scripts) if scripts is not None else [text_script()]
        if not self._scripts:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "scripts cannot be empty")
        self._script_for = script_for
        self.name = name
        self._capabilities = list(
            capabilities
            if capabilities is not None
            else [
                Capability(name="chat", type=CapabilityType.SAMPLING),
                Capability(name="tools", type=CapabilityType.TOOL),
            ]
        )
        self.calls: list[ScriptedCall] = []
        self._events: dict[int, ProviderEvent] = {}
        self.cancelled: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._cancel_events: dict[str, anyio.Event] = {}
        self._release = anyio.Event()
        self._released_runs: set[str] = set()
        self._release_events: dict[str, anyio.Event] = {}
        self._call_count_changed: anyio.Event | None = None

    def capabilities(self) -> list[Capability]:
        """The declared capabilities."""
        return list(self._capabilities)

    def _provider_event(self, step: Step) -> ProviderEvent:
        # Validated once per step: scripts replay the same steps for every run.
        event = self._events.get(id(step))
        if event is None or event.type != step.type:
            event = self._events[id(step)] = ProviderEvent(type=step.type, data=dict(step.data))
        return event

    def _pick(self, run: Run) -> Script:
        if self._script_for is not None:
            return self._script_for(run)
        index = min(len(self.calls) - 1, len(self._scripts) - 1)
        return self._scripts[index]

    def release(self, run_id: str | None = None) -> None:
        """Let blocked runs finish: one run, or every run (now and later) when ``None``."""
        if run_id is None:
            self._release.set()
        else:
            self._released_runs.add(run_id)
            event = self._release_events.get(run_id)
            if event is not None:
                event.set()

    async def wait_for_calls(self, count: int) -> None:
        """Wait until ``execute`` has been called at least ``count`` times."""
        while len(self.calls) < count:
            if self._call_count_changed is None:
                self._call_count_changed = anyio.Event()
            await self._call_count_changed.wait()

    async def cancel(self, run_id: str) -> None:
        """Stop the run: its ``execute`` raises ``AsmError(cancelled)``."""
        self.cancelled.append(run_id)
        event = self._cancel_events.get(run_id)
        if event is not None:
            event.set()

    async def _pause(self, seconds: float, wake: anyio.Event, run_id: str) -> None:
        if seconds > 0:
            with anyio.move_on_after(seconds):
                await wake.wait()
        self._check_cancel(run_id)

    def _check_cancel(self, run_id: str) -> None:
        if run_id in self.cancelled:
            raise AsmError(ErrorCode.CANCELLED, f"run {run_id} cancelled", {"run_id": run_id})

    async def _block(self, cancelled: anyio.Event, run_id: str) -> None:
        if self._release.is_set() or run_id in self._released_runs:
            return
        released = self._release_events.setdefault(run_id, anyio.Event())
        async with anyio.create_task_group() as tg:

            async def first_of(event: anyio.Event) -> None:
                await event.wait()
                tg.cancel_scope.cancel()

            for event in (cancelled, released, self._release):
                tg.start_soon(first_of, event)
        self._check_cancel(run_id)

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        """Play the run's script (see :class:`Script`)."""
        call = ScriptedCall(run.id, session.id, dict(run.input), dict(opts), dict(session.context))
        self.calls.append(call)
        if self._call_count_changed is not None:
            self._call_count_changed.set()
            self._call_count_changed = None
        script = self._pick(run)
        wake = self._cancel_events.setdefault(run.id, anyio.Event())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self._pause(script.delay, wake, run.id)
            for index, step in enumerate(script.steps):
                if script.fail_after is not None and index >= script.fail_after:
                    break
                if isinstance(step, Step):
                    await self._pause(step.delay, wake, run.id)
                    event = self._provider_event(step)
                else:
                    event = step
                await emit(event)
                self._check_cancel(run.id)
            if script.block:
                await self._block(wake, run.id)
            if script.error is not None:
                raise script.error
            call.outcome = "completed"
            return script.result or ProviderResult(output={"content": "", "stop_reason": "end_turn"})
        except AsmError as exc:
            call.outcome = "cancelled" if exc.code is ErrorCode.CANCELLED else "error"
            raise
        except anyio.get_cancelled_exc_class():
            call.outcome = "cancelled"
            raise
        except Exception:
            call.outcome = "error"
            raise
        finally:
            self.in_flight -= 1
            self._cancel_events.pop(run.id, None)
            self._release_events.pop(run.id, None)
