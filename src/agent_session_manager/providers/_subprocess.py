"""Bounded subprocess transport for CLI providers: bytes → lines → JSON objects.

Every CLI adapter (Claude, Codex, Amp, shell) drives its child process through
:class:`ProcessTransport`. It owns the process and guarantees, whatever happens (normal exit,
error, deadline, cancellation of the calling task):

* the child runs in its **own process group** (``start_new_session=True``) so the whole
  group — including grandchildren such as the commands an agent runs — can be signalled;
* **shutdown is shielded and bounded**: optional SIGINT → ``interrupt_grace`` → SIGTERM to the
  group → ``term_grace`` → SIGKILL to the group, then the child is always reaped (no zombie)
  and any group member still alive after the leader exited is SIGKILLed (no orphan);
* stdout is framed into lines of at most ``max_line_bytes`` (default 10 MiB);
* stderr is drained concurrently into a bounded tail (default last 64 KiB) that is redacted
  with :func:`~agent_session_manager.providers._common.redact` before it is put into error
  details (``stderr_tail``);
* a per-run ``timeout`` is an absolute deadline for everything done through the transport
  (reading, waiting); when it passes the group is killed and
  ``AsmError(provider_timeout)`` is raised.

Typical use (three layers: framing → JSON → the adapter's typed events)::

    argv0 = resolve_binary("codex", cli_path=opts.get("cli_path"), env_var="ASM_CODEX_CLI",
                           install_hint="npm install -g @openai/codex")
    async with ProcessTransport([argv0, "exec", "--json", prompt], cwd=cwd,
                                env={"CODEX_API_KEY": key}, timeout=600, name="codex") as proc:
        async for obj in proc:           # dict per JSON line; noise lines skipped
            ...                          # map to ProviderEvents
        code = await proc.finish()       # raises AsmError(cancelled / provider_error)

Another task may call :meth:`ProcessTransport.terminate` (the adapter's ``cancel``); the
process is stopped, iteration ends at EOF and :meth:`~ProcessTransport.finish` raises
``AsmError(cancelled)``. :meth:`~ProcessTransport.interrupt` only sends SIGINT (for CLIs that
then print a final result, e.g. Claude Code and Amp); ``interrupt_first=True`` makes every
stop begin with SIGINT. Reading APIs: ``async for obj in proc`` / :meth:`objects` (dicts),
:meth:`lines` (decoded text), :meth:`read_line` (bytes); :meth:`send` / :meth:`close_stdin`
with ``keep_stdin_open=True``; :meth:`error` builds an ``AsmError`` whose details carry
``exit_code``, ``stderr_tail`` (redacted), ``pid`` and ``noise_lines``. Exit-code policy is
the adapter's: Amp exits 0 after an error result, Claude exits 1 on ``is_error`` results.

Line framing options (``on_long_line``):

* ``"error"`` (default): a line longer than ``max_line_bytes`` kills the process and raises
  ``AsmError(provider_error, "line exceeds N bytes")`` — a JSONL provider that emits such a
  line is broken, and buffering it would be unbounded.
* ``"skip"``: the over-long line is discarded (counted in ``long_lines``) and reading
  continues at the next newline.
* ``"split"``: the line is delivered in chunks of ``max_line_bytes`` (for plain-text output,
  e.g. the shell adapter).

Non-UTF-8 bytes are decoded with ``errors="replace"``. When iterating JSON objects, lines
that are not a JSON object (garbage, banners, ``[1, 2]``) are skipped, logged at DEBUG on the
``agent_session_manager.providers.subprocess`` logger (redacted, truncated) and counted in
``noise_lines``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.abc

from ..core import AsmError, ErrorCode
from ._common import redact

__all__ = (
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_STDERR_TAIL_BYTES",
    "LongLinePolicy",
    "ProcessTransport",
    "effective_env",
    "resolve_binary",
)

logger = logging.getLogger("agent_session_manager.providers.subprocess")

DEFAULT_MAX_LINE_BYTES = 10 * 1024 * 1024
DEFAULT_STDERR_TAIL_BYTES = 64 * 1024
_READ_CHUNK = 64 * 1024
_REAP_LIMIT = 5.0

LongLinePolicy = Literal["error", "skip", "split"]
StderrCallback = Callable[[str], Awaitable[None]]


def effective_env(overrides: Mapping[str, Any] | None, *, inherit: bool = True) -> dict[str, str]:
    """The environment a child gets: ``os.environ`` (or nothing) with ``overrides`` applied.

    A ``None`` override removes the variable; other values are converted with ``str``. This is
    what :class:`ProcessTransport` passes to the child, so adapters use it to look at the
    environment the CLI will see (binary lookup, API keys, home directories).
    """
    env = dict(os.environ) if inherit else {}
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def resolve_binary(
    name: str,
    *,
    cli_path: str | os.PathLike[str] | None = None,
    env_var: str | Sequence[str] | None = None,
    install_hint: str | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Find the executable of a CLI provider.

    Order: explicit ``cli_path`` → the environment variable ``env_var`` (or the first set one
    of several names, in order; looked up in ``env`` or ``os.environ``) →
    ``shutil.which(name)`` on ``env``'s ``PATH``. An explicit path or env var that does not
    point to an executable file is an error too (it is never silently ignored).

    Raises:
        AsmError: ``provider_unavailable``; ``details`` holds ``binary``, ``searched``,
            ``install_command`` (``install_hint``) and ``env_var`` (the variable that named
            the path, else the first one), and the message names the install command.
    """
    environ = os.environ if env is None else env
    env_vars = [v for v in ([env_var] if isinstance(env_var, str) else env_var or ()) if v]
    candidates: list[tuple[str, str]] = []
    if cli_path:
        candidates.append(("cli_path", os.fspath(cli_path)))
    else:
        candidates += [(var, environ[var]) for var in env_vars if environ.get(var)][:1]
    if candidates:
        source, path = candidates[0]
        found = shutil.which(path) if os.sep not in path else path
        if found and os.path.isfile(found) and os.access(found, os.X_OK):
            return found
        reason = f"{name} CLI not found at {path!r} (from {source})"
    else:
        found = shutil.which(name, path=environ.get("PATH"))
        if found:
            return found
        reason = f"{name} CLI not found on PATH"
    searched = [c[1] for c in candidates] or [name]
    message = reason + (f"; install with: {install_hint}" if install_hint else "")
    details: dict[str, Any] = {"binary": name, "searched": searched}
    if install_hint:
        details["install_command"] = install_hint
    if env_vars:
        source = candidates[0][0] if candidates else ""
        details["env_var"] = source if source in env_vars else env_vars[0]
    raise AsmError(ErrorCode.PROVIDER_UNAVAILABLE, message, details)


