"""Run the benchmark suite and print every figure next to its DESIGN §4 target.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.run            # full run (~1-2 minutes)
    .venv/bin/python -m benchmarks.run --quick    # smaller sizes, one repetition

Writes ``benchmarks/results/latest.json``. Optional modules ``benchmarks/bench_postgres.py``
(and others listed in ``EXTRA_MODULES``) are imported when present; each exposes
``async def run(report: dict, events: int) -> None`` that appends rows to ``report["rows"]``
with :func:`add_row`'s keys.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` and ``src`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import anyio

from benchmarks import bench_stores as bs

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
EXTRA_MODULES = ("benchmarks.bench_postgres", "benchmarks.bench_manager", "benchmarks.bench_runtime")


def add_row(
    report: dict[str, Any],
    name: str,
    value: float,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_name: str | None = None,
    ratio: float | None = None,
    target: str | None = None,
    ok: bool | None = None,
) -> None:
    """Append one result row (also the hook used by optional bench modules)."""
    if ratio is None and baseline:
        ratio = value / baseline
    report["rows"].append(
        {
            "name": name,
            "value": value,
            "unit": unit,
            "baseline": baseline,
            "baseline_name": baseline_name,
            "ratio": ratio,
            "target": target,
            "ok": ok,
        }
    )


def _median(values: list[float]) -> float:
    return statistics.median(values)


async def _interleaved(
    reps: int, a: Callable[[], Awaitable[float]], b: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    """Median of ``reps`` alternating runs of two measurements (fair under machine noise)."""
    xs: list[float] = []
    ys: list[float] = []
    for _ in range(reps):
        xs.append(await a())
        ys.append(await b())
    return _median(xs), _median(ys)


async def run_stores(report: dict[str, Any], *, n: int, reps: int, tmp: Path) -> None:
    db = tmp / "bench.db"
    raw_db = tmp / "raw.db"

    async def raw(sync: str, count: int) -> float:
        return await anyio.to_thread.run_sync(bs.raw_sequential, raw_db, count, sync)

    # Memory: many events, so the figure is not dominated by timer noise.
    mem = _median([await bs.memory_sequential(max(n, 20_000)) for _ in range(reps)])
    add_row(report, "memory: sequential append", mem, "ev/s", target=">= 200,000 ev/s", ok=mem >= 200_000)

    raw_normal, store_normal = await _interleaved(
        reps, lambda: raw("NORMAL", n), lambda: bs.sqlite_sequential(db, n, "NORMAL")
    )
    add_row(
        report,
        "sqlite NORMAL: sequential append",
        store_normal,
        "ev/s",
        baseline=raw_normal,
        baseline_name="raw sqlite3 WAL NORMAL, commit/event",
        target=">= 0.8x raw",
        ok=store_normal >= 0.8 * raw_normal,
    )
    n_full = max(200, n // 5)
    raw_full, store_full = await _interleaved(
        reps, lambda: raw("FULL", n_full), lambda: bs.sqlite_sequential(db, n_full, "FULL")
    )
    add_row(
        report,
        "sqlite FULL: sequential append",
        store_full,
        "ev/s",
        baseline=raw_full,
        baseline_name="raw sqlite3 WAL FULL, commit/event",
        target=">= 0.8x raw",
        ok=store_full >= 0.8 * raw_full,
    )

    sessions, per = (100, 50) if n >= 5000 else (50, 20)
    conc = _median([await bs.sqlite_concurrent(db, sessions, per, "NORMAL") for _ in range(reps)])
    add_row(
        report,
        f"sqlite NORMAL: concurrent append ({sessions}x{per})",
        conc,
        "ev/s",
        baseline=raw_normal,
        baseline_name="raw sqlite3 WAL NORMAL, commit/event",
        target=">= 2x raw",
        ok=conc >= 2 * raw_normal,
    )
    conc_full = _median([await bs.sqlite_concurrent(db, sessions, per, "FULL") for _ in range(reps)])
    add_row(
        report,
        f"sqlite FULL: concurrent append ({sessions}x{per})",
        conc_full,
        "ev/s",
        baseline=raw_full,
        baseline_name="raw sqlite3 WAL FULL, commit/event",
        target=">= 2x raw",
        ok=conc_full >= 2 * raw_full,
    )

    raw_read, store_read = await _interleaved(
        reps,
        lambda: anyio.to_thread.run_sync(bs.raw_paged_read, raw_db, n, 100),
        lambda: bs.sqlite_paged_read(db, n, 100),
    )
    add_row(
        report,
        "sqlite: paged read-back (pages of 100)",
        store_read,
        "ev/s",
        baseline=raw_read,
        baseline_name="raw SELECT + json.loads",
        target="(no target)",
    )

    samples = 100 if n < 5000 else 300
    for label, factory in (
        ("memory", bs.InMemorySessionStore),
        ("sqlite", lambda: bs.SQLiteSessionStore(bs._fresh(db))),
    ):
        p50, p99 = await bs.long_poll_latency(factory, samples)
        add_row(report, f"{label}: append -> long-poll p50", p50, "ms", target="(p99 only)")
        add_row(report, f"{label}: append -> long-poll p99", p99, "ms", target="<= 5 ms", ok=p99 <= 5.0)


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:,.0f} {unit}".strip()


def render(report: dict[str, Any]) -> str:
    header = ("benchmark", "result", "baseline", "ratio", "target", "ok")
    lines = [header]
    for row in report["rows"]:
        ok = {True: "PASS", False: "FAIL", None: ""}[row["ok"]]
        lines.append(
            (
                row["name"],
                _fmt(row["value"], row["unit"]),
                _fmt(row["baseline"], row["unit"]),
                _fmt(row["ratio"], "x"),
                row["target"] or "",
                ok,
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for i, line in enumerate(lines):
        out.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


async def main_async(quick: bool, only_stores: bool) -> dict[str, Any]:
    n = 1000 if quick else 5000
    reps = 1 if quick else 5
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "events": n,
        "repetitions": reps,
        "machine": {
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "rows": [],
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="asm-bench-") as tmp:
        await run_stores(report, n=n, reps=reps, tmp=Path(tmp))
    if not only_stores:
        for name in EXTRA_MODULES:
            try:
                module = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    report["skipped"].append({"module": name, "reason": str(exc)})
                continue
            try:
                await module.run(report, n)
            except Exception as exc:  # a missing server etc. must not lose the other rows
                report["skipped"].append({"module": name, "reason": f"{type(exc).__name__}: {exc}"})
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--stores-only", action="store_true", help="skip optional benchmark modules")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results path")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = anyio.run(main_async, args.quick, args.stores_only)
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(render(report))
    for skipped in report["skipped"]:
        print(f"skipped {skipped['module']}: {skipped['reason']}")
    print(f"total {report['elapsed_s']} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(row["ok"] is not False for row in report["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
