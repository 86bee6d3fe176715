"""AmpAdapter: drives the Sourcegraph Amp CLI (``amp --execute --stream-json``) as a run.

Invocation (one process per run; the prompt is written to stdin, which is then closed)::

    amp [threads continue THREAD_ID] --execute --stream-json [--dangerously-allow-all]
        [--mode MODE] [--settings-file F] [--mcp-config F] [extra_args...]

Options (constructor defaults, overridable per run through ``execute(**opts)``): ``mode``,
``model``, ``permission_mode``, ``max_turns``, ``system_prompt``, ``cwd``, ``env``, ``cli_path``
(else ``$ASM_AMP_CLI``, else ``$AMP_CLI_PATH``, else ``amp`` on PATH), ``extra_args``, ``settings_file``,
``mcp_config``, ``thinking`` (``--stream-json-thinking``), ``api_key`` (→ ``AMP_API_KEY``),
``timeout`` (hard deadline per run, default 900 s), ``resume_session_id`` (thread to continue;
passed by the SessionManager for native continuation; ``provider_session_id`` is an alias),
``max_line_bytes``, ``interrupt_grace`` / ``term_grace``.

* ``mode`` / ``model``: Amp has no model selection; the Amp server picks the model for the
  agent mode, ``--mode low|medium|high|ultra`` (wire formats §3.1). ``mode`` must be one of
  those; ``model`` is accepted for the common option set and must name a mode too (it then
  becomes ``--mode``). Anything else raises ``AsmError(validation_error, "Amp selects models by
  mode (low|medium|high|ultra); got model=...")`` at construction, or for per-run options
  before the CLI is spawned; so does a ``mode`` and a ``model`` given together that differ. A
  per-run ``mode``/``model`` replaces the default mode. (Another ``--mode`` value a newer CLI
  may know can still be passed through ``extra_args``.)
* ``max_turns`` (``None``, the default, means no limit): a turn is one model response, i.e. one
  ``assistant`` line (each is a whole message) — the same count as Claude Code's and Amp's own
  ``num_turns``, the final answer included. Amp has no turn limit, so the adapter enforces it:
  when assistant message ``max_turns + 1`` arrives it is not emitted, the CLI is stopped
  (SIGINT → SIGTERM → SIGKILL, as for cancel) and ``execute`` raises ``AsmError(provider_error,
  "amp run stopped: reached max_turns=N")`` with ``details["reason"] == "max_turns"``,
  ``max_turns`` and ``num_turns`` — what ClaudeAdapter raises for ``error_max_turns``. As with
  Claude Code, the tools of turn ``max_turns`` have run when the limit stops the run; unlike
  it, the model has already answered once more (the limit is seen in that answer).

* **Auth is checked up front.** Without ``AMP_API_KEY`` (in ``env``/``api_key`` or the
  process environment) the CLI starts an interactive login and waits forever, so the adapter
  raises ``AsmError(provider_authentication_failed)`` without spawning it. Should the CLI still
  print its "No API key found" banner, the run stops at once with the same error.
* ``permission_mode``: ``full_auto`` and ``dangerously_skip_permissions`` →
  ``--dangerously-allow-all`` (stream-json mode cannot ask for approval, so any other mode
  rejects tools that need one, which Amp reports as an error result); other modes add nothing.
* ``system_prompt``: Amp has no system-prompt flag; it is prepended to the prompt of a *new*
  thread as a ``<system_instructions>`` block (a continued thread already holds it).
* Continue: with ``resume_session_id``, ``amp threads continue <id>`` is used and the prompt is
  the run's own input only (the thread holds the history).

Events: ``system/init`` → ``run_started {provider_session_id, session_id, tools, cwd,
mcp_servers, agent_mode}``; each whole ``assistant`` message → ``message_received`` (its text
blocks), ``message_streamed`` with ``kind="reasoning"`` for thinking blocks, one
``tool_call_started`` per ``tool_use`` block and ``token_usage_updated`` (usage is per
assistant message, so the run's usage is their sum); ``user`` ``tool_result`` blocks →
``tool_call_completed`` or, with ``is_error``, ``tool_call_failed``; the prompt echo is skipped.
``result`` ``success`` ends the run; an error ``result`` (Amp exits 0 even then) raises an
``AsmError`` classified from its message (approval required → ``tool_permission_denied``; see
also :func:`~agent_session_manager.providers._common.classify_error_message`). No ``result`` at
all → ``provider_error`` with the exit code and the redacted stderr tail.

Cancel: ``cancel(run_id)`` sends SIGINT to the process group (Amp then reports "User cancelled"),
escalating to SIGTERM and SIGKILL; ``execute`` raises ``AsmError(cancelled)``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..core import AsmError, ErrorCode, EventType, PermissionMode, Run, Session, TokenUsage
from ..ports.provider import Emit, ProviderEvent, ProviderResult
from ._cli_base import JsonlCliAdapter
from ._common import classify_error_message, max_turns_error, prompt_from_input, token_usage_from
from ._subprocess import DEFAULT_MAX_LINE_BYTES, effective_env

__all__ = ("AMP_MODES", "AmpAdapter", "AmpStreamMapper", "amp_mode", "amp_usage")

INSTALL_HINT = "npm install -g @sourcegraph/amp"
DEFAULT_TIMEOUT = 900.0
_LOGIN_BANNER = re.compile(r"no api key found|starting login flow", re.I)
_APPROVAL = re.compile(r"require[s]? user approval|rejected by user", re.I)
_CANCELLED = re.compile(r"user cancelled", re.I)
AMP_MODES = ("low", "medium", "high", "ultra")


def amp_usage(raw: Any) -> TokenUsage:
    """Convert an Amp (Anthropic-style) per-message usage object to TokenUsage."""
    return token_usage_from(raw)


def classify_amp_error(message: str) -> ErrorCode:
    """Error code for an Amp error result or setup error message."""
    if _APPROVAL.search(message):
        return ErrorCode.TOOL_PERMISSION_DENIED
    if _CANCELLED.search(message):
        return ErrorCode.CANCELLED
    return classify_error_message(message)


def amp_mode(mode: Any = None, model: Any = None) -> str | None:
    """The ``--mode`` for a ``mode`` and/or ``model`` option (``None``: the CLI's default).

    Raises:
        AsmError: ``validation_error`` when either is not one of :data:`AMP_MODES` or they differ.
    """
    modes = "|".join(AMP_MODES)
    if model is not None and model not in AMP_MODES:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR,
            f"Amp selects models by mode ({modes}); got model={model!r}",
            {"provider": "amp", "model": model, "modes": list(AMP_MODES)},
        )
    if mode is not None and mode not in AMP_MODES:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR,
            f"invalid Amp mode {mode!r}; expected one of {modes}",
            {"provider": "amp", "mode": mode, "modes": list(AMP_MODES)},
        )
    if mode is not None and model is not None and mode != model:
        raise AsmError(
            ErrorCode.VALIDATION_ERROR,
            f"Amp selects models by mode: mode={mode!r} and model={model!r} disagree",
            {"provider": "amp", "mode": mode, "model": model},
        )
    resolved: str | None = mode if mode is not None else model
    return resolved


class AmpStreamMapper:
    """Pure mapping of ``amp --stream-json`` lines to :class:`ProviderEvent` lists.

    Attributes:
        session_id: The Amp thread id (``T-…``) from ``system/init`` or any later line.
        result: The final ``result`` object once seen.
        failure: The ``AsmError`` an error result maps to (not raised here).
        turns: Assistant messages so far (``num_turns`` of the result once seen).
        limit: The ``max_turns`` error, set when assistant message ``max_turns + 1`` arrives
            (that line and everything after it map to nothing).
        usage: Sum of the per-assistant-message usages.
        content: Text of the last assistant message (the ``result`` text when given).
        tool_calls: ``[{id, name, input, output, is_error}]``.
    """

    def __init__(self, *, max_turns: int | None = None) -> None:
        self.max_turns = max_turns
        self.limit: AsmError | None = None
        self.session_id: str | None = None
        self.result: dict[str, Any] | None = None
        self.failure: AsmError | None = None
        self.usage = TokenUsage()
        self.content = ""
        self.tool_calls: list[dict[str, Any]] = []
        self.turns = 0
        self._tools: dict[str, dict[str, Any]] = {}

    def feed(self, obj: Mapping[str, Any]) -> list[ProviderEvent]:
        """Map one JSON line; unknown types map to nothing (so does everything after ``limit``)."""
        if self.limit is not None:
            return []
        if isinstance(obj.get("session_id"), str) and obj["session_id"]:
            self.session_id = self.session_id or obj["session_id"]
        kind = obj.get("type")
        message = obj.get("message")
        if kind == "system" and obj.get("subtype") == "init":
            data = {
                "provider_session_id": self.session_id,
                "session_id": self.session_id,
                "tools": list(obj.get("tools") or []),
                "cwd": obj.get("cwd"),
                "mcp_servers": list(obj.get("mcp_servers") or []),
                "agent_mode": obj.get("agent_mode"),
                "model": None,
            }
            return [ProviderEvent(type=EventType.RUN_STARTED, data=data)]
        if kind == "assistant" and isinstance(message, Mapping):
            return self._assistant(message)
        if kind == "user" and isinstance(message, Mapping):
            return self._user(message)
        if kind == "result":
            return self._result(obj)
        return []

    def _assistant(self, message: Mapping[str, Any]) -> list[ProviderEvent]:
        self.turns += 1
        if self.max_turns is not None and self.turns > self.max_turns:
            self.limit = max_turns_error("amp", self.max_turns, self.turns, session_id=self.session_id)
            return []
        blocks = [b for b in message.get("content") or [] if isinstance(b, Mapping)]
        events: list[ProviderEvent] = []
        for block in blocks:
            if block.get("type") == "thinking" and block.get("thinking"):
                thought = str(block["thinking"])
                data: dict[str, Any] = {
                    "kind": "reasoning",
                    "content": thought,
                    "delta": thought,
                    "role": "assistant",
                }
                events.append(ProviderEvent(type=EventType.MESSAGE_STREAMED, data=data))
        text = "\n\n".join(
            str(b.get("text") or "") for b in blocks if b.get("type") == "text" and b.get("text")
        )
        if text:
            self.content = text
            data = {"content": text, "role": "assistant", "stop_reason": message.get("stop_reason")}
            events.append(ProviderEvent(type=EventType.MESSAGE_RECEIVED, data=data))
        for block in blocks:
            if block.get("type") != "tool_use":
                continue
            call_id = str(block.get("id") or "")
            raw_input = block.get("input")
            tool_input = dict(raw_input) if isinstance(raw_input, Mapping) else {}
            call: dict[str, Any] = {"id": call_id, "name": str(block.get("name") or ""), "input": tool_input}
            self._tools[call_id] = call
            data = {"tool_call_id": call_id, "tool_name": call["name"], "tool_input": tool_input}
            events.append(ProviderEvent(type=EventType.TOOL_CALL_STARTED, data=data))
        if isinstance(message.get("usage"), Mapping):
            turn = amp_usage(message["usage"])
            self.usage = self.usage + turn
            data = {**self.usage.model_dump(mode="json"), "turn_usage": turn.model_dump(mode="json")}
            events.append(ProviderEvent(type=EventType.TOKEN_USAGE_UPDATED, data=data))
        return events

    def _user(self, message: Mapping[str, Any]) -> list[ProviderEvent]:
        events: list[ProviderEvent] = []
        for block in message.get("content") or []:
            if not isinstance(block, Mapping) or block.get("type") != "tool_result":
                continue  # the prompt echo
            call_id = str(block.get("tool_use_id") or "")
            call = self._tools.get(call_id, {"id": call_id, "name": "", "input": {}})
            output = block.get("content")
            is_error = bool(block.get("is_error"))
            data: dict[str, Any] = {
                "tool_call_id": call_id,
                "tool_name": call["name"],
                "tool_input": call["input"],
                "tool_output": output,
                "is_error": is_error,
            }
            self.tool_calls.append({**call, "output": output, "is_error": is_error})
            etype = EventType.TOOL_CALL_FAILED if is_error else EventType.TOOL_CALL_COMPLETED
            events.append(ProviderEvent(type=etype, data=data))
        return events

    def _result(self, obj: Mapping[str, Any]) -> list[ProviderEvent]:
        self.result = dict(obj)
        if obj.get("is_error") or obj.get("subtype") not in (None, "success"):
            message = str(obj.get("error") or obj.get("result") or obj.get("subtype") or "Amp run failed")
            details: dict[str, Any] = {
                "provider": "amp",
                "session_id": self.session_id,
                "subtype": obj.get("subtype"),
            }
            if obj.get("permission_denials"):
                details["permission_denials"] = obj["permission_denials"]
            self.failure = AsmError(classify_amp_error(message), f"amp: {message}", details)
        elif isinstance(obj.get("result"), str) and obj["result"]:
            self.content = obj["result"]
        if isinstance(obj.get("num_turns"), int):
            self.turns = obj["num_turns"]
        return []


def _has_api_key(env: Mapping[str, str | None]) -> bool:
    return bool((env.get("AMP_API_KEY") or "").strip())


class AmpAdapter(JsonlCliAdapter):
    """Runs each run as one ``amp --execute --stream-json`` process; see the module docstring."""

    name = "amp"
    binary_name = "amp"
    cli_env_vars = ("ASM_AMP_CLI", "AMP_CLI_PATH")
    install_hint = INSTALL_HINT
    api_key_env = "AMP_API_KEY"

    def __init__(
        self,
        *,
        mode: str | None = None,
        model: str | None = None,
        permission_mode: PermissionMode | str | None = None,
        max_turns: int | None = None,
        system_prompt: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        cli_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
        settings_file: str | os.PathLike[str] | None = None,
        mcp_config: str | os.PathLike[str] | None = None,
        thinking: bool = False,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        **defaults: Any,
    ) -> None:
        super().__init__(
            {
                "mode": amp_mode(mode, model),
                "permission_mode": permission_mode,
                "max_turns": max_turns,
                "system_prompt": system_prompt,
                "cwd": cwd,
                "env": dict(env or {}),
                "cli_path": cli_path,
                "extra_args": list(extra_args),
                "settings_file": settings_file,
                "mcp_config": mcp_config,
                "thinking": thinking,
                "api_key": api_key,
                "timeout": timeout,
                "max_line_bytes": max_line_bytes,
                **defaults,
            }
        )

    def _options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """The base merge, with a per-run ``mode``/``model`` validated and resolved to ``mode``."""
        run_opts = dict(opts)
        run_opts["mode"] = amp_mode(run_opts.get("mode"), run_opts.pop("model", None))
        return super()._options(run_opts)

    def validate_config(self) -> None:
        """Check the permission mode, the Amp binary and that an API key is configured."""
        o = self._options({})
        self._binary(o)
        self._check_auth(o)

    def _check_auth(self, o: Mapping[str, Any]) -> None:
        if not _has_api_key(effective_env(self._env(o))):
            raise AsmError(
                ErrorCode.PROVIDER_AUTHENTICATION_FAILED,
                "amp: AMP_API_KEY is not set (pass api_key= or env={'AMP_API_KEY': ...}); "
                "without it the Amp CLI waits on an interactive login",
                {"provider": "amp", "env_var": "AMP_API_KEY"},
            )

    def build_argv(self, o: Mapping[str, Any], *, binary: str, thread_id: str | None) -> list[str]:
        """The command line for one run (the prompt goes to stdin)."""
        argv = [binary]
        if thread_id:
            argv += ["threads", "continue", thread_id]
        argv += ["--execute", "--stream-json"]
        if o.get("thinking"):
            argv.append("--stream-json-thinking")
        if o.get("permission_mode") in (
            PermissionMode.FULL_AUTO,
            PermissionMode.DANGEROUSLY_SKIP_PERMISSIONS,
        ):
            argv.append("--dangerously-allow-all")
        if o.get("mode"):
            argv += ["--mode", str(o["mode"])]
        if o.get("settings_file"):
            argv += ["--settings-file", os.fspath(o["settings_file"])]
        if o.get("mcp_config"):
            argv += ["--mcp-config", os.fspath(o["mcp_config"])]
        argv += [str(a) for a in o.get("extra_args") or ()]
        return argv

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        """Run one Amp execution; see the module docstring for the mapping and failure modes."""
        o = self._options(opts)
        binary = self._binary(o)
        self._check_auth(o)
        thread_id = self._thread_id(o)
        prompt = prompt_from_input(run, None if thread_id else session)
        if o.get("system_prompt") and not thread_id:
            prompt = f"<system_instructions>\n{o['system_prompt']}\n</system_instructions>\n\n{prompt}"
        mapper = AmpStreamMapper(max_turns=o.get("max_turns"))
        argv = self.build_argv(o, binary=binary, thread_id=thread_id)
        async with self._process(run.id, o, argv, stdin=prompt + "\n") as proc:

            def login_banner(line: str) -> None:
                if _LOGIN_BANNER.search(line):
                    raise proc.error(
                        ErrorCode.PROVIDER_AUTHENTICATION_FAILED,
                        "amp: the CLI asked for an interactive login (check AMP_API_KEY)",
                    )

            code = await self._pump(proc, mapper, emit, on_noise=login_banner)
            self._raise_if_stopped(proc, mapper.failure, session_id=mapper.session_id)
            if mapper.result is None:
                tail = proc.stderr_tail
                raise proc.error(
                    classify_amp_error(tail) if code != 0 and tail.strip() else ErrorCode.PROVIDER_ERROR,
                    f"amp exited with code {code} without a result",
                    session_id=mapper.session_id,
                )
        result = mapper.result
        return ProviderResult(
            output={
                "content": mapper.content,
                "tool_calls": mapper.tool_calls,
                "stop_reason": "end_turn",
                "session_id": mapper.session_id,
                "num_turns": result.get("num_turns"),
                "duration_ms": result.get("duration_ms"),
            },
            token_usage=mapper.usage,
            provider_session_id=mapper.session_id,
            turn_count=mapper.turns,
        )
