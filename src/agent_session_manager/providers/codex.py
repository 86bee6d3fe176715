"""CodexAdapter: drives the OpenAI Codex CLI (``codex exec --json``) as a run.

Why ``codex exec --json`` and not the app-server protocol: exec is the CLI's documented,
non-interactive automation surface; it needs no JSON-RPC handshake, no replies to
server→client approval requests and no long-lived process per session, and its JSONL output is
what the official TypeScript SDK consumes. Its limits are handled here: agent messages arrive
whole (no text deltas), usage is the *thread's* running total, and the only cancel is a signal.
The app-server protocol (deltas, per-call usage, ``turn/interrupt``) remains a drop-in
alternative behind the same port if those limits start to hurt.

Invocation (one process per run; options before ``resume``, prompt on stdin, stdin then closed —
Codex reads stdin to EOF and would block otherwise)::

    codex exec --json [--skip-git-repo-check] [-m MODEL] [-C CWD] [permission flags]
               [-c developer_instructions=...] [-c KEY=VALUE]... [extra_args...]
               [resume THREAD_ID] -

Options (constructor defaults, overridable per run through ``execute(**opts)``): ``model``,
``permission_mode``, ``system_prompt``, ``cwd``, ``env``, ``cli_path`` (else ``$ASM_CODEX_CLI``,
else ``codex`` on PATH), ``extra_args``, ``config`` (``{key: value}`` → ``-c key=<TOML>``),
``timeout`` (hard deadline per run, default 900 s: without network the CLI retries forever →
``provider_timeout``), ``skip_git_repo_check`` (default true), ``api_key`` (→ ``CODEX_API_KEY``),
``codex_home`` (→ ``CODEX_HOME``), ``resume_session_id`` (thread to resume; what the
SessionManager passes for native continuation; ``provider_session_id`` is an alias),
``usage_baseline`` (thread total before this run), ``max_turns`` (see below; ``None``, the
default, means no limit), ``max_line_bytes``, ``interrupt_grace`` / ``term_grace`` (shutdown
escalation).

Mappings:

* ``permission_mode``: default → no flag (Codex's own defaults); ``plan`` → ``--sandbox
  read-only``; ``accept_edits`` → ``--sandbox workspace-write``; ``full_auto`` → ``--sandbox
  workspace-write -c approval_policy="never"`` (what the removed ``--full-auto`` became);
  ``dangerously_skip_permissions`` → ``--dangerously-bypass-approvals-and-sandbox``.
* ``system_prompt`` → ``-c developer_instructions=<TOML string>``: an extra developer message
  that keeps Codex's own agent instructions (``-c instructions=`` would replace them).
* Resume: with ``resume_session_id`` the run resumes that thread natively (the manager passes it
  when continuation picks the recorded ``provider_sessions["codex"]`` id) and the prompt is built
  from the run's own input only (the thread already holds the history). Without it a new thread
  starts and a replayed transcript in ``session.context`` is rendered into the prompt.

Events: ``thread.started`` → ``run_started {provider_session_id, thread_id, model, resumed}``;
``agent_message`` → ``message_received``; ``reasoning`` → ``message_streamed`` with
``kind="reasoning"`` (so renderers can show it and transcript builders can skip it);
``todo_list`` → ``message_streamed`` with ``kind="todo_list"`` and the ``items``;
``command_execution`` (tool ``bash``), ``file_change`` (``file_change``), ``mcp_tool_call``
(``mcp__<server>__<tool>``) and ``web_search`` (``web_search``) → ``tool_call_started`` then
``tool_call_completed`` or, for status failed/declined (or an MCP error), ``tool_call_failed``,
with the canonical keys ``tool_call_id, tool_name, tool_input, tool_output``; top-level ``error``
notices (retries, "Reconnecting…") and ``error`` items (warnings) → ``error_occurred`` with
``fatal: false`` — they are not failures; ``turn.completed`` → ``token_usage_updated``;
``turn.failed`` → ``AsmError`` classified from its message (see
:func:`~._common.classify_error_message`, re-exported here). A run that ends without
``turn.completed`` fails with ``provider_error`` (exit code and redacted stderr tail in
details), a cancelled one with ``cancelled``.

Usage: ``turn.completed.usage`` is the thread's running total, so the run's usage is that total
minus the thread total before the run. The baseline is, in order: the ``usage_baseline``
option; the last ``token_count`` total in the thread's rollout file under ``$CODEX_HOME/sessions``
(authoritative even when other processes advanced the thread); the ``usage_total`` recorded in
``session.metadata["provider_sessions"]["codex"]``; zero (a fresh thread). The new total is
returned in ``output["usage_total"]`` and in ``token_usage_updated`` data (``thread_total``) so
the manager can record it.

Turns and ``max_turns``: a turn is one model response round, as in Claude Code's ``num_turns``
(the final answer counts too). exec reports no model calls, so rounds are derived from the
items: the first model-output item of the run begins turn 1; after a tool item (``command_execution``,
``file_change``, ``mcp_tool_call``, ``web_search``) has completed, the next *model output*
(a new item of any kind except ``error`` warnings, or an update of a non-tool item) begins the
next turn — unless a tool item is still in progress (parallel calls of one response). So a run
"reasoning, command, file change, answer" has 3 turns, which matches the 3 model calls its
usage shows. Limits of the derivation: tool calls of one response that Codex runs one after
another count as separate turns, and plan updates (``todo_list``) do not end a turn. The count
is ``turn_count`` of the result. exec has no turn limit, so the adapter enforces ``max_turns``:
when turn ``max_turns + 1`` begins, that item is not emitted, the CLI is stopped (SIGINT →
SIGTERM → SIGKILL, as for cancel) and ``execute`` raises ``AsmError(provider_error, "codex run
stopped: reached max_turns=N")`` with ``details["reason"] == "max_turns"``, ``max_turns`` and
``num_turns`` — the code and reason ClaudeAdapter uses for Claude Code's ``error_max_turns``.
Like Claude Code, the tools of turn ``max_turns`` have run when the limit stops the run; unlike
it, the model has already begun turn ``max_turns + 1`` (that is how the limit is seen).

Cancel: ``cancel(run_id)`` sends SIGINT to the process group (Codex stops without a terminal
event), then escalates to SIGTERM and SIGKILL; ``execute`` raises ``AsmError(cancelled)``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import anyio

from ..core import AsmError, ErrorCode, EventType, PermissionMode, Run, Session, TokenUsage
from ..ports.provider import Emit, ProviderEvent, ProviderResult
from ._cli_base import JsonlCliAdapter
from ._common import (
    classify_error_message,
    max_turns_error,
    prompt_from_input,
    provider_session_entry,
    token_usage_from,
)
from ._subprocess import DEFAULT_MAX_LINE_BYTES, effective_env

__all__ = ("CodexAdapter", "CodexStreamMapper", "classify_error_message", "codex_usage")

INSTALL_HINT = "npm install -g @openai/codex"
DEFAULT_TIMEOUT = 900.0
_ROLLOUT_SCAN_LIMIT = 16 * 1024 * 1024


def codex_usage(raw: Any) -> TokenUsage:
    """Convert a Codex usage object (``input_tokens, cached_input_tokens, …``) to TokenUsage."""
    return token_usage_from(
        raw, cache_read_key="cached_input_tokens", cache_creation_key="cache_write_input_tokens"
    )


def _toml_string(value: str) -> str:
    """A TOML basic string (JSON escaping minus the surrogate escapes TOML rejects)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Sequence):
        return "[" + ",".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}={_toml_value(v)}" for k, v in value.items()) + "}"
    raise AsmError(ErrorCode.VALIDATION_ERROR, f"codex config value not representable in TOML: {value!r}")