class _TailBuffer:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self.total = 0

    def append(self, data: bytes) -> None:
        self.total += len(data)
        self._buf += data
        excess = len(self._buf) - self.limit
        if excess > 0:
            del self._buf[:excess]

    def text(self) -> str:
        return redact(self._buf.decode("utf-8", errors="replace"))


class ProcessTransport:
    """One child process, read as lines or JSON objects; an async context manager.

    Args:
        argv: Program and arguments (``argv[0]`` from :func:`resolve_binary`).
        cwd: Working directory of the child.
        env: Overrides merged over ``os.environ`` (or over nothing with
            ``inherit_env=False``); a ``None`` value removes the variable.
        inherit_env: Start from ``os.environ``.
        stdin: Data for the child's stdin. ``None`` (default) gives the child a closed stdin
            (``/dev/null``: it sees EOF at once — required by Codex and Amp); ``bytes``/``str``
            are written to a pipe (concurrently with reading) which is then closed.
        keep_stdin_open: Give the child a stdin pipe that stays open (after ``stdin`` data,
            if any) for :meth:`send` / :meth:`close_stdin` (stream-json input protocols).
        timeout: Seconds from spawn until the deadline (``None``: no deadline).
        max_line_bytes: Longest accepted stdout line (without the newline).
        on_long_line: ``"error"``, ``"skip"`` or ``"split"``; see the module docstring.
        stderr_tail_bytes: How much of stderr is kept for error details.
        on_stderr_line: Optional async callback receiving each decoded stderr line. It runs
            in the transport's drain task; all lines have been delivered when :meth:`wait`
            returns, and an exception it raised is re-raised by :meth:`wait` /
            :meth:`finish` (later lines are then not delivered).
        interrupt_first: Send SIGINT before SIGTERM when stopping (lets a CLI end cleanly).
        interrupt_grace: Seconds to wait after SIGINT.
        term_grace: Seconds to wait after SIGTERM before SIGKILL.
        orphan_grace: After the child exits, seconds to wait for stdout EOF before killing
            group members (e.g. a backgrounded grandchild) that keep the pipe open.
        name: Provider name used in messages and details.

    Attributes:
        pid: The child's pid (also its process-group id) once started.
        returncode: Exit code once reaped (negative: killed by that signal).
        noise_lines: Non-JSON lines skipped by JSON iteration.
        long_lines: Over-long lines skipped or split.
        cancel_requested: True once :meth:`terminate` was called.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str | None] | None = None,
        inherit_env: bool = True,
        stdin: bytes | str | None = None,
        keep_stdin_open: bool = False,
        timeout: float | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        on_long_line: LongLinePolicy = "error",
        stderr_tail_bytes: int = DEFAULT_STDERR_TAIL_BYTES,
        on_stderr_line: StderrCallback | None = None,
        interrupt_first: bool = False,
        interrupt_grace: float = 2.0,
        term_grace: float = 3.0,
        orphan_grace: float = 1.0,
        name: str = "provider",
    ) -> None:
        if not argv:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "argv must not be empty")
        if max_line_bytes <= 0:
            raise AsmError(ErrorCode.VALIDATION_ERROR, "max_line_bytes must be positive")
        self.argv = [os.fspath(a) for a in argv]
        self.cwd = cwd
        self.name = name
        self.timeout = timeout
        self.max_line_bytes = max_line_bytes
        self.on_long_line: LongLinePolicy = on_long_line
        self.interrupt_first = interrupt_first
        self.interrupt_grace = interrupt_grace
        self.term_grace = term_grace
        self.orphan_grace = orphan_grace
        self._stdin = stdin
        self._keep_stdin_open = keep_stdin_open
        self._tg: anyio.abc.TaskGroup | None = None
        self._stderr_eof = anyio.Event()
        self._callback_error: BaseException | None = None
        self._on_stderr_line = on_stderr_line
        self._env = effective_env(env, inherit=inherit_env)
        self._stderr = _TailBuffer(stderr_tail_bytes)
        self._process: anyio.abc.Process | None = None
        self._deadline = float("inf")
        self._buffer = bytearray()
        self._eof = False
        self._skipping = False
        self._stopping = False
        self._stdout_eof = anyio.Event()
        self.pid: int | None = None
        self.returncode: int | None = None
        self.noise_lines = 0
        self.long_lines = 0
        self.cancel_requested = False
        self.timed_out = False

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Spawn the process and start the stderr drain (and stdin writer)."""
        piped = self._stdin is not None or self._keep_stdin_open
        try:
            process = await anyio.open_process(
                self.argv,
                stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=self._env,
                start_new_session=True,
            )
        except OSError as exc:
            raise AsmError(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"{self.name}: cannot start {self.argv[0]!r}: {exc.strerror or exc}",
                {
                    "binary": self.argv[0],
                    "errno": exc.errno,
                    "cwd": os.fspath(self.cwd) if self.cwd else None,
                },
            ) from exc
        self._process = process
        self.pid = process.pid
        if self.timeout is not None:
            self._deadline = anyio.current_time() + self.timeout
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._drain_stderr)
        tg.start_soon(self._watch_exit)
        if self._stdin is not None:
            data = self._stdin.encode() if isinstance(self._stdin, str) else self._stdin
            tg.start_soon(self._write_stdin, data)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop the process (shielded, bounded escalation), reap it and end the helper tasks."""
        tg = self._tg
        try:
            await self._shutdown()
        finally:
            if tg is not None:
                tg.cancel_scope.cancel()
                # The body's exception propagates by itself; passing it in would wrap it
                # in an ExceptionGroup (the helper tasks never raise).
                await tg.__aexit__(None, None, None)
        return None

    # -- helper tasks --------------------------------------------------------------------

    async def _drain_stderr(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        pending = bytearray()
        try:
            with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                async for chunk in self._process.stderr:
                    self._stderr.append(chunk)
                    if self._on_stderr_line is None:
                        continue
                    pending += chunk
                    while (idx := pending.find(b"\n")) >= 0 or len(pending) > self.max_line_bytes:
                        cut = idx if idx >= 0 else self.max_line_bytes
                        line = bytes(pending[:cut])
                        del pending[: cut + 1 if idx >= 0 else cut]
                        await self._stderr_callback(line)
            if pending:
                await self._stderr_callback(bytes(pending))
        finally:
            self._stderr_eof.set()

    async def _stderr_callback(self, line: bytes) -> None:
        if self._on_stderr_line is None or self._callback_error is not None:
            return
        try:
            await self._on_stderr_line(line.decode("utf-8", errors="replace"))
        except Exception as exc:
            # Surfaced by wait()/finish() in the caller's task, not as an ExceptionGroup.
            self._callback_error = exc

    async def _write_stdin(self, data: bytes) -> None:
        with contextlib.suppress(AsmError):
            await self.send(data)
        if not self._keep_stdin_open:
            await self.close_stdin()

    async def _watch_exit(self) -> None:
        """Once the child exits, give stdout ``orphan_grace`` to close, then kill the group.

        A backgrounded grandchild that inherited stdout would otherwise keep the pipe (and
        the reader) open until the deadline.
        """
        assert self._process is not None
        await self._process.wait()
        self.returncode = self._process.returncode
        with anyio.move_on_after(self.orphan_grace):
            await self._stdout_eof.wait()
        self._killpg(signal.SIGKILL)

    # -- signals and shutdown ------------------------------------------------------------

    def _killpg(self, sig: signal.Signals) -> bool:
        if self.pid is None:
            return False
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def _wait_exited(self, seconds: float) -> bool:
        # Waits on the process itself: the helper tasks may already be cancelled.
        assert self._process is not None
        with anyio.move_on_after(seconds):
            await self._process.wait()
            return True
        return False

    async def _stop(self) -> None:
        """Escalate interrupt → SIGTERM → SIGKILL until the leader has exited, then reap."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            if self.interrupt_first and not self._stopping:
                self._killpg(signal.SIGINT)
                await self._wait_exited(self.interrupt_grace)
            self._stopping = True
            if process.returncode is None:
                self._killpg(signal.SIGTERM)
                await self._wait_exited(self.term_grace)
            if process.returncode is None:
                self._killpg(signal.SIGKILL)
        with anyio.move_on_after(_REAP_LIMIT):
            await process.wait()
        self.returncode = process.returncode
        # Members of the group that outlived the leader (orphans) are killed too.
        self._killpg(signal.SIGKILL)

    async def _shutdown(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stop()
            process = self._process
            if process is not None:
                with anyio.move_on_after(_REAP_LIMIT):
                    await process.aclose()

    async def terminate(self) -> None:
        """Cancel: stop the process (bounded escalation) from any task.

        After this the reader sees EOF and :meth:`finish` raises ``AsmError(cancelled)``.
        """
        self.cancel_requested = True
        with anyio.CancelScope(shield=True):
            await self._stop()

    async def interrupt(self) -> None:
        """Send SIGINT to the process group (a clean, provider-handled interrupt)."""
        self.cancel_requested = True
        self._killpg(signal.SIGINT)

    # -- stdin ---------------------------------------------------------------------------

    async def send(self, data: bytes | str) -> None:
        """Write to the child's stdin (``stdin="pipe"`` or while the initial data is written)."""
        if self._process is None or self._process.stdin is None:
            raise AsmError(ErrorCode.INVALID_OPERATION, f"{self.name}: stdin is not a pipe")
        payload = data.encode() if isinstance(data, str) else data
        try:
            await self._process.stdin.send(payload)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise self.error(ErrorCode.PROVIDER_ERROR, f"{self.name}: stdin closed by the process") from exc

    async def close_stdin(self) -> None:
        """Close the child's stdin (it sees EOF)."""
        if self._process is not None and self._process.stdin is not None:
            with contextlib.suppress(OSError, anyio.BrokenResourceError):
                await self._process.stdin.aclose()

    # -- reading -------------------------------------------------------------------------

    async def _timeout_error(self) -> AsmError:
        self.timed_out = True
        with anyio.CancelScope(shield=True):
            await self._stop()
        return self.error(
            ErrorCode.PROVIDER_TIMEOUT,
            f"{self.name} did not finish within {self.timeout} s",
            timeout=self.timeout,
        )

    async def _receive(self) -> bytes | None:
        assert self._process is not None
        assert self._process.stdout is not None
        with anyio.CancelScope(deadline=self._deadline) as scope:
            try:
                return await self._process.stdout.receive(_READ_CHUNK)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return None
        if scope.cancelled_caught:
            raise await self._timeout_error()
        return None  # pragma: no cover - the scope only exits early on its deadline

    async def read_line(self) -> bytes | None:
        """The next stdout line without its newline (``None`` at EOF); applies ``on_long_line``."""
        if self._process is None:
            raise AsmError(ErrorCode.INVALID_OPERATION, "ProcessTransport used outside 'async with'")
        buf = self._buffer
        limit = self.max_line_bytes
        while True:
            idx = buf.find(b"\n")
            if self._skipping:
                if idx >= 0:
                    del buf[: idx + 1]
                    self._skipping = False
                    continue
                buf.clear()
            elif 0 <= idx <= limit:
                line = bytes(buf[:idx])
                del buf[: idx + 1]
                return line.removesuffix(b"\r")
            elif idx > limit or len(buf) > limit:
                self.long_lines += 1
                if self.on_long_line == "split":
                    head = bytes(buf[:limit])
                    del buf[:limit]
                    return head
                if self.on_long_line == "error":
                    with anyio.CancelScope(shield=True):
                        await self._stop()
                    raise self.error(
                        ErrorCode.PROVIDER_ERROR,
                        f"{self.name}: output line exceeds {limit} bytes",
                        max_line_bytes=limit,
                    )
                logger.warning("%s: skipped a stdout line longer than %d bytes", self.name, limit)
                self._skipping = True
                continue
            if self._eof:
                self._stdout_eof.set()
                if buf and not self._skipping:
                    line = bytes(buf)
                    buf.clear()
                    return line
                return None
            chunk = await self._receive()
            if chunk is None:
                self._eof = True
            else:
                buf += chunk

    async def lines(self) -> AsyncIterator[str]:
        """Decoded stdout lines (UTF-8, invalid bytes replaced) until EOF."""
        while (line := await self.read_line()) is not None:
            yield line.decode("utf-8", errors="replace")

    async def objects(self, on_noise: Callable[[str], None] | None = None) -> AsyncIterator[dict[str, Any]]:
        """JSON objects, one per stdout line; other lines are skipped and counted as noise.

        Blank lines are skipped silently. ``on_noise`` sees each other non-object line
        (stripped) before it is counted; an exception it raises ends the iteration and
        propagates (e.g. Amp turning its interactive-login banner into an auth failure).
        """
        async for text in self.lines():
            stripped = text.strip()
            if not stripped:
                continue
            try:
                obj = json.loads(stripped)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                yield obj
                continue
            if on_noise is not None:
                on_noise(stripped)
            self.noise_lines += 1
            logger.debug("%s: skipped non-JSON output line: %s", self.name, redact(stripped[:200]))

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        """Iterate :meth:`objects`."""
        return self.objects()

    # -- completion ----------------------------------------------------------------------

    async def wait(self) -> int:
        """Wait (within the deadline) for the process to exit; returns its exit code."""
        assert self._process is not None
        code: int | None = None
        with anyio.CancelScope(deadline=self._deadline):
            code = await self._process.wait()
            # Late stderr (written just before exit) belongs in the error details.
            with anyio.move_on_after(self.orphan_grace):
                await self._stderr_eof.wait()
        if code is None:
            raise await self._timeout_error()
        self.returncode = code
        if self._callback_error is not None:
            raise self._callback_error
        return code

    async def finish(self, success_codes: frozenset[int] | set[int] = frozenset({0})) -> int:
        """Wait for exit and check it.

        Raises:
            AsmError: ``cancelled`` after :meth:`terminate`/:meth:`interrupt`;
                ``provider_timeout`` past the deadline; ``provider_error`` when the exit code
                is not in ``success_codes`` (details carry ``exit_code`` and ``stderr_tail``).
        """
        code = await self.wait()
        if self.cancel_requested:
            raise self.error(ErrorCode.CANCELLED, f"{self.name} run was cancelled")
        if code not in success_codes:
            raise self.error(ErrorCode.PROVIDER_ERROR, f"{self.name} exited with code {code}")
        return code

    @property
    def stderr_tail(self) -> str:
        """The redacted tail of stderr collected so far."""
        return self._stderr.text()

    def error_details(self, **extra: Any) -> dict[str, Any]:
        """JSON-safe details for an error about this process (redacted stderr tail included)."""
        details: dict[str, Any] = {
            "provider": self.name,
            "exit_code": self.returncode,
            "stderr_tail": self.stderr_tail,
            "pid": self.pid,
            "noise_lines": self.noise_lines,
        }
        details.update(extra)
        return details

    def error(self, code: ErrorCode, message: str, **extra: Any) -> AsmError:
        """Build an :class:`AsmError` whose details describe this process."""
        return AsmError(code, redact(message), self.error_details(**extra))
