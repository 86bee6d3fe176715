"""The ``asm`` command line: demo, sessions, events and provider runs."""

from __future__ import annotations

import inspect
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import __version__
from ..core import AsmError, ErrorCode
from ..ports import ProviderAdapter, SessionStore
from ..rendering import EventRenderer

__all__ = ("main",)

_T = TypeVar("_T")
PROVIDERS = ("claude", "codex", "amp", "shell")


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _run_async(fn: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``fn`` on anyio's asyncio backend; AsmErrors become a clean exit 1."""
    try:
        return anyio.run(fn)
    except AsmError as exc:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error[/] {escape(str(exc))}")
        sys.exit(130 if exc.code is ErrorCode.CANCELLED else 1)
    except KeyboardInterrupt:
        sys.exit(130)


async def _open(store_url: str | None) -> SessionStore:
    from ..stores import default_store_url, open_store

    return await open_store(store_url or default_store_url())


store_option = click.option(
    "--store",
    "store_url",
    envvar="ASM_STORE",
    default=None,
    help="Store URL: memory://, sqlite:///path.db or postgresql://… (default: SQLite in the user data dir).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="asm")
def cli() -> None:
    """Agent session manager: sessions, runs and durable event logs over AI coding agents."""


@cli.command()
@store_option
@click.option("--runs", default=3, show_default=True, type=click.IntRange(1, 20), help="Runs in the session.")
@click.option(
    "--delay",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0, 2),
    help="Seconds per streamed chunk.",
)
def demo(store_url: str | None, runs: int, delay: float) -> None:
    """Run a multi-run session against the scripted provider and show its live event stream."""
    from ._demo import run_demo

    console = _console()

    async def go() -> None:
        store = await _open(store_url)
        async with store:
            await run_demo(store, console, runs=runs, delay=delay)

    _run_async(go)


@cli.command()
@store_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--status", default=None, help="Only sessions in this status.")
@click.option("--agent", "agent_id", default=None, help="Only sessions of this agent id.")
def sessions(store_url: str | None, limit: int, status: str | None, agent_id: str | None) -> None:
    """List sessions, newest first."""
    console = _console()

    async def go() -> None:
        store = await _open(store_url)
        async with store:
            rows = await store.list_sessions(status=status, agent_id=agent_id, limit=limit)
            table = Table("session", "agent", "status", "provider", "runs", "events", "created")
            for session in rows:
                n_runs = len(await store.list_runs(session.id))
                n_events = await store.get_latest_sequence(session.id)
                table.add_row(
                    session.id,
                    session.agent_id,
                    session.status.value,
                    str(session.metadata.get("provider", "")),
                    str(n_runs),
                    str(n_events),
                    session.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                )
            console.print(table)

    _run_async(go)


@cli.command()
@store_option
@click.argument("session_id")
@click.option(
    "--after", default=0, show_default=True, type=click.IntRange(0), help="Start after this sequence."
)
@click.option("--follow", "-f", is_flag=True, help="Keep waiting for new events (Ctrl-C to stop).")
@click.option("--run", "run_id", default=None, help="Only events of this run.")
def events(store_url: str | None, session_id: str, after: int, follow: bool, run_id: str | None) -> None:
    """Print a session's events (optionally following new ones live)."""
    console = _console()

    async def go() -> None:
        store = await _open(store_url)
        async with store:
            await store.get_session(session_id)
            renderer = EventRenderer(console)
            cursor = after
            while True:
                page = await store.get_events(
                    session_id, after=cursor, limit=500, run_id=run_id, wait_timeout=5.0 if follow else 0
                )
                for event in page:
                    renderer(event)
                    cursor = event.sequence_number or cursor
                if not page and not follow:
                    break
            renderer.close_stream()

    _run_async(go)


def _make_adapter(provider: str, options: dict[str, Any]) -> ProviderAdapter:
    """Build the named adapter from the options the user gave (``None`` = not given)."""
    from .. import providers

    factory: Any = {
        "claude": providers.ClaudeAdapter,
        "codex": providers.CodexAdapter,
        "amp": providers.AmpAdapter,
        "shell": providers.ShellAdapter,
    }[provider]
    given = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(factory).parameters
    unsupported = sorted(k for k in given if k not in accepted)
    if unsupported:
        flags = ", ".join("--" + k.replace("_", "-") for k in unsupported)
        raise AsmError(ErrorCode.VALIDATION_ERROR, f"the {provider} provider does not take {flags}")
    adapter: ProviderAdapter = factory(**given)
    return adapter


@cli.command()
@store_option
@click.option("--provider", "-p", type=click.Choice(PROVIDERS), default="claude", show_default=True)
@click.option("--model", "-m", default=None, help="Model name passed to the provider.")
@click.option("--session", "session_id", default=None, help="Continue this session instead of starting one.")
@click.option(
    "--permission-mode",
    default=None,
    help="default | accept_edits | plan | full_auto | dangerously_skip_permissions",
)
@click.option("--cwd", default=None, type=click.Path(file_okay=False), help="Working directory of the agent.")
@click.option(
    "--timeout", default=None, type=click.FloatRange(min=0, min_open=True), help="Run deadline in seconds."
)
@click.argument("prompt")
def run(
    store_url: str | None,
    provider: str,
    model: str | None,
    session_id: str | None,
    permission_mode: str | None,
    cwd: str | None,
    timeout: float | None,
    prompt: str,
) -> None:
    """Run PROMPT through a provider, streaming the run's events live."""
    from ..manager import RunResult, SessionManager

    console = _console()

    async def go() -> None:
        options = {"model": model, "permission_mode": permission_mode, "cwd": cwd}
        adapter = _make_adapter(provider, options)
        adapter.validate_config()
        store = await _open(store_url)
        async with store:
            manager = SessionManager(store, adapter)
            renderer = EventRenderer(console)
            sid = session_id
            if sid is None:
                session = await manager.start_session(f"asm-{provider}")
                session = await manager.activate_session(session.id)
                sid = session.id
            console.print(f"[dim]session {sid}[/]")
            run_ = await manager.start_run(sid, prompt)
            continuation = "auto" if session_id else None
            async with anyio.create_task_group() as tg:

                async def cancel_on_signal() -> None:
                    # Ctrl-C / SIGTERM cancel the run cleanly: it ends `cancelled` in the store
                    # with its run_cancelled event, and the provider's process is stopped.
                    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                        async for _ in signals:
                            renderer.close_stream()
                            console.print("[yellow]cancelling the run…[/]")
                            await manager.cancel_run(run_.id)
                            return

                tg.start_soon(cancel_on_signal)
                try:
                    outcome: RunResult | AsmError = await manager.execute_run(
                        run_.id, on_event=renderer, continuation=continuation, timeout=timeout
                    )
                except AsmError as exc:  # raised below, outside the task group
                    outcome = exc
                finally:
                    renderer.close_stream()
                    tg.cancel_scope.cancel()
            if isinstance(outcome, AsmError):
                raise outcome
            result = outcome
            usage = result.token_usage
            cost = f" cost=${result.cost_usd:.4f}" if result.cost_usd is not None else ""
            console.print(
                f"[bold]done[/] run {result.run_id}: tokens in={usage.input_tokens} "
                f"out={usage.output_tokens}{cost}; continue with --session {sid}"
            )

    _run_async(go)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    cli(prog_name="asm")
