"""``open_store(url)``: pick and open a session store from a URL.

Accepted URLs:

* ``memory://`` — :class:`InMemorySessionStore` (process-local, not durable).
* ``sqlite:///relative/path.db`` — :class:`SQLiteSessionStore` on a path relative to the
  current directory; ``sqlite:////abs/path.db`` (four slashes) — an absolute path. This is
  the SQLAlchemy convention: what follows ``sqlite:///`` is the path as you would type it,
  so ``f"sqlite:///{path}"`` works for both kinds of ``path``. ``~`` is expanded. Query
  options: ``synchronous=NORMAL|FULL``, ``busy_timeout=<seconds>``, ``mode=ro`` (or
  ``read_only=1``), ``poll_interval=<seconds>``.
* ``postgresql://…`` / ``postgres://…`` — :class:`PostgresSessionStore` (needs the
  ``postgres`` extra), opened with ``PostgresSessionStore.connect(url)``.

Any other scheme raises ``AsmError(validation_error)``.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

import anyio.to_thread

from ..core import AsmError, ErrorCode
from ..ports import SessionStore
from .memory import InMemorySessionStore

__all__ = ("default_store_url", "open_store")

_APP_NAME = "agent-session-manager"
_TRUE = ("1", "true", "yes", "on")


def default_store_url() -> str:
    """``$ASM_STORE`` if set, else a SQLite file in the user data directory.

    The default is ``sqlite:///<user_data_dir>/sessions.db`` with ``user_data_dir`` from
    ``platformdirs.user_data_dir("agent-session-manager")``; the directory is created when
    the store is opened.
    """
    env = os.environ.get("ASM_STORE", "").strip()
    if env:
        return env
    import platformdirs

    return "sqlite:///" + os.path.join(platformdirs.user_data_dir(_APP_NAME), "sessions.db")


def _bad(url: str, why: str) -> AsmError:
    shown = _redact(url)
    return AsmError(ErrorCode.VALIDATION_ERROR, f"invalid store URL {shown!r}: {why}", {"url": shown})


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url


def _sqlite_target(url: str, rest: str) -> tuple[str, dict[str, Any]]:
    """The file path and constructor options of a ``sqlite://`` URL (creates the parent dir)."""
    if not rest.startswith("/"):
        raise _bad(url, "use sqlite:///relative.db or sqlite:////absolute/path.db")
    path, _, query = rest[1:].partition("?")
    path = urllib.parse.unquote(path)
    if not path or path == ":memory:":
        raise _bad(url, "a file path is required (use memory:// for a non-durable store)")
    path = os.path.abspath(os.path.expanduser(path))
    options = _sqlite_options(url, query)
    if not options.get("read_only"):
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise AsmError(
                ErrorCode.STORAGE_ERROR, f"cannot create directory {parent}: {exc}", {"path": parent}
            ) from exc
    return path, options


def _sqlite_options(url: str, query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        try:
            if key == "synchronous":
                options["synchronous"] = value.upper()
            elif key in ("busy_timeout", "poll_interval"):
                options[key] = float(value)
            elif key == "mode":
                if value not in ("ro", "rw", "rwc"):
                    raise ValueError(value)
                options["read_only"] = value == "ro"
            elif key == "read_only":
                options["read_only"] = value.lower() in _TRUE
            else:
                raise _bad(url, f"unknown option {key!r}")
        except ValueError:
            raise _bad(url, f"bad value for {key!r}: {value!r}") from None
    return options


async def open_store(url: str | None = None) -> SessionStore:
    """Open the store named by ``url`` (default: :func:`default_store_url`).

    Returns an opened store; use it as an async context manager (or ``await
    store.close()``) to release it.
    """
    if url is None:
        url = default_store_url()
    if not isinstance(url, str) or "://" not in url:
        raise _bad(str(url), "expected scheme://…, e.g. memory://, sqlite:///path.db, postgresql://…")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory":
        if rest.strip("/"):
            raise _bad(url, "memory:// takes no path")
        return InMemorySessionStore()
    if scheme == "sqlite":
        from .sqlite import SQLiteSessionStore

        path, options = await anyio.to_thread.run_sync(_sqlite_target, url, rest)
        return await SQLiteSessionStore(path, **options).open()
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresSessionStore

        store: SessionStore = await PostgresSessionStore.connect(url)
        return store
    raise _bad(url, f"unknown scheme {scheme!r} (expected memory, sqlite, postgresql)")