_TOOL_ITEMS = {"command_execution", "file_change", "mcp_tool_call", "web_search"}


class CodexStreamMapper:
    """Pure mapping of ``codex exec --json`` lines to :class:`ProviderEvent` lists.

    Feed each decoded JSON object to :meth:`feed`; read the outcome from the attributes once the
    stream ends. No I/O: the adapter owns the process, this owns the meaning.

    Attributes:
        thread_id: From ``thread.started``.
        completed: A ``turn.completed`` was seen.
        failure: The ``AsmError`` a ``turn.failed`` maps to (not raised here).
        turns: Model turns so far (see the module docstring).
        limit: The ``max_turns`` error, set when an item begins turn ``max_turns + 1`` (that
            item and everything after it map to nothing).
        usage: This run's usage (sum of per-turn deltas against ``baseline``).
        thread_total: The last running thread total reported.
        content: Text of the last agent message.
        tool_calls: ``[{id, name, input, output, status, exit_code}]`` in completion order.
    """

    def __init__(
        self,
        *,
        model: str | None = None,
        baseline: TokenUsage | None = None,
        resumed: bool = False,
        max_turns: int | None = None,
    ):
        self.model = model
        self.max_turns = max_turns
        self.limit: AsmError | None = None
        self.resumed = resumed
        self.baseline = baseline or TokenUsage()
        self.thread_id: str | None = None
        self.completed = False
        self.failure: AsmError | None = None
        self.usage = TokenUsage()
        self.thread_total: TokenUsage | None = None
        self.content = ""
        self.messages: list[str] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.turns = 0
        self.last_error: str | None = None
        self._started_tools: set[str] = set()
        self._seen_tools: set[str] = set()
        self._open_tools: set[str] = set()
        self._tool_done = False

    def feed(self, obj: Mapping[str, Any]) -> list[ProviderEvent]:
        """Map one JSONL object; unknown types map to nothing (so does everything after ``limit``)."""
        if self.limit is not None:
            return []
        kind = obj.get("type")
        if kind == "thread.started":
            self.thread_id = str(obj.get("thread_id") or "") or None
            data = {
                "provider_session_id": self.thread_id,
                "thread_id": self.thread_id,
                "model": self.model,
                "resumed": self.resumed,
            }
            return [ProviderEvent(type=EventType.RUN_STARTED, data=data)]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = obj.get("item")
            if not isinstance(item, Mapping) or not self._count_turn(str(kind), item):
                return []
            return self._item(str(kind), item)
        if kind == "turn.completed":
            return self._turn_completed(obj.get("usage"))
        if kind == "turn.failed":
            return self._turn_failed(obj.get("error"))
        if kind == "error":
            message = str(obj.get("message") or "")
            self.last_error = message
            return [self._notice(message, source="stream")]
        return []

    # -- items ---------------------------------------------------------------------------

    def _count_turn(self, phase: str, item: Mapping[str, Any]) -> bool:
        """Track model turns for one item event; False (and ``limit`` set) past ``max_turns``."""
        itype = item.get("type")
        if itype == "error":
            return True  # a warning from Codex itself, not model output
        item_id = str(item.get("id") or "")
        is_tool = itype in _TOOL_ITEMS
        if not (is_tool and item_id in self._seen_tools):  # model output, not tool progress
            if self.turns == 0:
                self.turns = 1
            elif self._tool_done and not self._open_tools:
                self.turns += 1
                self._tool_done = False
            if self.max_turns is not None and self.turns > self.max_turns:
                self.limit = max_turns_error(
                    "codex", self.max_turns, self.turns, thread_id=self.thread_id, item_id=item_id
                )
                return False
        if is_tool:
            self._seen_tools.add(item_id)
            if phase == "item.completed":
                self._open_tools.discard(item_id)
                self._tool_done = True
            else:
                self._open_tools.add(item_id)
        return True

    def _item(self, phase: str, item: Mapping[str, Any]) -> list[ProviderEvent]:
        itype = item.get("type")
        item_id = str(item.get("id") or "")
        if itype == "agent_message":
            if phase != "item.completed":
                return []
            text = str(item.get("text") or "")
            self.content = text
            self.messages.append(text)
            data: dict[str, Any] = {
                "content": text,
                "role": "assistant",
                "item_id": item_id,
                "thread_id": self.thread_id,
            }
            return [ProviderEvent(type=EventType.MESSAGE_RECEIVED, data=data)]
        if itype == "reasoning":
            text = str(item.get("text") or "")
            if phase != "item.completed" or not text:
                return []
            data = {
                "kind": "reasoning",
                "content": text,
                "delta": text,
                "role": "assistant",
                "item_id": item_id,
            }
            return [ProviderEvent(type=EventType.MESSAGE_STREAMED, data=data)]
        if itype == "todo_list":
            items = [dict(i) for i in item.get("items") or [] if isinstance(i, Mapping)]
            text = "\n".join(f"[{'x' if i.get('completed') else ' '}] {i.get('text', '')}" for i in items)
            data = {
                "kind": "todo_list",
                "items": items,
                "content": text,
                "delta": "",
                "item_id": item_id,
            }
            return [ProviderEvent(type=EventType.MESSAGE_STREAMED, data=data)]
        if itype == "error":
            if phase != "item.completed":
                return []
            return [self._notice(str(item.get("message") or ""), source="item", item_id=item_id)]
        if itype in _TOOL_ITEMS:
            return self._tool(phase, item_id, item)
        return []

    @staticmethod
    def _tool_shape(item: Mapping[str, Any]) -> tuple[str, dict[str, Any], Any, bool]:
        """(tool_name, tool_input, tool_output, failed) of a tool-like item."""
        itype = item.get("type")
        status = item.get("status")
        failed = status in ("failed", "declined")
        if itype == "command_execution":
            return "bash", {"command": item.get("command")}, item.get("aggregated_output"), failed
        if itype == "file_change":
            changes = [dict(c) for c in item.get("changes") or [] if isinstance(c, Mapping)]
            return "file_change", {"changes": changes}, {"changes": changes, "status": status}, failed
        if itype == "mcp_tool_call":
            name = f"mcp__{item.get('server')}__{item.get('tool')}"
            arguments = item.get("arguments")
            tool_input = dict(arguments) if isinstance(arguments, Mapping) else {"arguments": arguments}
            error = item.get("error")
            output: Any = item.get("result")
            if isinstance(error, Mapping) and error.get("message"):
                failed, output = True, {"error": error.get("message")}
            return name, tool_input, output, failed
        return "web_search", {"query": item.get("query")}, item.get("action"), failed

    def _tool(self, phase: str, item_id: str, item: Mapping[str, Any]) -> list[ProviderEvent]:
        name, tool_input, output, failed = self._tool_shape(item)
        base = {
            "tool_call_id": item_id,
            "tool_name": name,
            "tool_input": tool_input,
            "item_type": item.get("type"),
        }
        events: list[ProviderEvent] = []
        if item_id not in self._started_tools:
            self._started_tools.add(item_id)
            events.append(ProviderEvent(type=EventType.TOOL_CALL_STARTED, data=dict(base)))
        if phase != "item.completed":
            return events
        exit_code = item.get("exit_code")
        status = item.get("status")
        data = {**base, "tool_output": output, "status": status}
        if item.get("type") == "command_execution":
            data["exit_code"] = exit_code
        etype = EventType.TOOL_CALL_FAILED if failed else EventType.TOOL_CALL_COMPLETED
        if failed:
            data["is_error"] = True
        events.append(ProviderEvent(type=etype, data=data))
        self.tool_calls.append(
            {
                "id": item_id,
                "name": name,
                "input": tool_input,
                "output": output,
                "status": status,
                "exit_code": exit_code,
            }
        )
        return events

    # -- turns ---------------------------------------------------------------------------

    def _notice(self, message: str, *, source: str, item_id: str | None = None) -> ProviderEvent:
        data: dict[str, Any] = {
            "error_code": classify_error_message(message).value,
            "error_message": message,
            "fatal": False,
            "source": source,
        }
        if item_id:
            data["item_id"] = item_id
        return ProviderEvent(type=EventType.ERROR_OCCURRED, data=data)

    def _turn_completed(self, raw_usage: Any) -> list[ProviderEvent]:
        self.completed = True
        self.turns = max(self.turns, 1)
        total = codex_usage(raw_usage)
        previous = self.thread_total if self.thread_total is not None else self.baseline
        # A total below the baseline means the baseline was wrong (e.g. a stale record): the
        # floor-at-zero difference would under-count, so trust the total as this run's usage.
        regressed = total.input_tokens < previous.input_tokens or total.output_tokens < previous.output_tokens
        delta = total if regressed else total - previous
        self.usage = self.usage + delta
        self.thread_total = total
        data: dict[str, Any] = {
            **self.usage.model_dump(mode="json"),
            "turn_usage": delta.model_dump(mode="json"),
            "thread_total": total.model_dump(mode="json"),
            "thread_id": self.thread_id,
        }
        if isinstance(raw_usage, Mapping) and isinstance(raw_usage.get("reasoning_output_tokens"), int):
            data["reasoning_output_tokens"] = raw_usage["reasoning_output_tokens"]
        return [ProviderEvent(type=EventType.TOKEN_USAGE_UPDATED, data=data)]

    def _turn_failed(self, error: Any) -> list[ProviderEvent]:
        message = ""
        if isinstance(error, Mapping):
            message = str(error.get("message") or "")
        message = message or self.last_error or "Codex turn failed"
        code = classify_error_message(message)
        self.failure = AsmError(code, f"codex: {message}", {"provider": "codex", "thread_id": self.thread_id})
        return []


