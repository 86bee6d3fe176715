"""A throwaway PostgreSQL server for tests and benchmarks.

:class:`PostgresServer` runs ``initdb`` in a fresh temporary directory and starts a private
postmaster listening on ``127.0.0.1`` (a free port) and on a unix socket inside that directory.
The superuser role gets a password (``scram-sha-256`` authentication), so a wrong password is
refused as it would be by a real server. :meth:`PostgresServer.stop` always stops the server
(``pg_ctl stop -m fast``, then ``SIGKILL``) and removes the directory.

PostgreSQL refuses to run as root; when the current process is root, the server binaries run
as an unprivileged user (``nobody`` by default, env ``ASM_PG_USER``) through ``setpriv`` and the
temporary directory is handed over to that user.

Server binaries are looked up in ``$ASM_PG_BIN``, then ``/usr/lib/postgresql/<newest>/bin``
(Debian layout), then ``PATH``. ``PostgresServer.available()`` tells whether they were found.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

__all__ = ("PostgresServer", "PostgresServerError", "find_pg_bin")

_TOOLS = ("initdb", "pg_ctl", "postgres")


class PostgresServerError(RuntimeError):
    """The throwaway server could not be created or started (test infrastructure failure)."""


def find_pg_bin() -> Path | None:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates: list[Path] = []
    env = os.environ.get("ASM_PG_BIN")
    if env:
        candidates.append(Path(env))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.split(".")[0].isdigit()]
        versions.sort(key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()), reverse=True)
        candidates.extend(v / "bin" for v in versions)
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in _TOOLS):
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory.

    Args:
        user: Superuser role created by ``initdb``.
        password: Its password (random when omitted).
        database: Database created at start (``postgres`` always exists too).
        durable: Keep ``fsync``/``synchronous_commit`` on (default). ``False`` trades crash
            safety of the *server* for speed (fine for unit tests).
        bin_dir: Directory of the server binaries (default: :func:`find_pg_bin`).
        run_as: OS user that runs the server when the current process is root.
        settings: Extra ``-c name=value`` server settings.
        startup_timeout: Seconds to wait for the server to accept connections.

    Use as a context manager or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        user: str = "asm",
        password: str | None = None,
        database: str = "asm",
        durable: bool = True,
        bin_dir: str | Path | None = None,
        run_as: str | None = None,
        settings: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.user = user
        self.password = password or secrets.token_hex(12)
        self.database = database
        self.durable = durable
        self.bin_dir = Path(bin_dir) if bin_dir is not None else find_pg_bin()
        self.run_as = run_as or os.environ.get("ASM_PG_USER", "nobody")
        self.settings = dict(settings or {})
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.base_dir: Path | None = None
        self._started = False

    @staticmethod
    def available() -> bool:
        """Whether the server binaries were found."""
        return find_pg_bin() is not None

    # -- addresses ---------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's unix socket."""
        return self._base() / "sock"

    def url_for(self, database: str | None = None) -> str:
        """A ``postgresql://`` URL (TCP, with password) for ``database``."""
        db = quote(database or self.database, safe="")
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{db}"

    def socket_url_for(self, database: str | None = None) -> str:
        """A ``postgresql://`` URL that connects through the unix socket."""
        db = quote(database or self.database, safe="")
        host = quote(str(self.socket_dir), safe="")
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@/{db}"
            f"?host={host}&port={self.port}"
        )

    @property
    def url(self) -> str:
        """URL of the default database over TCP."""
        return self.url_for()

    @property
    def dsn(self) -> str:
        """The libpq key/value conninfo of the default database over TCP."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.database}"
        )

    @property
    def socket_dsn(self) -> str:
        """The libpq key/value conninfo of the default database over the unix socket."""
        return (
            f"host={self.socket_dir} port={self.port} user={self.user} "
            f"password={self.password} dbname={self.database}"
        )

    # -- lifecycle ---------------------------------------------------------------------
    def _base(self) -> Path:
        if self.base_dir is None:
            raise PostgresServerError("server not started")
        return self.base_dir

    def _demote(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        try:
            entry = pwd.getpwnam(self.run_as)
        except KeyError as exc:
            raise PostgresServerError(f"user {self.run_as!r} does not exist (set ASM_PG_USER)") from exc
        setpriv = shutil.which("setpriv")
        if setpriv:
            return [
                setpriv,
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                "--",
            ]
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", self.run_as, "--"]
        raise PostgresServerError("running as root and neither setpriv nor runuser is available")

    def _run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PGTZ": "UTC"}
        env.pop("PGDATA", None)
        return subprocess.run(
            [*self._demote(), *args],
            cwd=self._base(),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self) -> Self:
        """Create the cluster and start the server; raises :class:`PostgresServerError`."""
        if self._started:
            return self
        if self.bin_dir is None:
            raise PostgresServerError("PostgreSQL server binaries not found (set ASM_PG_BIN)")
        self.base_dir = Path(tempfile.mkdtemp(prefix="asm-pg-"))
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        assert self.bin_dir is not None
        base = self._base()
        self.socket_dir.mkdir()
        pwfile = base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.run_as)
            for path in (base, self.socket_dir, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        done = self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C",
                *([] if self.durable else ["--no-sync"]),
            ],
            timeout=120,
        )
        pwfile.unlink()
        if done.returncode != 0:
            raise PostgresServerError(f"initdb failed: {done.stdout}\n{done.stderr}")
        settings = {
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": "200",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            **self.settings,
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        for _attempt in range(5):
            self.port = _free_port()
            opts = " ".join(f"-c {k}={v}" for k, v in {**settings, "port": str(self.port)}.items())
            done = self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self._base() / "server.log"),
                    "-w",
                    "-t",
                    str(int(self.startup_timeout)),
                    "-o",
                    opts,
                ],
                timeout=self.startup_timeout + 10,
            )
            if done.returncode == 0:
                self._started = True
                break
            log = self.log_tail()
            if "could not bind" not in log and "already in use" not in log:
                raise PostgresServerError(f"pg_ctl start failed: {done.stdout}\n{done.stderr}\n{log}")
        else:
            raise PostgresServerError("could not find a free port for PostgreSQL")
        if self.database != "postgres":
            self.create_database(self.database)

    def log_tail(self, size: int = 4000) -> str:
        """The end of the server log (for diagnostics)."""
        try:
            return (self._base() / "server.log").read_text(errors="replace")[-size:]
        except (OSError, PostgresServerError):
            return ""

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, ValueError, IndexError, PostgresServerError):
            return None

    def stop(self) -> None:
        """Stop the server (fast shutdown, then SIGKILL) and delete its directory; idempotent."""
        if self.base_dir is None:
            return
        try:
            if self._started and self.bin_dir is not None:
                pid = self._postmaster_pid()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._run(
                        [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w"],
                        timeout=30,
                    )
                if pid is not None and self._postmaster_pid() == pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline and _alive(pid):
                        time.sleep(0.05)
        finally:
            self._started = False
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    # -- administration ----------------------------------------------------------------
    def admin_execute(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement in autocommit mode as the superuser; returns its rows (if any)."""
        import psycopg

        with psycopg.connect(self.url_for(database), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description is not None else []

    def create_database(self, name: str, *, template: str = "template0") -> str:
        """Create database ``name`` (from ``template``) and return its URL."""
        self.admin_execute(f'CREATE DATABASE "{_ident(name)}" TEMPLATE "{_ident(template)}"')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, terminating its connections."""
        self.admin_execute(f'DROP DATABASE IF EXISTS "{_ident(name)}" WITH (FORCE)')

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _ident(name: str) -> str:
    if not name or '"' in name or "\x00" in name:
        raise ValueError(f"bad identifier: {name!r}")
    return name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
