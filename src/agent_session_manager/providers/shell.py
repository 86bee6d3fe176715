"""ShellAdapter: a run executes one local command, streamed as events.

The command comes from ``run.input["command"]`` — a string runs through ``/bin/sh -c``, a
list of strings is executed directly as argv — or, without that key, from the prompt text
(``{"prompt": "ls -l"}`` / messages). ``run.input["stdin"]`` (str), if given, is written to
the command's stdin; otherwise stdin is closed.

Options (constructor defaults, overridable per run through ``adapter_opts``):

* ``allow``: command patterns; when set, every simple command in the line must match one.
* ``deny``: command patterns that are refused; deny wins over allow. Per-run ``allow`` and
  ``deny`` *add* restrictions: deny lists are merged, and a command must satisfy both the
  constructor's and the run's allow list.
* ``success_exit_codes`` (default ``{0}``), ``timeout`` (seconds, default none),
  ``max_output_bytes`` (default 1 MiB), ``cwd``, ``env`` (merged over ``os.environ``).

Patterns: a pattern matches a simple command when it glob-matches (``fnmatch``, case
sensitive) the command name (``git``; the basename of ``/usr/bin/git`` too) or the whole
command text (``git status*``), or is a word-boundary prefix of the text (``rm -rf``). A
command string is split into simple commands at ``; & | && || ( )``, newlines, backticks and
``$(``; redirection targets are not commands. With an allow list, a line that cannot be
tokenized is refused (fail closed). This is a guard against accidents, **not a sandbox**: a
wrapper such as ``env``, ``xargs`` or ``sh`` that is allowed can run anything.

Events: ``run_started`` (``command``, ``cwd``, ``pid``), ``tool_call_started`` (canonical
``tool_call_id``, ``tool_name="shell"``, ``tool_input={"command", "cwd"}``), one
``message_streamed`` per output line (``stream``: ``"stdout"`` | ``"stderr"``, ``delta``: the
line with its newline — concatenating the deltas of a stream rebuilds it — and ``content``:
the line text), then ``tool_call_completed`` (``tool_output``: ``exit_code``, ``stdout``,
``stderr``, ``truncated``) and ``message_received`` (``role="assistant"``, ``content`` =
stdout). On failure ``tool_call_failed`` is emitted before the error is raised.

Output cap: once ``max_output_bytes`` (stdout and stderr together) are captured, further
output is neither captured nor streamed and ``truncated`` is set; the command keeps running
and its output keeps being drained (so it is not killed by a broken pipe) — use ``timeout``
to bound a command that never stops talking.

Errors:

* a command matching ``deny`` or not matching ``allow`` → ``AsmError(tool_permission_denied)``
  before anything is spawned;
* an exit code outside ``success_exit_codes`` → ``AsmError(tool_execution_failed)`` with
  ``exit_code``, ``stderr_tail`` and ``stdout_tail`` in details (the tool ran and failed; the
  provider itself is fine, and re-running the same command would not help, so it is not a
  retryable provider code);
* ``timeout`` → ``AsmError(provider_timeout)`` after the process group was killed;
* ``cancel(run_id)`` or cancellation of the calling task kills the process group (the shell
  and everything it started) → ``AsmError(cancelled)`` / the cancellation propagates.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..core import AsmError, Capability, CapabilityType, ErrorCode, EventType, Run, Session
from ..ports import Emit, ProviderAdapter, ProviderEvent, ProviderResult
from ._common import prompt_from_input
from ._subprocess import ProcessTransport

__all__ = ("ShellAdapter", "command_segments")

DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
_LINE_CHUNK = 64 * 1024
_TAIL = 4096
_OPERATOR_CHARS = frozenset("<>&|;()")
_KEYWORDS = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "{", "}", "!", "time", "exec"}
)


def command_segments(command: str | Sequence[str]) -> list[tuple[str, str]]:
    """Split a command into its simple commands as ``(name, text)`` pairs.

    ``name`` is the first word after leading ``VAR=value`` assignments and shell keywords;
    ``text`` is the simple command re-joined from its words.

    Raises:
        ValueError: the string cannot be tokenized (e.g. unbalanced quotes).
    """
    if not isinstance(command, str):
        words = list(command)
        return [(words[0], shlex.join(words))] if words else []
    # Over-approximate: anything that can start a nested command starts a new segment.
    text = command.replace("`", " ; ").replace("$(", " ; ( ").replace("\n", " ; ")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if skip_next:
            skip_next = False
            continue
        if token and set(token) <= _OPERATOR_CHARS:
            if "<" in token or ">" in token:
                skip_next = True  # the redirection target is a file, not a command
            else:
                segments.append([])
            continue
        segments[-1].append(token)
    out: list[tuple[str, str]] = []
    for words in segments:
        rest = list(words)
        while rest and (rest[0] in _KEYWORDS or _is_assignment(rest[0])):
            rest.pop(0)
        if rest:
            out.append((rest[0], shlex.join(rest)))
    return out


def _is_assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and name.isidentifier()


def _matches(pattern: str, name: str, text: str) -> bool:
    base = os.path.basename(name)
    return (
        fnmatch.fnmatchcase(name, pattern)
        or fnmatch.fnmatchcase(base, pattern)
        or fnmatch.fnmatchcase(text, pattern)
        or text.startswith(pattern + " ")
    )


def _check_permission(
    command: str | list[str], allow_lists: Sequence[Sequence[str]], deny: Sequence[str]
) -> None:
    if not allow_lists and not deny:
        return
    if any(not allow for allow in allow_lists):
        raise AsmError(
            ErrorCode.TOOL_PERMISSION_DENIED,
            "no command is allowed (empty allow list)",
            {"command": command if isinstance(command, str) else shlex.join(command), "tool_name": "shell"},
        )
    shown = command if isinstance(command, str) else shlex.join(command)
    try:
        segments = command_segments(command)
    except ValueError as exc:
        if allow_lists:
            raise AsmError(
                ErrorCode.TOOL_PERMISSION_DENIED,
                f"command cannot be parsed for the allow list: {exc}",
                {"command": shown, "tool_name": "shell"},
            ) from exc
        segments = [(word, word) for word in shown.split()]
    for name, text in segments:
        for pattern in deny:
            if _matches(pattern, name, text):
                raise AsmError(
                    ErrorCode.TOOL_PERMISSION_DENIED,
                    f"command {name!r} is denied by pattern {pattern!r}",
                    {"command": shown, "denied": text, "pattern": pattern, "tool_name": "shell"},
                )
        for allow in allow_lists:
            if not any(_matches(pattern, name, text) for pattern in allow):
                raise AsmError(
                    ErrorCode.TOOL_PERMISSION_DENIED,
                    f"command {name!r} is not in the allow list",
                    {"command": shown, "denied": text, "allow": list(allow), "tool_name": "shell"},
                )


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"{what} must be a list of strings")
    items = list(value)
    if not all(isinstance(v, str) and v for v in items):
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"{what} must be a list of non-empty strings")
    return items


class _Output:
    """Captured output of both streams under one byte budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.truncated = False
        self.parts: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def take(self, stream: str, delta: str) -> bool:
        size = len(delta.encode("utf-8"))
        if self.truncated or self.used + size > self.limit:
            self.truncated = True
            return False
        self.used += size
        self.parts[stream].append(delta)
        return True

    def text(self, stream: str) -> str:
        return "".join(self.parts[stream])