def _rollout_total(codex_home: Path, thread_id: str) -> TokenUsage | None:
    """The last thread total recorded in the thread's rollout file (blocking; run in a thread)."""
    if not re.fullmatch(r"[0-9A-Za-z-]{8,64}", thread_id):
        return None
    files = sorted((codex_home / "sessions").glob(f"*/*/*/rollout-*-{thread_id}.jsonl"))
    if not files:
        return None
    path = files[-1]
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - _ROLLOUT_SCAN_LIMIT)
            fh.seek(start)
            blob = fh.read()
    except OSError:
        return None
    for line in reversed(blob.splitlines()):
        if b'"token_count"' not in line:
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        payload = obj.get("payload") if isinstance(obj, dict) else None
        info = payload.get("info") if isinstance(payload, dict) else None
        if isinstance(info, dict) and isinstance(info.get("total_token_usage"), dict):
            return codex_usage(info["total_token_usage"])
    return None


def _metadata_total(session: Session, thread_id: str) -> TokenUsage | None:
    entry = provider_session_entry(session, "codex")
    if entry is None or entry.get("provider_session_id") not in (None, thread_id):
        return None
    raw = entry.get("usage_total")
    if isinstance(raw, Mapping):
        return TokenUsage.model_validate(dict(raw))
    return None


