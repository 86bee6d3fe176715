"""The SessionStore conformance suite: every backend must pass every check.

Usage with any backend::

    async def make_store() -> SessionStore:          # or an async context-manager factory
        return SQLiteSessionStore(tmp_path / f"{uuid4().hex}.db")

    await run_store_conformance(make_store)          # raises AssertionError listing failures

To see each check as its own pytest test::

    @pytest.mark.parametrize("name", CONFORMANCE_CHECKS)
    @pytest.mark.anyio
    async def test_conformance(name):
        await run_store_conformance(make_store, only=[name])

Each check runs against a **fresh, empty** store obtained from ``make_store``, which is
either a callable returning an async context manager that yields the store (it is exited
after the check), or a callable returning an awaitable of the store or the store itself
(the suite closes it after the check). The checks cover the whole contract stated in
:class:`~agent_session_manager.ports.SessionStore`.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeAlias, cast

import anyio

from ..core import AsmError, ErrorCode
from ..ports import SessionStore
from . import _conformance_events, _conformance_live, _conformance_records  # noqa: F401  (register checks)
from ._conformance_base import CHECKS, Check

__all__ = (
    "CONFORMANCE_CHECKS",
    "ConformanceFailure",
    "ConformanceReport",
    "StoreFactory",
    "run_store_conformance",
)

#: The names of every check, in run order.
CONFORMANCE_CHECKS: tuple[str, ...] = tuple(c.name for c in CHECKS)

StoreFactory: TypeAlias = (
    Callable[[], AbstractAsyncContextManager[SessionStore]]
    | Callable[[], Awaitable[SessionStore]]
    | Callable[[], SessionStore]
)


@dataclass(frozen=True, slots=True)
class ConformanceFailure:
    """One failed check: its name, the error and the formatted traceback."""

    name: str
    error: str
    traceback: str


@dataclass(frozen=True, slots=True)
class ConformanceReport:
    """The outcome of a conformance run."""

    names: tuple[str, ...]
    passed: tuple[str, ...]
    failures: tuple[ConformanceFailure, ...]

    @property
    def ok(self) -> bool:
        """True when every check that ran passed."""
        return not self.failures

    def summary(self) -> str:
        """A human-readable list of the failed checks (empty string if none)."""
        if self.ok:
            return ""
        lines = [f"{len(self.failures)} of {len(self.names)} store conformance checks failed:"]
        lines += [f"  - {f.name}: {f.error}" for f in self.failures]
        lines.append("")
        for failure in self.failures:
            lines += [f"--- {failure.name} ---", failure.traceback.rstrip()]
        return "\n".join(lines)


@asynccontextmanager
async def _fresh_store(make_store: StoreFactory) -> AsyncIterator[SessionStore]:
    made: object = make_store()
    if inspect.isawaitable(made):
        made = await made
    if isinstance(made, SessionStore):
        try:
            yield made
        finally:
            await made.close()
        return
    if hasattr(made, "__aenter__") and hasattr(made, "__aexit__"):
        async with cast(AbstractAsyncContextManager[object], made) as store:
            if not isinstance(store, SessionStore):
                raise TypeError(
                    f"make_store's context manager yielded {type(store).__name__}, not a SessionStore"
                )
            yield store
        return
    raise TypeError(f"make_store returned {type(made).__name__}, not a SessionStore or async context manager")


def _select(only: Iterable[str] | None) -> list[Check]:
    if only is None:
        return list(CHECKS)
    wanted = list(dict.fromkeys(only))
    by_name = {c.name: c for c in CHECKS}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise AsmError(
            ErrorCode.INVALID_INPUT,
            f"unknown conformance checks: {', '.join(unknown)}",
            {"unknown": unknown},
        )
    return [by_name[n] for n in wanted]


async def _run_one(make_store: StoreFactory, chk: Check, timeout: float) -> ConformanceFailure | None:
    try:
        with anyio.fail_after(timeout):
            async with _fresh_store(make_store) as store:
                await chk.fn(store)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if isinstance(exc, TimeoutError):
            error = f"check did not finish within {timeout:g}s"
        return ConformanceFailure(chk.name, error, "".join(traceback.format_exception(exc)))
    return None


async def run_store_conformance(
    make_store: StoreFactory,
    *,
    only: Iterable[str] | None = None,
    raise_on_failure: bool = True,
    check_timeout: float = 60.0,
) -> ConformanceReport:
    """Run the conformance checks, each against a fresh store from ``make_store``.

    Args:
        make_store: Factory of fresh, empty stores (see the module docstring).
        only: Names of the checks to run (default: all, in :data:`CONFORMANCE_CHECKS` order).
        raise_on_failure: Raise ``AssertionError`` listing every failed check (default);
            when false, return the report and let the caller decide.
        check_timeout: Seconds after which a check (store setup and teardown included) fails
            instead of hanging.

    Returns:
        The report of the run (every check passed when ``raise_on_failure`` is true).

    Raises:
        AssertionError: One or more checks failed (only with ``raise_on_failure``).
        AsmError: ``invalid_input`` if ``only`` names an unknown check.
    """
    selected = _select(only)
    passed: list[str] = []
    failures: list[ConformanceFailure] = []
    for chk in selected:
        failure = await _run_one(make_store, chk, check_timeout)
        if failure is None:
            passed.append(chk.name)
        else:
            failures.append(failure)
    report = ConformanceReport(tuple(c.name for c in selected), tuple(passed), tuple(failures))
    if raise_on_failure and not report.ok:
        raise AssertionError(report.summary())
    return report