class ShellAdapter(ProviderAdapter):
    """Runs a local command as a run; see the module docstring for options and events.

    Args:
        allow: Allowed command patterns (``None``: anything not denied).
        deny: Denied command patterns (deny wins).
        success_exit_codes: Exit codes that count as success.
        timeout: Deadline per run in seconds (``None``: none).
        max_output_bytes: Captured/streamed output cap (stdout + stderr).
        cwd: Working directory (default: the current one).
        env: Environment overrides merged over ``os.environ`` (``None`` values remove).
        shell: The shell for string commands.
        term_grace: Seconds between SIGTERM and SIGKILL when stopping.
    """

    name = "shell"

    def __init__(
        self,
        *,
        allow: Sequence[str] | None = None,
        deny: Sequence[str] | None = None,
        success_exit_codes: Iterable[int] = (0,),
        timeout: float | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str | None] | None = None,
        shell: str = "/bin/sh",
        term_grace: float = 2.0,
    ) -> None:
        self.allow = None if allow is None else _str_list(allow, "allow")
        self.deny = _str_list(deny, "deny")
        self.success_exit_codes = frozenset(int(c) for c in success_exit_codes)
        self.timeout = timeout
        self.max_output_bytes = max_output_bytes
        self.cwd = cwd
        self.env = dict(env or {})
        self.shell = shell
        self.term_grace = term_grace
        self._running: dict[str, ProcessTransport] = {}

    def capabilities(self) -> list[Capability]:
        """Code execution and file access (the command can touch the filesystem)."""
        return [
            Capability(name="shell", type=CapabilityType.CODE_EXECUTION, description="run local commands"),
            Capability(name="file_access", type=CapabilityType.FILE_ACCESS),
        ]

    def validate_config(self) -> None:
        """Check the shell exists and the numeric options are sane."""
        if not (os.path.isfile(self.shell) and os.access(self.shell, os.X_OK)):
            raise AsmError(ErrorCode.PROVIDER_UNAVAILABLE, f"shell {self.shell!r} is not executable")
        if self.max_output_bytes <= 0:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "max_output_bytes must be positive")
        if self.timeout is not None and self.timeout <= 0:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "timeout must be positive")
        if not self.success_exit_codes:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "success_exit_codes must not be empty")

    async def cancel(self, run_id: str) -> None:
        """Kill the process group of ``run_id``'s command (no-op when it is not running)."""
        proc = self._running.get(run_id)
        if proc is not None:
            await proc.terminate()

    @staticmethod
    def _command(run: Run) -> str | list[str]:
        command = run.input.get("command")
        if command is None:
            return prompt_from_input(run)
        if isinstance(command, str) and command.strip():
            return command
        if isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            return list(command)
        raise AsmError(
            ErrorCode.INVALID_INPUT,
            "run input 'command' must be a non-empty string or a non-empty list of strings",
        )

    async def execute(self, run: Run, session: Session, emit: Emit, **opts: Any) -> ProviderResult:
        """Run the command; see the module docstring for events, result and errors."""
        command = self._command(run)
        allow_lists = [self.allow] if self.allow is not None else []
        if opts.get("allow") is not None:
            allow_lists.append(_str_list(opts["allow"], "allow"))
        deny = self.deny + _str_list(opts.get("deny"), "deny")
        _check_permission(command, allow_lists, deny)

        codes = opts.get("success_exit_codes")
        success = frozenset(int(c) for c in codes) if codes is not None else self.success_exit_codes
        timeout = opts.get("timeout", self.timeout)
        limit = int(opts.get("max_output_bytes", self.max_output_bytes))
        cwd = opts.get("cwd", self.cwd)
        env = {**self.env, **(opts.get("env") or {})}
        stdin = run.input.get("stdin")
        argv = [self.shell, "-c", command] if isinstance(command, str) else command
        shown = command if isinstance(command, str) else shlex.join(command)
        cwd_text = os.fspath(cwd) if cwd is not None else os.getcwd()
        call_id = f"shell_{uuid.uuid4().hex[:12]}"
        tool_input = {"command": shown, "cwd": cwd_text}
        output = _Output(limit)

        async def stream(name: str, line: str) -> None:
            delta = line + "\n"
            if output.take(name, delta):
                await emit(
                    ProviderEvent(
                        type=EventType.MESSAGE_STREAMED,
                        data={"stream": name, "delta": delta, "content": line},
                    )
                )

        async def on_stderr(line: str) -> None:
            await stream("stderr", line)

        transport = ProcessTransport(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin if isinstance(stdin, str) else None,
            timeout=timeout,
            max_line_bytes=_LINE_CHUNK,
            on_long_line="split",
            on_stderr_line=on_stderr,
            term_grace=self.term_grace,
            name="shell",
        )
        started = False
        try:
            async with transport as proc:
                self._running[run.id] = proc
                await emit(
                    ProviderEvent(
                        type=EventType.RUN_STARTED,
                        data={"command": shown, "cwd": cwd_text, "pid": proc.pid, "provider": "shell"},
                    )
                )
                await emit(
                    ProviderEvent(
                        type=EventType.TOOL_CALL_STARTED,
                        data={"tool_call_id": call_id, "tool_name": "shell", "tool_input": tool_input},
                    )
                )
                started = True
                async for line in proc.lines():
                    await stream("stdout", line)
                exit_code = await proc.wait()
                if proc.cancel_requested:
                    raise proc.error(ErrorCode.CANCELLED, "shell run was cancelled")
        except AsmError as exc:
            if started:
                await self._emit_failed(emit, call_id, tool_input, exc, output)
            raise
        finally:
            self._running.pop(run.id, None)

        stdout, stderr = output.text("stdout"), output.text("stderr")
        tool_output = {
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": output.truncated,
        }
        if exit_code not in success:
            err = AsmError(
                ErrorCode.TOOL_EXECUTION_FAILED,
                f"command exited with code {exit_code}",
                {
                    "command": shown,
                    "exit_code": exit_code,
                    "stderr_tail": transport.stderr_tail[-_TAIL:],
                    "stdout_tail": stdout[-_TAIL:],
                    "tool_name": "shell",
                },
            )
            await self._emit_failed(emit, call_id, tool_input, err, output, tool_output)
            raise err
        await emit(
            ProviderEvent(
                type=EventType.TOOL_CALL_COMPLETED,
                data={
                    "tool_call_id": call_id,
                    "tool_name": "shell",
                    "tool_input": tool_input,
                    "tool_output": tool_output,
                },
            )
        )
        await emit(
            ProviderEvent(
                type=EventType.MESSAGE_RECEIVED,
                data={"role": "assistant", "content": stdout, "stderr": stderr, "exit_code": exit_code},
            )
        )
        return ProviderResult(
            output={
                "content": stdout,
                "stderr": stderr,
                "exit_code": exit_code,
                "truncated": output.truncated,
                "tool_calls": [{"id": call_id, "name": "shell", "input": tool_input, "output": tool_output}],
                "stop_reason": "exit",
            },
            turn_count=1,
        )

    @staticmethod
    async def _emit_failed(
        emit: Emit,
        call_id: str,
        tool_input: dict[str, Any],
        err: AsmError,
        output: _Output,
        tool_output: dict[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {
            "tool_call_id": call_id,
            "tool_name": "shell",
            "tool_input": tool_input,
            "tool_output": tool_output
            or {
                "stdout": output.text("stdout"),
                "stderr": output.text("stderr"),
                "truncated": output.truncated,
            },
            "error_code": err.code.value,
            "error_message": err.message,
        }
        await emit(ProviderEvent(type=EventType.TOOL_CALL_FAILED, data=data))
