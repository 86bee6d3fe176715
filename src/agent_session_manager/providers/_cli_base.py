"""Shared base of the adapters that run one JSONL-speaking CLI process per run (Codex, Amp).

:class:`JsonlCliAdapter` owns what those adapters do the same way; the subclasses keep their
explicit constructor keywords, command lines, stream mappers and end-of-run checks:

* options: constructor defaults merged with the per-run ``execute(**opts)``
  (:meth:`~JsonlCliAdapter._options`): a ``None`` per-run value keeps the default (except
  ``timeout``, where ``None`` disables the deadline), the mapping options named in
  ``merged_mappings`` (``env``; Codex adds ``config``) are merged key by key, and
  ``permission_mode`` and ``max_turns`` (a positive int or ``None``) are validated, at
  construction and per run;
* the binary: ``cli_path`` → the first set variable of ``cli_env_vars`` → ``binary_name`` on
  ``PATH``, looked up in the environment the child will get (``provider_unavailable`` with the
  install command otherwise);
* the child's environment: the ``env`` overrides plus ``api_key`` → ``api_key_env``;
* the process: a :class:`~._subprocess.ProcessTransport` (own process group, SIGINT first,
  ``interrupt_grace`` 2 s / ``term_grace`` 3 s by default, ``timeout`` deadline,
  ``max_line_bytes``) registered under the run id for :meth:`~JsonlCliAdapter.cancel`;
* the stream: JSON objects → the mapper's events → ``emit``; afterwards a cancelled run raises
  ``cancelled`` and a failure the mapper recorded is raised with the process details (exit
  code, redacted stderr tail) merged under its own;
* ``max_turns``: neither CLI has a turn limit, so the mappers count model turns themselves and
  set ``limit`` when a turn beyond ``max_turns`` begins; :meth:`~JsonlCliAdapter._pump` then
  stops reading, stops the process (SIGINT → SIGTERM → SIGKILL, the same bounded escalation
  as :meth:`~JsonlCliAdapter.cancel`) and raises that error (``provider_error`` with
  ``details["reason"] == "max_turns"``, see :func:`~._common.max_turns_error`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, ClassVar, Protocol, cast

from ..core import AsmError, Capability, CapabilityType, ErrorCode
from ..ports.provider import Emit, ProviderAdapter, ProviderEvent
from ._common import normalize_max_turns, normalize_permission_mode
from ._subprocess import DEFAULT_MAX_LINE_BYTES, ProcessTransport, effective_env, resolve_binary

__all__ = ("JsonlCliAdapter", "StreamMapper")


class StreamMapper(Protocol):
    """What :meth:`JsonlCliAdapter._pump` needs of a provider's pure stream mapper."""

    failure: AsmError | None
    limit: AsmError | None
    """Set when the run must be stopped now (a turn beyond ``max_turns`` began)."""

    def feed(self, obj: Mapping[str, Any]) -> list[ProviderEvent]:
        """Map one decoded JSON object to the events to emit."""
        ...


