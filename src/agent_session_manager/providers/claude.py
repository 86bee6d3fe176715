"""ClaudeAdapter: drives the Claude Code CLI through the official ``claude-agent-sdk``.

One run = one CLI process (``ClaudeSDKClient``, stream-json control protocol) answering
one user turn, with ``include_partial_messages`` on for token-level streaming. Messages
are mapped to normalized events by :mod:`._claude_events`.

Options (constructor keywords; each may be overridden per run through ``execute(**opts)``):

* ``model``, ``max_turns``, ``system_prompt`` (``None`` keeps Claude Code's own system prompt,
  the ``claude_code`` preset; a string replaces it), ``cwd``, ``env`` (added to the inherited
  environment), ``allowed_tools``, ``disallowed_tools``.
* ``permission_mode``: ``default`` → ``"default"``, ``accept_edits`` → ``"acceptEdits"``,
  ``plan`` → ``"plan"``, ``full_auto`` / ``dangerously_skip_permissions`` →
  ``"bypassPermissions"`` (inventory §5.4). Note: the CLI refuses ``bypassPermissions`` when
  running as root unless ``IS_SANDBOX=1`` is in its environment.
* ``cli_path``: the CLI executable (else env ``ASM_CLAUDE_CLI``, else the SDK's discovery:
  the CLI bundled in the wheel, then ``claude`` on ``PATH``).
* ``sdk_opts``: extra ``ClaudeAgentOptions`` fields (unknown names raise
  ``validation_error``); the normalized options above win when set. ``extra_args``: extra
  CLI flags (``{"flag": "value" | None}``).
* ``timeout``: hard deadline per run in seconds (default 1800; ``None`` disables) →
  ``provider_timeout``. ``interrupt_grace``: seconds a run may take to stop after an
  interrupt before the process is torn down (default 5).
* Per run only: ``resume_session_id`` (resume that CLI session natively with ``--resume``),
  or ``continuation="native"`` to resume the id recorded on the session
  (``session.metadata["provider_sessions"]["claude"]``). When resuming, only the run's own
  messages are sent; otherwise a replayed transcript in ``session.context`` is included in
  the prompt (:func:`~._common.prompt_from_input`).

Errors: failed results are classified by :func:`._claude_events.classify_result_error`
(auth → ``provider_authentication_failed``, 429 → ``provider_rate_limited``, 5xx/529 →
``provider_unavailable``, ``error_max_turns`` → ``provider_error`` with
``details["reason"] == "max_turns"``). A missing CLI or SDK → ``provider_unavailable``; a
crash or malformed output → ``provider_error`` with the exit code and a redacted stderr tail.

Cancellation: ``cancel(run_id)`` sends the SDK's ``interrupt`` control request; the CLI ends
the turn and ``execute`` raises ``AsmError(cancelled)``. If the run has not ended within
``interrupt_grace``, ``execute`` stops waiting and disconnects. Whatever ends a run (result,
error, deadline, cancel, or cancellation of the calling task), the process is shut down in
a shielded, bounded step: interrupt if the turn is still running, then the SDK's
``disconnect`` (close stdin → wait 5 s → SIGTERM → wait 5 s → SIGKILL), so no child is
left behind.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections import deque
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio

from ..core import AsmError, Capability, CapabilityType, ErrorCode, PermissionMode, Run, Session
from ..ports import Emit, ProviderAdapter, ProviderResult
from ._common import code_for_status, normalize_permission_mode, prompt_from_input, redact, resume_id_for

if TYPE_CHECKING:
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient

    from ._claude_events import ClaudeTurn

__all__ = ("ClaudeAdapter",)

_INSTALL_HINT = "pip install claude-agent-sdk (or agent-session-manager[claude])"
_CLI_ENV = "ASM_CLAUDE_CLI"
_STDERR_TAIL_LINES = 40
_PERMISSION_MODES: dict[PermissionMode, str] = {
    PermissionMode.DEFAULT: "default",
    PermissionMode.ACCEPT_EDITS: "acceptEdits",
    PermissionMode.PLAN: "plan",
    PermissionMode.FULL_AUTO: "bypassPermissions",
    PermissionMode.DANGEROUSLY_SKIP_PERMISSIONS: "bypassPermissions",
}
_UNSET: Any = object()


def _import_sdk() -> Any:
    try:
        import claude_agent_sdk
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test env
        raise AsmError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"claude-agent-sdk is not installed: {_INSTALL_HINT}",
            {"provider": "claude"},
        ) from exc
    return claude_agent_sdk


@dataclass(frozen=True)
class _Config:
    model: str | None = None
    permission_mode: PermissionMode | None = None
    max_turns: int | None = None
    system_prompt: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cli_path: str | None = None
    sdk_opts: Mapping[str, Any] = field(default_factory=dict)
    extra_args: Mapping[str, str | None] = field(default_factory=dict)
    timeout: float | None = 1800.0
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    interrupt_grace: float = 5.0

    @classmethod
    def build(cls, **raw: Any) -> _Config:
        """Validate raw option values (``validation_error`` on bad ones)."""
        values = {k: v for k, v in raw.items() if v is not _UNSET}
        if "permission_mode" in values:
            values["permission_mode"] = normalize_permission_mode(values["permission_mode"])
        max_turns = values.get("max_turns")
        if max_turns is not None and (not isinstance(max_turns, int) or max_turns < 1):
            raise AsmError(ErrorCode.VALIDATION_ERROR, f"max_turns must be a positive int, got {max_turns!r}")
        for key in ("timeout", "interrupt_grace"):
            value = values.get(key)
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise AsmError(ErrorCode.VALIDATION_ERROR, f"{key} must be a positive number, got {value!r}")
        if values.get("interrupt_grace", 1) is None:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "interrupt_grace must be a positive number")
        for key in ("allowed_tools", "disallowed_tools"):
            if key in values:
                values[key] = _str_tuple(key, values[key])
        for key in ("cwd", "cli_path"):
            if values.get(key) is not None:
                values[key] = str(values[key])
        for key in ("env", "sdk_opts", "extra_args"):
            if key in values:
                mapping = values[key] if values[key] is not None else {}
                if not isinstance(mapping, Mapping):
                    raise AsmError(ErrorCode.VALIDATION_ERROR, f"{key} must be a mapping")
                values[key] = dict(mapping)
        return cls(**values)

    def merged(self, overrides: Mapping[str, Any]) -> _Config:
        """A copy with the per-run ``overrides`` that name config fields applied."""
        names = {f.name for f in dataclasses.fields(self)}
        picked = {k: v for k, v in overrides.items() if k in names}
        if not picked:
            return self
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _Config.build(**{**current, **picked})


def _str_tuple(name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"{name} must be a list of tool names")
    return tuple(str(v) for v in value)


@dataclass
class _RunHandle:
    """What ``cancel`` needs to reach an executing run."""

    scope: anyio.CancelScope
    grace: float
    client: ClaudeSDKClient | None = None
    cancel_requested: bool = False
    turn_started: bool = False
    interrupted: bool = False
    stream_dead: bool = False
    emit_failed: bool = False
    finished: bool = False


class ClaudeAdapter(ProviderAdapter):
    """Claude Code (via ``claude-agent-sdk``) as a :class:`ProviderAdapter`; see module docs."""

    name = "claude"

    def __init__(
        self,
        *,
        model: str | None = None,
        permission_mode: PermissionMode | str | None = None,
        max_turns: int | None = None,
        system_prompt: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        cli_path: str | os.PathLike[str] | None = None,
        sdk_opts: Mapping[str, Any] | None = None,
        extra_args: Mapping[str, str | None] | None = None,
        timeout: float | None = 1800.0,
        allowed_tools: Sequence[str] | None = None,
        disallowed_tools: Sequence[str] | None = None,
        interrupt_grace: float = 5.0,
    ) -> None:
        self._config = _Config.build(
            model=model,
            permission_mode=permission_mode,
            max_turns=max_turns,
            system_prompt=system_prompt,
            cwd=cwd,
            env=env,
            cli_path=cli_path,
            sdk_opts=sdk_opts,
            extra_args=extra_args,
            timeout=timeout,
            allowed_tools=allowed_tools,
            disallowed_tools=disallowed_tools,
            interrupt_grace=interrupt_grace,
        )
        self._runs: dict[str, _RunHandle] = {}

    # -- port ---------------------------------------------------------------------------------
    def capabilities(self) -> list[Capability]:
        """Streaming, tools (Bash, file edits, web), system prompts, interrupt."""
        return [
            Capability(name="streaming", type=CapabilityType.SAMPLING, description="token-level deltas"),
            Capability(name="tool_use", type=CapabilityType.TOOL),
            Capability(name="bash", type=CapabilityType.CODE_EXECUTION),
            Capability(name="file_operations", type=CapabilityType.FILE_ACCESS),
            Capability(name="web", type=CapabilityType.NETWORK_ACCESS, description="WebFetch/WebSearch"),
            Capability(name="vision", type=CapabilityType.RESOURCE),
            Capability(name="system_prompts", type=CapabilityType.PROMPT),
            Capability(name="interrupt", type=CapabilityType.SAMPLING),
        ]

    def validate_config(self) -> None:
        """Check that the SDK is importable, ``sdk_opts`` names are valid and a CLI exists."""
        sdk = _import_sdk()
        _check_sdk_opts(sdk, self._config.sdk_opts)
        explicit = self._config.cli_path or os.environ.get(_CLI_ENV)
        if explicit:
            path = Path(explicit)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise AsmError(
                    ErrorCode.PROVIDER_UNAVAILABLE,
                    f"Claude Code CLI not found or not executable at {explicit}",
                    {"provider": "claude", "cli_path": explicit},
                )
            return
        bundled = Path(sdk.__file__).parent / "_bundled" / "claude"
        if not bundled.is_file() and shutil.which("claude") is None:
            raise AsmError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"Claude Code CLI not found: {_INSTALL_HINT} (its platform wheels bundle the CLI), "
                f"or set cli_path / {_CLI_ENV}",
                {"provider": "claude"},
            )

    async def cancel(self, run_id: str) -> None:
        """Interrupt the run; it must end within ``interrupt_grace`` or it is torn down."""
        handle = self._runs.get(run_id)
        if handle is None or handle.cancel_requested or handle.finished:
            return
        handle.cancel_requested = True
        handle.scope.deadline = min(handle.scope.deadline, anyio.current_time() + handle.grace)
        client = handle.client
        if client is not None and handle.turn_started and not handle.interrupted:
            handle.interrupted = True
            with anyio.move_on_after(handle.grace):
                await _interrupt(client)

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        """Run one turn of Claude Code; see the module docstring for options and errors."""
        sdk = _import_sdk()
        cfg = self._config.merged(opts)
        _check_sdk_opts(sdk, cfg.sdk_opts)
        resume = _resume_id(session, opts)
        prompt = prompt_from_input(run, None if resume else session)
        stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        options = _build_options(sdk, cfg, resume, stderr_tail)
        if run.id in self._runs:
            raise AsmError(
                ErrorCode.INVALID_OPERATION, f"run {run.id} is already executing", {"run_id": run.id}
            )

        from ._claude_events import ClaudeTurn

        turn = ClaudeTurn()
        client = sdk.ClaudeSDKClient(options)
        handle = _RunHandle(scope=anyio.CancelScope(), grace=cfg.interrupt_grace)
        self._runs[run.id] = handle
        failure: Exception | None = None
        try:
            with handle.scope, anyio.move_on_after(cfg.timeout) as deadline:
                try:
                    await self._drive(sdk, handle, client, prompt, turn, emit, stderr_tail, resume)
                except Exception as exc:
                    failure = exc
                finally:
                    handle.finished = True
                    with anyio.CancelScope(shield=True):
                        await _shutdown(client, handle, turn)
        finally:
            self._runs.pop(run.id, None)

        details: dict[str, Any] = {"provider": "claude", "provider_session_id": turn.provider_session_id}
        if handle.cancel_requested:
            raise AsmError(ErrorCode.CANCELLED, "Run was cancelled", details) from failure
        if deadline.cancelled_caught:
            raise AsmError(
                ErrorCode.PROVIDER_TIMEOUT,
                f"Claude run exceeded its {cfg.timeout:g} s deadline",
                {**details, "timeout": cfg.timeout, "stderr_tail": _tail(stderr_tail)},
            )
        if failure is not None:
            if isinstance(failure, AsmError) or handle.emit_failed:
                raise failure
            raise _process_error(sdk, failure, stderr_tail, details) from failure
        if not turn.finished:
            raise AsmError(
                ErrorCode.PROVIDER_ERROR,
                "Claude Code ended without a result message",
                {**details, "stderr_tail": _tail(stderr_tail)},
            )
        if turn.failed():
            raise turn.error()
        return turn.provider_result()

    # -- internals ----------------------------------------------------------------------------
    async def _drive(
        self,
        sdk: Any,
        handle: _RunHandle,
        client: ClaudeSDKClient,
        prompt: str,
        turn: ClaudeTurn,
        emit: Emit,
        stderr_tail: deque[str],
        resume: str | None,
    ) -> None:
        try:
            await client.connect()
        except Exception as exc:
            raise _start_error(sdk, exc, stderr_tail, resume) from exc
        handle.client = client
        if handle.cancel_requested:
            return
        handle.turn_started = True
        await client.query(prompt)
        async with aclosing(_responses(client)) as messages:
            while True:
                try:
                    message = await anext(messages)
                except StopAsyncIteration:
                    break
                except Exception:
                    handle.stream_dead = True  # the reader is gone: no interrupt can be answered
                    raise
                for event in turn.events_for(message):
                    try:
                        await emit(event)
                    except Exception:
                        handle.emit_failed = True  # the caller's error, not the provider's
                        raise


def _check_sdk_opts(sdk: Any, sdk_opts: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(sdk.ClaudeAgentOptions)}
    unknown = sorted(set(sdk_opts) - known)
    if unknown:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR,
            f"unknown sdk_opts for ClaudeAgentOptions: {', '.join(unknown)}",
            {"unknown": unknown},
        )


def _resume_id(session: Session, opts: Mapping[str, Any]) -> str | None:
    explicit = opts.get("resume_session_id")
    if explicit:
        return str(explicit)
    if opts.get("continuation") == "native":
        resume = resume_id_for(session, "claude")
        if resume is None:
            raise AsmError(
                ErrorCode.INVALID_OPERATION,
                "native continuation requested but the session has no recorded Claude session id",
                {"session_id": session.id},
            )
        return resume
    return None


def _build_options(sdk: Any, cfg: _Config, resume: str | None, stderr_tail: deque[str]) -> ClaudeAgentOptions:
    kwargs: dict[str, Any] = dict(cfg.sdk_opts)
    user_stderr = kwargs.pop("stderr", None)

    def on_stderr(line: str) -> None:
        stderr_tail.append(redact(line))
        if user_stderr is not None:
            user_stderr(line)

    kwargs["stderr"] = on_stderr
    kwargs["include_partial_messages"] = True
    if cfg.system_prompt is not None:
        kwargs["system_prompt"] = cfg.system_prompt
    else:
        kwargs.setdefault("system_prompt", {"type": "preset", "preset": "claude_code"})
    if cfg.model:
        kwargs["model"] = cfg.model
    if cfg.permission_mode is not None:
        kwargs["permission_mode"] = _PERMISSION_MODES[cfg.permission_mode]
    if cfg.max_turns is not None:
        kwargs["max_turns"] = cfg.max_turns
    if cfg.cwd:
        kwargs["cwd"] = cfg.cwd
    if cfg.env:
        kwargs["env"] = {**kwargs.get("env", {}), **cfg.env}
    cli_path = cfg.cli_path or os.environ.get(_CLI_ENV)
    if cli_path:
        kwargs["cli_path"] = cli_path
    if cfg.extra_args:
        kwargs["extra_args"] = {**kwargs.get("extra_args", {}), **cfg.extra_args}
    if cfg.allowed_tools:
        kwargs["allowed_tools"] = list(cfg.allowed_tools)
    if cfg.disallowed_tools:
        kwargs["disallowed_tools"] = list(cfg.disallowed_tools)
    if resume:
        kwargs["resume"] = resume
    options: ClaudeAgentOptions = sdk.ClaudeAgentOptions(**kwargs)
    return options


def _responses(client: ClaudeSDKClient) -> AsyncGenerator[Any, None]:
    # receive_response() is an async generator typed as AsyncIterator; closing it
    # explicitly keeps an abandoned iteration from being finalized later by the loop.
    return cast("AsyncGenerator[Any, None]", client.receive_response())


async def _interrupt(client: ClaudeSDKClient) -> None:
    with suppress(Exception):  # the process may be gone; teardown follows regardless
        await client.interrupt()


async def _shutdown(client: ClaudeSDKClient, handle: _RunHandle, turn: ClaudeTurn) -> None:
    """Stop the turn if it is still running, then tear the process down (bounded)."""
    if handle.client is not None and handle.turn_started and not turn.finished and not handle.stream_dead:
        with anyio.move_on_after(handle.grace):
            if not handle.interrupted:
                handle.interrupted = True
                await _interrupt(client)
            # Let the CLI finish the aborted turn so it exits as soon as stdin closes.
            with suppress(Exception):  # draining is best effort
                async with aclosing(_responses(client)) as messages:
                    async for _ in messages:
                        pass
    with suppress(Exception):  # a disconnect failure must not mask the run's outcome
        await client.disconnect()


def _tail(lines: deque[str]) -> str:
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    text = redact(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _exit_code(exc: BaseException) -> dict[str, Any]:
    code = getattr(exc, "exit_code", None)
    return {"exit_code": code} if isinstance(code, int) else {}


def _start_error(sdk: Any, exc: Exception, stderr_tail: deque[str], resume: str | None) -> AsmError:
    """An ``AsmError`` for a CLI that could not be started or failed its handshake."""
    if isinstance(exc, sdk.CLINotFoundError):
        return AsmError(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"Claude Code CLI not found ({_first_line(exc)}): {_INSTALL_HINT}, or set cli_path / {_CLI_ENV}",
            {"provider": "claude"},
        )
    info: dict[str, Any] = {"provider": "claude", "stderr_tail": _tail(stderr_tail), **_exit_code(exc)}
    first = _first_line(exc)
    last = stderr_tail[-1] if stderr_tail else ""
    message = f"Claude Code failed to start: {first}"
    if last and last not in first:
        message = f"{message} ({last})"
    if isinstance(exc, sdk.ResultError):
        # The CLI answered with an error result before any turn ran (e.g. an unknown
        # --resume id): not an outage, so not retryable unless the HTTP status says so.
        status = exc.api_error_status
        info.update(subtype=exc.subtype, terminal_reason=exc.terminal_reason, api_error_status=status)
        code = code_for_status(status) or ErrorCode.PROVIDER_ERROR
        if resume and code is ErrorCode.PROVIDER_ERROR:
            info.update(reason="resume_failed", resume_session_id=resume)
        return AsmError(code, message, info)
    return AsmError(ErrorCode.PROVIDER_UNAVAILABLE, message, info)


def _process_error(sdk: Any, exc: Exception, stderr_tail: deque[str], details: dict[str, Any]) -> AsmError:
    """An ``AsmError`` for a failure while reading the CLI (crash, malformed output, ...)."""
    info = {**details, "stderr_tail": _tail(stderr_tail), **_exit_code(exc)}
    parse_errors = (sdk.CLIJSONDecodeError, getattr(sdk, "MessageParseError", sdk.CLIJSONDecodeError))
    if isinstance(exc, parse_errors):
        info["reason"] = "malformed_output"
        return AsmError(
            ErrorCode.PROVIDER_ERROR, f"Claude Code produced malformed output: {_first_line(exc)}", info
        )
    if isinstance(exc, sdk.ProcessError):
        info["reason"] = "process_exited"
        last = stderr_tail[-1] if stderr_tail else ""
        message = f"Claude Code exited unexpectedly (exit code {info.get('exit_code')})"
        return AsmError(ErrorCode.PROVIDER_ERROR, f"{message}: {last}" if last else message, info)
    info["reason"] = type(exc).__name__
    return AsmError(ErrorCode.PROVIDER_ERROR, f"Claude Code failed: {_first_line(exc)}", info)
