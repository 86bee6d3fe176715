"""SessionSupervisor: owns many SessionServers, one per session id."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from ..core import AsmError, ErrorCode
from ..ports import ProviderAdapter, SessionStore
from .server import SessionServer

__all__ = ("SessionSupervisor",)


@dataclass(eq=False)
class _Handle:
    server: SessionServer
    stop: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


class SessionSupervisor:
    """Starts, finds and stops :class:`SessionServer` instances by session id.

    Use as ``async with SessionSupervisor() as sup:``. Each server runs inside a task of the
    supervisor's task group (the server's ``async with`` lives in that task), so leaving the
    supervisor's block stops every server — each closes gracefully (its queued and in-flight
    runs end ``cancelled``) — and leaves no task behind. A server stopped with
    :meth:`stop_session` (or by the supervisor) is forgotten: :meth:`whereis` returns ``None``.
    """

    def __init__(self) -> None:
        self._servers: dict[str, _Handle] = {}
        self._reserved: set[str] = set()
        self._tg: TaskGroup | None = None
        self._open = False

    async def __aenter__(self) -> SessionSupervisor:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._open = False
        for handle in list(self._servers.values()):
            handle.stop.set()
        return await self._tg.__aexit__(exc_type, exc, tb)

    async def start_session(
        self,
        *,
        store: SessionStore,
        adapter: ProviderAdapter,
        session_opts: dict[str, Any] | None = None,
        session_id: str | None = None,
        **server_opts: Any,
    ) -> SessionServer:
        """Start a :class:`SessionServer` (same arguments) and return it once it is open.

        Raises:
            AsmError: ``already_exists`` if a server for that session id is running;
                ``invalid_operation`` if the supervisor is not open; the server's own errors
                (anything else is wrapped as ``internal_error``).
        """
        if not self._open or self._tg is None:
            raise AsmError(ErrorCode.INVALID_OPERATION, "the supervisor is not running")
        wanted = session_id or (session_opts or {}).get("session_id")
        if wanted is not None:
            self._reserve(wanted)
        try:
            server = SessionServer(
                store, adapter, session_opts=session_opts, session_id=session_id, **server_opts
            )
            handle: _Handle = await self._tg.start(self._serve, server)
        except AsmError:
            raise
        except TypeError as exc:
            raise AsmError(ErrorCode.VALIDATION_ERROR, f"invalid server options: {exc}") from exc
        except Exception as exc:
            raise AsmError(
                ErrorCode.INTERNAL_ERROR, f"Failed to start session: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if wanted is not None:
                self._reserved.discard(wanted)
        return handle.server

    def _reserve(self, session_id: str) -> None:
        if session_id in self._servers or session_id in self._reserved:
            raise AsmError(
                ErrorCode.ALREADY_EXISTS,
                f"A session server is already running for {session_id}",
                {"session_id": session_id},
            )
        self._reserved.add(session_id)

    async def _serve(self, server: SessionServer, *, task_status: TaskStatus[_Handle]) -> None:
        handle = _Handle(server)
        try:
            async with server:
                sid = server.session_id
                if sid in self._servers:  # created with an explicit id that is already served
                    raise AsmError(ErrorCode.ALREADY_EXISTS, f"A session server is already running for {sid}")
                self._servers[sid] = handle
                try:
                    task_status.started(handle)
                    await handle.stop.wait()
                finally:
                    self._servers.pop(sid, None)
        finally:
            handle.done.set()

    def whereis(self, session_id: str) -> SessionServer | None:
        """The running server of ``session_id``, or ``None``."""
        handle = self._servers.get(session_id)
        return handle.server if handle is not None else None

    def session_ids(self) -> list[str]:
        """Ids of the sessions with a running server, in start order."""
        return list(self._servers)

    async def stop_session(self, session_id: str) -> None:
        """Close the server of ``session_id`` and wait until it has closed.

        Raises:
            AsmError: ``session_not_found`` if no server runs for ``session_id``.
        """
        handle = self._servers.get(session_id)
        if handle is None:
            raise AsmError(
                ErrorCode.SESSION_NOT_FOUND,
                f"No session server running for {session_id}",
                {"session_id": session_id},
            )
        handle.stop.set()
        await handle.done.wait()