class JsonlCliAdapter(ProviderAdapter):
    """Base of the one-process-per-run JSONL CLI adapters; see the module docstring.

    Subclasses set ``name``, ``binary_name``, ``cli_env_vars``, ``install_hint`` and
    ``api_key_env`` (and ``merged_mappings`` when more options than ``env`` are mappings), pass
    their constructor keywords to ``__init__`` as ``defaults`` and implement ``execute`` with
    :meth:`_process`, :meth:`_pump` and :meth:`_raise_if_stopped`.
    """

    binary_name: ClassVar[str]
    cli_env_vars: ClassVar[tuple[str, ...]]
    install_hint: ClassVar[str]
    api_key_env: ClassVar[str]
    merged_mappings: ClassVar[frozenset[str]] = frozenset({"env"})

    def __init__(self, defaults: Mapping[str, Any]) -> None:
        self._defaults: dict[str, Any] = {
            **defaults,
            "permission_mode": normalize_permission_mode(defaults.get("permission_mode")),
            "max_turns": normalize_max_turns(defaults.get("max_turns")),
        }
        self._running: dict[str, ProcessTransport] = {}

    def capabilities(self) -> list[Capability]:
        """Streaming (whole messages), tool use, shell, file edits, MCP, interrupt."""
        return [
            Capability(name="streaming", type=CapabilityType.SAMPLING),
            Capability(name="tool_use", type=CapabilityType.TOOL),
            Capability(name="interrupt", type=CapabilityType.SAMPLING),
            Capability(name="mcp", type=CapabilityType.TOOL),
            Capability(name="file_operations", type=CapabilityType.FILE_ACCESS),
            Capability(name="bash", type=CapabilityType.CODE_EXECUTION),
        ]

    async def cancel(self, run_id: str) -> None:
        """SIGINT the run's process group, escalating to SIGTERM/SIGKILL; no-op if unknown."""
        proc = self._running.get(run_id)
        if proc is not None:
            await proc.terminate()

    # -- options -------------------------------------------------------------------------

    def _options(self, opts: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults with the per-run ``opts`` applied (see the module docstring)."""
        merged = dict(self._defaults)
        for key, value in opts.items():
            if key in self.merged_mappings and isinstance(value, Mapping):
                merged[key] = {**merged.get(key, {}), **value}
            elif value is not None or key == "timeout":
                merged[key] = value
        merged["permission_mode"] = normalize_permission_mode(merged.get("permission_mode"))
        merged["max_turns"] = normalize_max_turns(merged.get("max_turns"))
        return merged

    def _binary(self, o: Mapping[str, Any]) -> str:
        """The CLI executable for options ``o`` (raises ``provider_unavailable``)."""
        return resolve_binary(
            self.binary_name,
            cli_path=o.get("cli_path"),
            env_var=self.cli_env_vars,
            install_hint=self.install_hint,
            env=effective_env(o.get("env")),
        )

    def _env(self, o: Mapping[str, Any]) -> dict[str, str | None]:
        """Environment overrides for the child (a ``None`` value removes the variable)."""
        env = {str(k): None if v is None else str(v) for k, v in (o.get("env") or {}).items()}
        if o.get("api_key"):
            env[self.api_key_env] = str(o["api_key"])
        return env

    @staticmethod
    def _thread_id(o: Mapping[str, Any]) -> str | None:
        """The provider thread to resume (``resume_session_id``, alias ``provider_session_id``)."""
        thread_id: str | None = o.get("resume_session_id") or o.get("provider_session_id") or None
        return thread_id

    # -- the process ---------------------------------------------------------------------

    @asynccontextmanager
    async def _process(
        self, run_id: str, o: Mapping[str, Any], argv: list[str], *, stdin: str
    ) -> AsyncIterator[ProcessTransport]:
        """Start the CLI for one run; it is reachable by :meth:`cancel` while the body runs."""
        transport = ProcessTransport(
            argv,
            cwd=o.get("cwd"),
            env=self._env(o),
            stdin=stdin,
            timeout=o.get("timeout"),
            max_line_bytes=int(o.get("max_line_bytes") or DEFAULT_MAX_LINE_BYTES),
            interrupt_first=True,
            name=self.name,
            interrupt_grace=float(o.get("interrupt_grace") or 2.0),
            term_grace=float(o.get("term_grace") or 3.0),
        )
        async with transport as proc:
            self._running[run_id] = proc
            try:
                yield proc
            finally:
                self._running.pop(run_id, None)

    @staticmethod
    async def _pump(
        proc: ProcessTransport,
        mapper: StreamMapper,
        emit: Emit,
        on_noise: Callable[[str], None] | None = None,
    ) -> int:
        """Feed every JSON object to ``mapper`` and emit its events; returns the exit code.

        Raises:
            AsmError: the mapper's ``limit`` (with the process details merged under its own)
                once it is set, after the process has been stopped and reaped.
        """
        # objects() is an async generator: close it when the limit breaks out of the loop.
        stream = cast("AsyncGenerator[dict[str, Any], None]", proc.objects(on_noise=on_noise))
        async with aclosing(stream) as objects:
            async for obj in objects:
                for event in mapper.feed(obj):
                    await emit(event)
                if mapper.limit is not None:
                    break
        limit = mapper.limit
        if limit is not None:
            await proc.terminate()
            raise AsmError(limit.code, limit.message, {**proc.error_details(), **limit.details})
        return await proc.wait()

    def _raise_if_stopped(self, proc: ProcessTransport, failure: AsmError | None, **ids: Any) -> None:
        """Raise ``cancelled`` for a cancelled run, else the mapper's ``failure`` with process details.

        ``ids`` (e.g. ``thread_id``) go into the details of the ``cancelled`` error; the
        failure's own details win over the process details.
        """
        if proc.cancel_requested:
            raise proc.error(ErrorCode.CANCELLED, f"{self.name} run was cancelled", **ids)
        if failure is not None:
            raise AsmError(failure.code, failure.message, {**proc.error_details(), **failure.details})