class CodexAdapter(JsonlCliAdapter):
    """Runs each run as one ``codex exec --json`` process; see the module docstring."""

    name = "codex"
    binary_name = "codex"
    cli_env_vars = ("ASM_CODEX_CLI",)
    install_hint = INSTALL_HINT
    api_key_env = "CODEX_API_KEY"
    merged_mappings: ClassVar[frozenset[str]] = frozenset({"env", "config"})

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
        extra_args: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        skip_git_repo_check: bool = True,
        api_key: str | None = None,
        codex_home: str | os.PathLike[str] | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        **defaults: Any,
    ) -> None:
        super().__init__(
            {
                "model": model,
                "permission_mode": permission_mode,
                "max_turns": max_turns,
                "system_prompt": system_prompt,
                "cwd": cwd,
                "env": dict(env or {}),
                "cli_path": cli_path,
                "extra_args": list(extra_args),
                "config": dict(config or {}),
                "timeout": timeout,
                "skip_git_repo_check": skip_git_repo_check,
                "api_key": api_key,
                "codex_home": codex_home,
                "max_line_bytes": max_line_bytes,
                **defaults,
            }
        )

    def validate_config(self) -> None:
        """Check the permission mode, ``max_turns`` and that the Codex binary can be found."""
        self._binary(self._options({}))

    def build_argv(self, o: Mapping[str, Any], *, binary: str, thread_id: str | None) -> list[str]:
        """The command line for one run (the prompt goes to stdin via the trailing ``-``)."""
        argv = [binary, "exec", "--json"]
        if o.get("skip_git_repo_check", True):
            argv.append("--skip-git-repo-check")
        if o.get("model"):
            argv += ["-m", str(o["model"])]
        if o.get("cwd"):
            argv += ["-C", os.fspath(o["cwd"])]
        mode = o.get("permission_mode")
        if mode == PermissionMode.PLAN:
            argv += ["--sandbox", "read-only"]
        elif mode == PermissionMode.ACCEPT_EDITS:
            argv += ["--sandbox", "workspace-write"]
        elif mode == PermissionMode.FULL_AUTO:
            argv += ["--sandbox", "workspace-write", "-c", 'approval_policy="never"']
        elif mode == PermissionMode.DANGEROUSLY_SKIP_PERMISSIONS:
            argv.append("--dangerously-bypass-approvals-and-sandbox")
        if o.get("system_prompt"):
            argv += ["-c", f"developer_instructions={_toml_string(str(o['system_prompt']))}"]
        for key, value in (o.get("config") or {}).items():
            argv += ["-c", f"{key}={_toml_value(value)}"]
        argv += [str(a) for a in o.get("extra_args") or ()]
        if thread_id:
            argv += ["resume", thread_id]
        argv.append("-")
        return argv

    def _env(self, o: Mapping[str, Any]) -> dict[str, str | None]:
        """The base overrides (``env``, ``api_key``) plus ``codex_home`` → ``CODEX_HOME``."""
        env = super()._env(o)
        if o.get("codex_home"):
            env["CODEX_HOME"] = os.fspath(o["codex_home"])
        return env

    async def _baseline(self, o: Mapping[str, Any], session: Session, thread_id: str | None) -> TokenUsage:
        if thread_id is None:
            return TokenUsage()
        explicit = o.get("usage_baseline")
        if isinstance(explicit, TokenUsage):
            return explicit
        if isinstance(explicit, Mapping):
            return TokenUsage.model_validate(dict(explicit))
        env = effective_env(self._env(o))
        home = Path(env.get("CODEX_HOME") or Path(env.get("HOME") or Path.home()) / ".codex")
        total = await anyio.to_thread.run_sync(_rollout_total, home, thread_id)
        if total is not None:
            return total
        return _metadata_total(session, thread_id) or TokenUsage()

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        """Run one Codex turn; see the module docstring for the mapping and failure modes."""
        o = self._options(opts)
        binary = self._binary(o)
        thread_id = self._thread_id(o)
        prompt = prompt_from_input(run, None if thread_id else session)
        baseline = await self._baseline(o, session, thread_id)
        mapper = CodexStreamMapper(
            model=o.get("model"),
            baseline=baseline,
            resumed=thread_id is not None,
            max_turns=o.get("max_turns"),
        )
        argv = self.build_argv(o, binary=binary, thread_id=thread_id)
        async with self._process(run.id, o, argv, stdin=prompt) as proc:
            code = await self._pump(proc, mapper, emit)
            self._raise_if_stopped(proc, mapper.failure, thread_id=mapper.thread_id)
            if not mapper.completed:
                raise proc.error(
                    ErrorCode.PROVIDER_ERROR,
                    f"codex exited with code {code} before the turn completed",
                    thread_id=mapper.thread_id,
                )
        total = mapper.thread_total.model_dump(mode="json") if mapper.thread_total else None
        return ProviderResult(
            output={
                "content": mapper.content,
                "messages": mapper.messages,
                "tool_calls": mapper.tool_calls,
                "stop_reason": "end_turn",
                "thread_id": mapper.thread_id,
                "usage_total": total,
            },
            token_usage=mapper.usage,
            provider_session_id=mapper.thread_id,
            model=o.get("model"),
            turn_count=mapper.turns,
        )
