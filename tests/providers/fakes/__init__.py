"""Fake CLI executables and process helpers shared by all provider tests.

* ``FAKE_CLI`` — path of ``fake_cli.py`` (executable; stdlib only). See its docstring for the
  ``FAKE_CLI_*`` environment variables and ``#!`` transcript directives.
* ``fake_cli_argv(*args)`` — ``[sys.executable, FAKE_CLI, *args]``.
* ``fake_env(...)`` — builds the ``FAKE_CLI_*`` env overrides from keyword arguments.
* ``write_transcript(path, lines)`` — writes dicts/strings as a JSONL transcript.
* ``pid_gone(pid)`` / ``wait_gone(pid)`` — "no child left" checks (reaped: /proc/<pid> absent,
  or for a grandchild re-parented to init, at least dead).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FAKE_CLI = str(Path(__file__).with_name("fake_cli.py"))


def fake_cli_argv(*args: str) -> list[str]:
    return [sys.executable, FAKE_CLI, *args]


def fake_env(**options: Any) -> dict[str, str]:
    """``fake_env(transcript=p, delay=0.1)`` -> ``{"FAKE_CLI_TRANSCRIPT": p, "FAKE_CLI_DELAY": "0.1"}``."""
    env: dict[str, str] = {}
    for key, value in options.items():
        if value is None:
            continue
        if value is True:
            value = "1"
        env[f"FAKE_CLI_{key.upper()}"] = str(value)
    return env


def write_transcript(path: Path, lines: Iterable[dict[str, Any] | str]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for line in lines:
            fh.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def pid_gone(pid: int, *, allow_zombie: bool = False) -> bool:
    """True when ``pid`` no longer exists (or, with ``allow_zombie``, is a dead zombie)."""
    state = _state(pid)
    if state is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return allow_zombie and state in ("Z", "X")


def wait_gone(pid: int, *, timeout: float = 5.0, allow_zombie: bool = False) -> bool:
    """Poll until ``pid`` is gone (for grandchildren reaped asynchronously by init)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pid_gone(pid, allow_zombie=allow_zombie):
            return True
        time.sleep(0.01)
    return pid_gone(pid, allow_zombie=allow_zombie)
