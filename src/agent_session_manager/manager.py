"""SessionManager: stateless orchestration of sessions and runs over a store and a provider.

The manager follows the anchor's ``execute_run`` algorithm with these guarantees:

* ``run_started`` is the first event of a run and exactly one terminal event
  (run_completed | run_failed | run_cancelled | run_timeout) is the last. Adapters may emit
  ``run_started`` (its data — provider session id, model — is kept) and terminal events (their
  data is folded into the one terminal event the manager writes).
* A run cancelled while executing ends ``cancelled`` (never overwritten as failed).
* A provider timeout (``provider_timeout``) or the ``timeout=`` deadline ends ``timeout``.
* ``on_event`` receives each persisted :class:`Event` (with its sequence number).

The only state kept between calls is the set of runs executing in this process (so that
``cancel_run`` can reach them); everything else lives in the store.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, NoReturn

import anyio

from ._execution import EventCallback, Inflight, RunExecution, RunResult, as_input
from .core import (
    AsmError,
    Capability,
    CapabilityResolver,
    CapabilityType,
    ErrorCode,
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)
from .core.redaction import redact, redact_data
from .core.transcript import Transcript, build_transcript
from .ports import ProviderAdapter, ProviderResult, SessionStore

__all__ = ("EventCallback", "RunResult", "SessionManager")

log = logging.getLogger(__name__)

# How many pending-run cancels this manager remembers, to refuse a racing execute_run.
_CANCELLED_MEMORY = 4096
_CONTINUATION_MODES = frozenset({"auto", "replay", "native"})
_CONTINUATION_OPTS = frozenset({"max_messages", "max_chars", "max_tokens_approx"})
_STATUS_FOR_ERROR = {
    ErrorCode.CANCELLED: RunStatus.CANCELLED,
    ErrorCode.TIMEOUT: RunStatus.TIMEOUT,
    ErrorCode.PROVIDER_TIMEOUT: RunStatus.TIMEOUT,
}


class SessionManager:
    """Orchestrates sessions and runs over a :class:`SessionStore` and a :class:`ProviderAdapter`.

    Args:
        store: Where sessions, runs and events live.
        adapter: The provider that executes runs.
        redact_secrets: Redact known secret patterns from persisted event data (default on).
        cancel_grace: Seconds a provider gets to stop after ``cancel`` before its task is
            cancelled outright.
    """

    def __init__(
        self,
        store: SessionStore,
        adapter: ProviderAdapter,
        *,
        redact_secrets: bool = True,
        cancel_grace: float = 5.0,
    ) -> None:
        self.store = store
        self.adapter = adapter
        self.redact_secrets = redact_secrets
        self.cancel_grace = cancel_grace
        self._inflight: dict[str, Inflight] = {}
        self._cancelled_pending: OrderedDict[str, None] = OrderedDict()
        self._claim_lock = anyio.Lock()

    # -- sessions -------------------------------------------------------------------------

    async def _session_event(self, session: Session, type_: EventType, data: dict[str, Any]) -> Event:
        return await self.store.append_event(
            Event(type=type_, session_id=session.id, data=data, provider=self.adapter.name)
        )

    async def start_session(
        self,
        agent_id: str | None = None,
        *,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        parent_session_id: str | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a pending session and record ``session_created``.

        Raises:
            AsmError: ``validation_error`` for an empty ``agent_id`` or bad fields.
        """
        fields: dict[str, Any] = {
            "agent_id": agent_id if agent_id is not None else self.adapter.name,
            "context": dict(context or {}),
            "metadata": {**(metadata or {}), "provider": self.adapter.name},
            "tags": list(tags or ()),
            "parent_session_id": parent_session_id,
        }
        if session_id is not None:
            fields["id"] = session_id
        session = Session(**fields)
        await self.store.save_session(session)
        await self._session_event(session, EventType.SESSION_CREATED, {"provider": self.adapter.name})
        return session

    async def get_session(self, session_id: str) -> Session:
        """Return the session (``session_not_found`` if absent)."""
        return await self.store.get_session(session_id)

    async def _transition(
        self, session_id: str, status: SessionStatus, type_: EventType, data: dict[str, Any]
    ) -> Session:
        session = (await self.store.get_session(session_id)).with_status(status)
        await self.store.save_session(session)
        await self._session_event(session, type_, data)
        return session

    async def activate_session(self, session_id: str) -> Session:
        """pending|paused → active, recording ``session_started`` (or ``session_resumed``)."""
        current = await self.store.get_session(session_id)
        type_ = (
            EventType.SESSION_RESUMED if current.status is SessionStatus.PAUSED else EventType.SESSION_STARTED
        )
        return await self._transition(session_id, SessionStatus.ACTIVE, type_, {})

    async def pause_session(self, session_id: str) -> Session:
        """Active → paused, recording ``session_paused``."""
        return await self._transition(session_id, SessionStatus.PAUSED, EventType.SESSION_PAUSED, {})

    async def complete_session(self, session_id: str) -> Session:
        """→ completed (final), recording ``session_completed``."""
        return await self._transition(session_id, SessionStatus.COMPLETED, EventType.SESSION_COMPLETED, {})

    async def fail_session(self, session_id: str, error: AsmError | None = None) -> Session:
        """→ failed (final), recording ``session_failed`` with the error code and message."""
        err = error or AsmError(ErrorCode.UNKNOWN_ERROR)
        data = {"error_code": err.code.value, "error_message": redact(err.message)}
        return await self._transition(session_id, SessionStatus.FAILED, EventType.SESSION_FAILED, data)

    async def cancel_session(self, session_id: str) -> Session:
        """→ cancelled (final), recording ``session_cancelled``."""
        return await self._transition(session_id, SessionStatus.CANCELLED, EventType.SESSION_CANCELLED, {})

    # -- runs -----------------------------------------------------------------------------

    async def start_run(
        self,
        session_id: str,
        input: str | dict[str, Any],
        *,
        required_capabilities: Sequence[CapabilityType | str | Capability] | None = None,
        optional_capabilities: Sequence[CapabilityType | str | Capability] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """Create a pending run in an open session (no event is recorded).

        Raises:
            AsmError: ``session_not_found``; ``invalid_operation`` for a finished session;
                ``missing_required_capability`` when negotiation fails; ``invalid_input``.
        """
        run_input = as_input(input)
        session = await self.store.get_session(session_id)
        if session.status.is_terminal:
            raise AsmError(
                ErrorCode.INVALID_OPERATION,
                f"Session {session_id} is {session.status.value}; no new runs can start",
                {"session_id": session_id, "status": session.status.value},
            )
        run_meta = dict(metadata or {})
        if required_capabilities or optional_capabilities:
            resolver = CapabilityResolver(required_capabilities or (), optional_capabilities or ())
            result = resolver.negotiate(self.adapter.capabilities())
            run_meta["capability_negotiation"] = result.model_dump(mode="json")
        run = Run(session_id=session_id, input=run_input, metadata=run_meta)
        await self.store.save_run(run)
        return run

    async def get_run(self, run_id: str) -> Run:
        """Return the run (``run_not_found`` if absent)."""
        return await self.store.get_run(run_id)

    async def get_session_runs(self, session_id: str, *, status: RunStatus | str | None = None) -> list[Run]:
        """The session's runs, oldest first."""
        return await self.store.list_runs(session_id, status=status)

    @staticmethod
    def _check_unsupported(policy: Any, policies: Any, workspace: Any) -> None:
        for name, value in (("policy", policy), ("policies", policies), ("workspace", workspace)):
            if value is not None and value != [] and value is not False:
                raise AsmError(
                    ErrorCode.CAPABILITY_NOT_SUPPORTED,
                    f"the {name!r} option is not available in this version",
                    {"option": name},
                )

    async def _session_for_adapter(
        self,
        session: Session,
        continuation: bool | str | None,
        continuation_opts: dict[str, Any] | None,
        transcript: Transcript | None = None,
    ) -> tuple[Session, dict[str, Any]]:
        if continuation is None or continuation is False:
            return session, {}
        mode = "auto" if continuation is True else continuation
        if not isinstance(mode, str) or mode not in _CONTINUATION_MODES:
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                f"continuation must be False, True, 'auto', 'replay' or 'native'; got {continuation!r}",
            )
        opts = dict(continuation_opts or {})
        unknown = sorted(set(opts) - _CONTINUATION_OPTS)
        if unknown:
            raise AsmError(
                ErrorCode.VALIDATION_ERROR,
                f"unknown continuation_opts: {', '.join(unknown)}",
                {"unknown": unknown, "valid": sorted(_CONTINUATION_OPTS)},
            )
        extra: dict[str, Any] = {}
        sessions = session.metadata.get("provider_sessions")
        entry = sessions.get(self.adapter.name) if isinstance(sessions, dict) else None
        native_id = entry.get("provider_session_id") if isinstance(entry, dict) else None
        if mode == "native" and not native_id:
            raise AsmError(
                ErrorCode.INVALID_OPERATION,
                "Native continuation needs a provider session id from an earlier run of this provider; "
                "use continuation='auto' to fall back to transcript replay.",
            )
        if mode in ("native", "auto") and native_id:
            extra["resume_session_id"] = native_id
            return session, extra
        if transcript is not None:
            if transcript.session_id != session.id:
                raise AsmError(
                    ErrorCode.VALIDATION_ERROR,
                    f"transcript is for session {transcript.session_id}, not {session.id}",
                )
            # Re-applying limits validates them (validation_error) before anything changes.
            transcript = transcript.extend((), **opts) if opts else transcript
        else:
            events = await self.store.get_events(session.id)
            transcript = build_transcript(events, session_id=session.id, **opts)
        context = {**session.context, "transcript": transcript.model_dump(mode="json")}
        return session.model_copy(update={"context": context}), extra

    async def execute_run(
        self,
        run_id: str,
        *,
        on_event: EventCallback | None = None,
        continuation: bool | str | None = None,
        continuation_opts: dict[str, Any] | None = None,
        adapter_opts: dict[str, Any] | None = None,
        policy: Any = None,
        policies: Any = None,
        workspace: Any = None,
        timeout: float | None = None,
        transcript: Transcript | None = None,
    ) -> RunResult:
        """Execute a pending run through the provider and persist everything it reports.

        With transcript replay (``continuation="replay"``, or ``"auto"``/``True`` without a
        native provider session), the replayed transcript is built from the session's whole
        log, or taken from ``transcript`` when the caller keeps one up to date (e.g. the
        SessionServer's incremental cache); ``continuation_opts`` limits apply either way.

        ``on_event`` (plain or async) receives each persisted event. If it raises while the
        run executes, the exception reaches the adapter through ``emit`` and the run ends
        ``failed`` (``internal_error``, or the callback's own code if it raised ``AsmError``);
        if it raises while the run is being finalized, the error is logged and ignored.

        Returns:
            The :class:`RunResult` of a completed run.

        Raises:
            AsmError: the provider's error (run ``failed``); ``cancelled`` (run ``cancelled``);
                ``timeout``/``provider_timeout`` (run ``timeout``); ``run_not_found``,
                ``invalid_transition`` (run not pending; nothing changed); ``validation_error``
                (bad ``timeout``, ``continuation`` or ``continuation_opts``; nothing changed);
                ``capability_not_supported`` (policy/workspace options; nothing changed).
        """
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not timeout > 0
            or not math.isfinite(timeout)
        ):
            raise AsmError(ErrorCode.VALIDATION_ERROR, f"timeout must be a positive number, got {timeout!r}")
        self._check_unsupported(policy, policies, workspace)
        run = await self.store.get_run(run_id)
        session = await self.store.get_session(run.session_id)
        self._check_pending(run)
        adapter_session, extra_opts = await self._session_for_adapter(
            session, continuation, continuation_opts, transcript
        )
        opts = {**extra_opts, **(adapter_opts or {})}

        async with self._claim_lock:
            # A concurrent cancel_run/execute_run of this manager may have claimed the run while
            # the continuation was being prepared; both leave a mark here (no second read).
            if run_id in self._inflight or run_id in self._cancelled_pending:
                raise AsmError(
                    ErrorCode.INVALID_TRANSITION,
                    f"Run {run_id} was claimed by a concurrent cancel_run or execute_run",
                    {"run_id": run_id},
                )
            run = run.with_status(RunStatus.RUNNING)
            await self.store.save_run(run)
            inflight = Inflight(scope=anyio.CancelScope())
            self._inflight[run_id] = inflight
        execution = RunExecution(self, run, session, on_event)
        try:
            return await self._drive(execution, adapter_session, opts, inflight, timeout)
        finally:
            self._inflight.pop(run_id, None)
            inflight.done.set()

    @staticmethod
    def _check_pending(run: Run) -> None:
        if run.status is not RunStatus.PENDING:
            raise AsmError(
                ErrorCode.INVALID_TRANSITION,
                f"Run {run.id} is {run.status.value}; only pending runs can execute",
                {"run_id": run.id, "status": run.status.value},
            )

    async def _drive(
        self,
        execution: RunExecution,
        session: Session,
        opts: dict[str, Any],
        inflight: Inflight,
        timeout: float | None,
    ) -> RunResult:
        run = execution.run
        result: ProviderResult | None = None
        error: AsmError | None = None
        try:
            with inflight.scope:
                if timeout is not None:
                    inflight.scope.deadline = min(inflight.scope.deadline, anyio.current_time() + timeout)
                try:
                    result = await self.adapter.execute(run, session, execution.emit, **opts)
                except AsmError as exc:
                    error = exc
                except anyio.get_cancelled_exc_class():
                    raise
                except Exception as exc:
                    if exc is execution.callback_error:
                        message = f"on_event callback raised {type(exc).__name__}: {redact(str(exc))}"
                    else:
                        log.exception("provider %s crashed executing %s", self.adapter.name, run.id)
                        message = (
                            f"provider {self.adapter.name} raised {type(exc).__name__}: {redact(str(exc))}"
                        )
                    error = AsmError(ErrorCode.INTERNAL_ERROR, message, {"exception": type(exc).__name__})
        except BaseException:
            # Our caller was cancelled: finalize as cancelled (shielded), then propagate.
            with anyio.CancelScope(shield=True):
                await execution.finish(
                    RunStatus.CANCELLED,
                    {"reason": "caller cancelled"},
                    error={"code": "cancelled", "message": "run cancelled"},
                )
            raise
        # The scope is cancelled by the timeout= deadline or by cancel_run's grace period. An
        # adapter may turn that cancellation into an AsmError, so look at cancel_called too.
        deadline_hit = not inflight.cancel_requested and (
            inflight.scope.cancelled_caught or (inflight.scope.cancel_called and result is None)
        )

        with anyio.CancelScope(shield=True):
            if inflight.cancel_requested or (error is not None and error.code is ErrorCode.CANCELLED):
                reason = (
                    "cancel requested"
                    if inflight.cancel_requested
                    else redact(error.message if error else "")
                )
                done = await execution.finish(
                    RunStatus.CANCELLED,
                    {"reason": reason},
                    error={"code": "cancelled", "message": "run cancelled"},
                )
                self._raise_for(done, error)
            if deadline_hit or (
                error is not None and error.code in (ErrorCode.TIMEOUT, ErrorCode.PROVIDER_TIMEOUT)
            ):
                err = error or AsmError(ErrorCode.TIMEOUT, f"Run {run.id} exceeded its timeout of {timeout}s")
                if deadline_hit and err.code not in (ErrorCode.TIMEOUT, ErrorCode.PROVIDER_TIMEOUT):
                    err = AsmError(ErrorCode.TIMEOUT, f"Run {run.id} exceeded its timeout of {timeout}s")
                done = await execution.finish(
                    RunStatus.TIMEOUT,
                    {"error_code": err.code.value, "error_message": redact(err.message)},
                    error={"code": err.code.value, "message": redact(err.message)},
                )
                self._raise_for(done, err)
            if error is not None or result is None:
                err = error or AsmError(ErrorCode.INTERNAL_ERROR, "provider returned no result")
                details = redact_data(err.details)
                done = await execution.finish(
                    RunStatus.FAILED,
                    {"error_code": err.code.value, "error_message": redact(err.message)},
                    error={"code": err.code.value, "message": redact(err.message), "details": details},
                )
                self._raise_for(done, err)
            return await self._complete(execution, result)
        raise AsmError(  # pragma: no cover - a shielded scope does not swallow exceptions
            ErrorCode.INTERNAL_ERROR, "unreachable: shielded finalization did not return"
        )

    @staticmethod
    def _raise_for(run: Run, error: AsmError | None = None) -> NoReturn:
        """Raise the error matching the run's stored terminal status.

        ``error`` is raised when it describes that status; a run finalized elsewhere (for
        example cancelled by another process) raises according to its stored status.
        """
        if run.status is RunStatus.CANCELLED:
            if error is not None and error.code is ErrorCode.CANCELLED:
                raise error
            raise AsmError(ErrorCode.CANCELLED, f"Run {run.id} was cancelled", {"run_id": run.id})
        if error is not None and _STATUS_FOR_ERROR.get(error.code, RunStatus.FAILED) is run.status:
            raise error
        stored = run.error or {}
        code = stored.get("code") or ErrorCode.INTERNAL_ERROR
        message = stored.get("message") or f"Run {run.id} was finalized as {run.status.value}"
        raise AsmError(code, str(message), {"run_id": run.id, "status": run.status.value})

    async def _complete(self, execution: RunExecution, result: ProviderResult) -> RunResult:
        if result.provider_session_id:
            execution.provider_info["provider_session_id"] = result.provider_session_id
        if result.model:
            execution.provider_info["model"] = result.model
        output = {"content": "", "tool_calls": [], "stop_reason": None, **result.output}
        data = {
            "stop_reason": output.get("stop_reason"),
            "token_usage": result.token_usage.model_dump(mode="json"),
        }
        if result.cost_usd is not None:
            data["cost_usd"] = result.cost_usd
        run = await execution.finish(
            RunStatus.COMPLETED,
            data,
            output=output,
            token_usage=result.token_usage,
            cost_usd=result.cost_usd,
            turn_count=result.turn_count,
        )
        if run.status is not RunStatus.COMPLETED:
            self._raise_for(run)
        psid = execution.provider_info.get("provider_session_id")
        model = execution.provider_info.get("model")
        if psid or model:
            session = await self.store.get_session(run.session_id)
            sessions = session.metadata.get("provider_sessions")
            sessions = dict(sessions) if isinstance(sessions, dict) else {}
            sessions[self.adapter.name] = {"provider_session_id": psid, "model": model}
            await self.store.save_session(
                session.with_metadata(provider_session_id=psid, model=model, provider_sessions=sessions)
            )
        return RunResult(
            session_id=run.session_id,
            run_id=run.id,
            output=output,
            token_usage=result.token_usage,
            cost_usd=result.cost_usd,
            events=execution.events,
            provider_session_id=psid,
            model=model,
        )

    async def _ask_adapter_to_cancel(self, run_id: str) -> None:
        try:
            await self.adapter.cancel(run_id)
        except Exception as exc:  # the run is finalized regardless; a broken cancel must not stop that
            log.warning("adapter cancel of %s failed: %s", run_id, exc)

    async def cancel_run(self, run_id: str) -> str:
        """Cancel a pending or executing run; it ends ``cancelled`` with one ``run_cancelled``.

        An executing run in this process is asked to stop through the adapter and, after
        ``cancel_grace`` seconds, its task is cancelled; this call returns once the run is
        finalized. Cancelling a finished run is a no-op.

        Raises:
            AsmError: ``run_not_found``.
        """
        async with self._claim_lock:
            # Under the claim lock no execute_run of this manager can start (or have its
            # inflight entry half-registered) while the run's state is read and written.
            inflight = self._inflight.get(run_id)
            run = await self.store.get_run(run_id)
            if inflight is None:
                if run.status.is_terminal:
                    return run_id
                if run.status is RunStatus.RUNNING:
                    # Owned by another process or manager: ask the provider, then record the outcome.
                    await self._ask_adapter_to_cancel(run_id)
                await self.store.append_event(
                    Event(
                        type=EventType.RUN_CANCELLED,
                        session_id=run.session_id,
                        run_id=run.id,
                        data={"reason": "cancel requested"},
                        provider=self.adapter.name,
                    )
                )
                await self.store.save_run(
                    run.with_status(
                        RunStatus.CANCELLED, error={"code": "cancelled", "message": "run cancelled"}
                    )
                )
                self._cancelled_pending[run_id] = None
                while len(self._cancelled_pending) > _CANCELLED_MEMORY:
                    self._cancelled_pending.popitem(last=False)
                return run_id
            inflight.cancel_requested = True
        await self._ask_adapter_to_cancel(run_id)
        inflight.scope.deadline = min(inflight.scope.deadline, anyio.current_time() + self.cancel_grace)
        await inflight.done.wait()
        return run_id

    async def run_once(
        self,
        input: str | dict[str, Any],
        *,
        agent_id: str | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        required_capabilities: Sequence[CapabilityType | str | Capability] | None = None,
        optional_capabilities: Sequence[CapabilityType | str | Capability] | None = None,
        on_event: EventCallback | None = None,
        adapter_opts: dict[str, Any] | None = None,
        timeout: float | None = None,
        **execute_opts: Any,
    ) -> RunResult:
        """Create a session, run ``input`` once, and close the session.

        The session ends ``completed`` on success, ``cancelled`` when the run was cancelled
        and ``failed`` otherwise; the run's error is re-raised.
        """
        run_input = as_input(input)
        session = await self.start_session(agent_id, context=context, metadata=metadata, tags=tags)
        session = await self.activate_session(session.id)
        try:
            run = await self.start_run(
                session.id,
                run_input,
                required_capabilities=required_capabilities,
                optional_capabilities=optional_capabilities,
            )
            result = await self.execute_run(
                run.id, on_event=on_event, adapter_opts=adapter_opts, timeout=timeout, **execute_opts
            )
        except AsmError as exc:
            with anyio.CancelScope(shield=True):
                if exc.code is ErrorCode.CANCELLED:
                    await self.cancel_session(session.id)
                else:
                    await self.fail_session(session.id, exc)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.cancel_session(session.id)
            raise
        await self.complete_session(session.id)
        return result

    # -- events ---------------------------------------------------------------------------

    async def get_session_events(
        self,
        session_id: str,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int | None = None,
        run_id: str | None = None,
        types: Sequence[EventType | str] | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """The session's events in sequence order (strict ``after``/``before`` bounds)."""
        return await self.store.get_events(
            session_id, after=after, before=before, limit=limit, run_id=run_id, types=types, since=since
        )

    async def stream_session_events(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        wait_timeout: float = 5.0,
        run_id: str | None = None,
        types: Sequence[EventType | str] | None = None,
        follow: bool = True,
    ) -> AsyncIterator[Event]:
        """Yield the session's events after ``after``, then (with ``follow``) wait for new ones.

        Uses the store's long-poll, so no event is skipped or repeated; the cursor advances to
        the last sequence number yielded. With ``follow=False`` it stops at the first empty page.
        """
        cursor = after
        while True:
            page = await self.store.get_events(
                session_id,
                after=cursor,
                limit=limit,
                run_id=run_id,
                types=types,
                wait_timeout=wait_timeout if follow else 0,
            )
            if not page and not follow:
                return
            for event in page:
                yield event
                cursor = event.sequence_number or cursor
