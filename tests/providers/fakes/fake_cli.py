#!/usr/bin/env python3
"""A fake coding-agent CLI for provider tests: replays a JSONL transcript to stdout.

Stdlib only; run it as ``[sys.executable, FAKE_CLI, *args]`` or directly (it is executable,
so it can stand in for ``claude``/``codex``/``amp`` via ``cli_path``). It accepts and ignores
any arguments except ``--fake-transcript PATH`` (removed before recording argv).

Behaviour is selected by environment variables (all optional):

=============================  =================================================================
``FAKE_CLI_TRANSCRIPT``        JSONL file whose lines are written to stdout verbatim, in order.
                               Lines starting with ``#!`` are directives (see below).
``FAKE_CLI_RECORD``            Write a JSON record ``{argv, cwd, pid, env}`` to this file at
                               start (``env``: the variables named in ``FAKE_CLI_RECORD_ENV``,
                               comma-separated; a missing variable is recorded as null).
``FAKE_CLI_STDIN_FILE``        Read stdin to EOF first and write it to this file (a child with a
                               closed stdin proceeds at once; an open pipe blocks until closed).
``FAKE_CLI_STDERR``            Text written to stderr at start (e.g. a fake API key to redact).
``FAKE_CLI_DELAY``             Seconds to sleep before each transcript line.
``FAKE_CLI_GARBAGE``           "1": write a non-JSON garbage line before each transcript line.
``FAKE_CLI_NON_UTF8``          "1": write a line of invalid UTF-8 bytes before the transcript.
``FAKE_CLI_LONG_LINE``         N: write a line of N bytes (``x`` characters) before the transcript.
``FAKE_CLI_CRASH_AFTER``       K: after K transcript lines, exit with ``FAKE_CLI_CRASH_CODE``
                               (default 3) without writing the rest.
``FAKE_CLI_HANG``              "1": after the transcript (or after ``FAKE_CLI_HANG_AFTER`` lines),
                               block forever.
``FAKE_CLI_IGNORE_SIGTERM``    "1": ignore SIGTERM (only SIGKILL stops it).
``FAKE_CLI_IGNORE_SIGINT``     "1": ignore SIGINT.
``FAKE_CLI_ON_SIGINT``         A JSON line written to stdout when SIGINT arrives, after which the
                               fake exits with ``FAKE_CLI_SIGINT_CODE`` (default 0); models a
                               CLI that reports an interrupted result.
``FAKE_CLI_SPAWN_CHILD``       "1": spawn a grandchild that sleeps forever (same process group,
                               inherits stdout); its pid is written to ``FAKE_CLI_CHILD_PID_FILE``.
``FAKE_CLI_CHILD_STDOUT``      "devnull": the grandchild does not hold stdout/stderr open.
``FAKE_CLI_PID_FILE``          Write the fake's own pid to this file at start.
``FAKE_CLI_EXIT_CODE``         Exit code after a complete replay (default 0).
=============================  =================================================================

Directives inside a transcript (one per line):

* ``#!sleep SECONDS`` — pause;
* ``#!stderr TEXT`` — write TEXT and a newline to stderr;
* ``#!wait_stdin`` — read one line from stdin (blocks until the test/adapter writes one);
* ``#!echo_stdin`` — read one stdin line and write it back to stdout;
* ``#!exit CODE`` — exit now;
* ``#!hang`` — block forever;
* ``#!raw HEX`` — write the given bytes (hex-encoded, newline not added).

Pid files are written before the first stdout line, so a test that read one line knows the
files exist.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _hang() -> None:
    while True:
        time.sleep(3600)


def _directive(line: str) -> None:
    name, _, arg = line[2:].strip().partition(" ")
    if name == "sleep":
        time.sleep(float(arg))
    elif name == "stderr":
        sys.stderr.write(arg + "\n")
        sys.stderr.flush()
    elif name == "wait_stdin":
        sys.stdin.buffer.readline()
    elif name == "echo_stdin":
        _write(sys.stdin.buffer.readline())
    elif name == "exit":
        sys.stdout.flush()
        os._exit(int(arg or 0))
    elif name == "hang":
        _hang()
    elif name == "raw":
        _write(bytes.fromhex(arg))
    else:
        raise SystemExit(f"fake_cli: unknown directive {line!r}")


def main(argv: list[str]) -> int:
    transcript = _env("FAKE_CLI_TRANSCRIPT")
    if "--fake-transcript" in argv:
        i = argv.index("--fake-transcript")
        transcript = argv[i + 1]
        del argv[i : i + 2]

    if _env("FAKE_CLI_IGNORE_SIGTERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _env("FAKE_CLI_IGNORE_SIGINT") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    on_sigint = _env("FAKE_CLI_ON_SIGINT")
    if on_sigint:

        def _handler(signum: int, frame: object) -> None:
            _write(on_sigint.encode() + b"\n")
            os._exit(int(_env("FAKE_CLI_SIGINT_CODE", "0")))

        signal.signal(signal.SIGINT, _handler)

    if _env("FAKE_CLI_RECORD"):
        names = [n for n in _env("FAKE_CLI_RECORD_ENV").split(",") if n]
        record = {
            "argv": argv[1:],
            "cwd": os.getcwd(),
            "pid": os.getpid(),
            "env": {n: os.environ.get(n) for n in names},
        }
        with open(_env("FAKE_CLI_RECORD"), "w", encoding="utf-8") as fh:
            json.dump(record, fh)
    if _env("FAKE_CLI_PID_FILE"):
        with open(_env("FAKE_CLI_PID_FILE"), "w", encoding="utf-8") as fh:
            fh.write(str(os.getpid()))
    if _env("FAKE_CLI_SPAWN_CHILD") == "1":
        detach = _env("FAKE_CLI_CHILD_STDOUT") == "devnull"
        child = subprocess.Popen(
            [sys.executable, "-c", "import time\nwhile True: time.sleep(3600)"],
            stdout=subprocess.DEVNULL if detach else None,
            stderr=subprocess.DEVNULL if detach else None,
        )
        if _env("FAKE_CLI_CHILD_PID_FILE"):
            with open(_env("FAKE_CLI_CHILD_PID_FILE"), "w", encoding="utf-8") as fh:
                fh.write(str(child.pid))
    if _env("FAKE_CLI_STDIN_FILE"):
        data = sys.stdin.buffer.read()
        with open(_env("FAKE_CLI_STDIN_FILE"), "wb") as fh:
            fh.write(data)
    if _env("FAKE_CLI_STDERR"):
        sys.stderr.write(_env("FAKE_CLI_STDERR") + "\n")
        sys.stderr.flush()

    if _env("FAKE_CLI_NON_UTF8") == "1":
        _write(b"\xff\xfe\xfd not utf-8 \xc3\x28\n")
    if _env("FAKE_CLI_LONG_LINE"):
        _write(b"x" * int(_env("FAKE_CLI_LONG_LINE")) + b"\n")

    lines: list[str] = []
    if transcript:
        with open(transcript, encoding="utf-8") as fh:
            lines = [ln.rstrip("\n") for ln in fh if ln.strip()]

    delay = float(_env("FAKE_CLI_DELAY", "0") or 0)
    crash_after = int(_env("FAKE_CLI_CRASH_AFTER", "-1") or -1)
    hang_after = int(_env("FAKE_CLI_HANG_AFTER", "-1") or -1)
    garbage = _env("FAKE_CLI_GARBAGE") == "1"
    written = 0
    for line in lines:
        if written == crash_after:
            sys.stdout.flush()
            os._exit(int(_env("FAKE_CLI_CRASH_CODE", "3")))
        if written == hang_after:
            _hang()
        if line.startswith("#!"):
            _directive(line)
            continue
        if delay:
            time.sleep(delay)
        if garbage:
            _write(b"garbage: this is not JSON {\n")
        _write(line.encode("utf-8") + b"\n")
        written += 1
    if written == crash_after:
        os._exit(int(_env("FAKE_CLI_CRASH_CODE", "3")))
    if _env("FAKE_CLI_HANG") == "1":
        _hang()
    return int(_env("FAKE_CLI_EXIT_CODE", "0"))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
