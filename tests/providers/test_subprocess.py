"""ProcessTransport: framing, tolerant JSON, stderr tail, deadline, escalation, no orphans."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode
from agent_session_manager.providers._subprocess import ProcessTransport, resolve_binary
from tests.providers.fakes import FAKE_CLI, fake_cli_argv, fake_env, pid_gone, wait_gone, write_transcript

pytestmark = pytest.mark.anyio

LINES: list[dict[str, Any]] = [
    {"type": "system", "subtype": "init", "session_id": "s-1"},
    {"type": "assistant", "text": "héllo"},
    {"type": "result", "is_error": False},
]


@pytest.fixture
def transcript(tmp_path: Path) -> Path:
    return write_transcript(tmp_path / "t.jsonl", LINES)


async def collect(proc: ProcessTransport) -> list[dict[str, Any]]:
    return [obj async for obj in proc]


def read_pid(path: Path) -> int:
    return int(path.read_text())


async def test_replays_json_objects_and_exit_code(transcript: Path) -> None:
    async with ProcessTransport(fake_cli_argv(), env=fake_env(transcript=transcript), timeout=30) as proc:
        objs = await collect(proc)
        assert await proc.finish() == 0
    assert objs == LINES
    assert proc.noise_lines == 0
    assert proc.pid is not None
    assert pid_gone(proc.pid)


async def test_garbage_and_non_utf8_lines_are_skipped_and_counted(
    transcript: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent_session_manager.providers.subprocess")
    env = fake_env(transcript=transcript, garbage=True, non_utf8=True)
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30) as proc:
        objs = await collect(proc)
        await proc.finish()
    assert objs == LINES
    # one garbage line per transcript line + the non-UTF-8 line
    assert proc.noise_lines == len(LINES) + 1
    assert any("not JSON" in r.getMessage() for r in caplog.records)


async def test_json_that_is_not_an_object_is_noise(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", ["[1, 2]", "42", '"s"', json.dumps({"ok": 1})])
    async with ProcessTransport(fake_cli_argv(), env=fake_env(transcript=path), timeout=30) as proc:
        assert await collect(proc) == [{"ok": 1}]
    assert proc.noise_lines == 3


async def test_non_utf8_bytes_are_replaced_in_text_lines(tmp_path: Path) -> None:
    async with ProcessTransport(fake_cli_argv(), env=fake_env(non_utf8=True), timeout=30) as proc:
        lines = [line async for line in proc.lines()]
    assert len(lines) == 1
    assert "\ufffd" in lines[0]
    assert "not utf-8" in lines[0]


async def test_line_over_limit_raises_provider_error_and_kills(transcript: Path) -> None:
    env = fake_env(transcript=transcript, long_line=5000, hang=True)
    with pytest.raises(AsmError) as info:
        async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, max_line_bytes=1000) as proc:
            await collect(proc)
    assert info.value.code is ErrorCode.PROVIDER_ERROR
    assert "exceeds 1000 bytes" in info.value.message
    assert info.value.details["max_line_bytes"] == 1000
    assert proc.pid is not None
    assert pid_gone(proc.pid)


async def test_line_over_limit_skipped_with_skip_policy(transcript: Path) -> None:
    env = fake_env(transcript=transcript, long_line=300_000)
    async with ProcessTransport(
        fake_cli_argv(), env=env, timeout=30, max_line_bytes=1000, on_long_line="skip"
    ) as proc:
        objs = await collect(proc)
    assert objs == LINES
    assert proc.long_lines == 1


async def test_line_over_limit_split_with_split_policy() -> None:
    env = fake_env(long_line=2500)
    async with ProcessTransport(
        fake_cli_argv(), env=env, timeout=30, max_line_bytes=1000, on_long_line="split"
    ) as proc:
        lines = [line async for line in proc.lines()]
    assert [len(line) for line in lines] == [1000, 1000, 500]


async def test_crash_mid_stream_reports_exit_code_and_redacted_stderr(transcript: Path) -> None:
    secret = "sk-ant-api03-abcdefghijklmnop"
    env = fake_env(transcript=transcript, crash_after=1, crash_code=7, stderr=f"fatal: key {secret} rejected")
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, name="fake") as proc:
        objs = await collect(proc)
        with pytest.raises(AsmError) as info:
            await proc.finish()
    assert objs == LINES[:1]
    err = info.value
    assert err.code is ErrorCode.PROVIDER_ERROR
    assert "exited with code 7" in err.message
    assert err.details["exit_code"] == 7
    assert "fatal: key" in err.details["stderr_tail"]
    assert secret not in json.dumps(err.to_dict())
    assert "[REDACTED]" in err.details["stderr_tail"]


async def test_stderr_tail_is_bounded() -> None:
    env = fake_env(stderr="A" * 5000 + "END")
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, stderr_tail_bytes=100) as proc:
        await proc.wait()
    assert len(proc.stderr_tail) <= 100
    assert proc.stderr_tail.endswith("END\n")


async def test_hang_hits_deadline_and_leaves_no_child(tmp_path: Path, transcript: Path) -> None:
    child_file = tmp_path / "child.pid"
    env = fake_env(transcript=transcript, hang=True, spawn_child=True, child_pid_file=child_file)
    objs: list[dict[str, Any]] = []

    async def consume() -> ProcessTransport:
        async with ProcessTransport(fake_cli_argv(), env=env, timeout=1.0, term_grace=2) as proc:
            async for obj in proc:
                objs.append(obj)
        return proc  # pragma: no cover - the deadline fires first

    with pytest.raises(AsmError) as info:
        await consume()
    assert info.value.code is ErrorCode.PROVIDER_TIMEOUT
    assert info.value.retryable
    assert objs == LINES
    assert pid_gone(info.value.details["pid"])  # reaped by us: /proc/<pid> absent
    assert wait_gone(read_pid(child_file), allow_zombie=True)  # grandchild dead (init reaps)


async def test_wait_hits_deadline_too(transcript: Path) -> None:
    env = fake_env(transcript=transcript, hang=True)
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=0.5) as proc:
        with pytest.raises(AsmError) as info:
            await proc.wait()
    assert info.value.code is ErrorCode.PROVIDER_TIMEOUT
    assert proc.timed_out
    assert proc.pid is not None
    assert pid_gone(proc.pid)


async def test_ignored_sigterm_escalates_to_sigkill(tmp_path: Path, transcript: Path) -> None:
    child_file = tmp_path / "child.pid"
    env = fake_env(
        transcript=transcript, hang=True, ignore_sigterm=True, spawn_child=True, child_pid_file=child_file
    )
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, term_grace=0.2) as proc:
        async for obj in proc:
            if obj["type"] == "result":
                break
        await proc.terminate()
        assert proc.returncode == -9  # SIGTERM was ignored, SIGKILL ended it
        with pytest.raises(AsmError) as info:
            await proc.finish()
    assert info.value.code is ErrorCode.CANCELLED
    assert proc.pid is not None
    assert pid_gone(proc.pid)
    assert wait_gone(read_pid(child_file), allow_zombie=True)


async def test_terminate_from_other_task_ends_iteration(transcript: Path) -> None:
    env = fake_env(transcript=transcript, hang=True)
    seen: list[dict[str, Any]] = []
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30) as proc:
        async with anyio.create_task_group() as tg:

            async def reader() -> None:
                async for obj in proc:
                    seen.append(obj)
                    if obj["type"] == "result":
                        tg.start_soon(proc.terminate)

            tg.start_soon(reader)
        assert proc.cancel_requested
        assert proc.returncode == -15
    assert seen == LINES


async def test_interrupt_first_gives_the_cli_a_clean_exit(transcript: Path) -> None:
    final = json.dumps({"type": "result", "subtype": "error_during_execution"})
    env = fake_env(transcript=transcript, hang=True, on_sigint=final, sigint_code=0)
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, interrupt_first=True) as proc:
        objs: list[dict[str, Any]] = []
        async for obj in proc:
            objs.append(obj)
            if obj == LINES[-1]:
                await proc.terminate()
        assert proc.returncode == 0
    assert objs[-1] == json.loads(final)


async def test_cancelling_the_caller_kills_the_group(tmp_path: Path, transcript: Path) -> None:
    child_file = tmp_path / "child.pid"
    env = fake_env(transcript=transcript, hang=True, spawn_child=True, child_pid_file=child_file)
    pid = None
    with anyio.CancelScope() as scope:
        async with ProcessTransport(fake_cli_argv(), env=env, timeout=30) as proc:
            pid = proc.pid
            async for obj in proc:
                if obj["type"] == "result":
                    scope.cancel()
    assert scope.cancelled_caught
    assert pid is not None
    assert pid_gone(pid)
    assert wait_gone(read_pid(child_file), allow_zombie=True)


async def test_orphan_holding_stdout_is_killed_after_leader_exits(tmp_path: Path, transcript: Path) -> None:
    child_file = tmp_path / "child.pid"
    # The fake exits normally but its grandchild keeps stdout open; EOF must still arrive.
    env = fake_env(transcript=transcript, spawn_child=True, child_pid_file=child_file)
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, orphan_grace=0.2) as proc:
        objs = await collect(proc)
        assert await proc.finish() == 0
    assert objs == LINES
    assert wait_gone(read_pid(child_file), allow_zombie=True)


async def test_detached_grandchild_is_killed_when_the_transport_closes(
    tmp_path: Path, transcript: Path
) -> None:
    child_file = tmp_path / "child.pid"
    env = fake_env(transcript=transcript, spawn_child=True, child_pid_file=child_file, child_stdout="devnull")
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30, orphan_grace=30) as proc:
        assert await collect(proc) == LINES
        assert await proc.finish() == 0
        child = read_pid(child_file)
    assert wait_gone(child, allow_zombie=True)


async def test_stdin_closed_child_sees_eof(tmp_path: Path, transcript: Path) -> None:
    stdin_file = tmp_path / "stdin.bin"
    env = fake_env(transcript=transcript, stdin_file=stdin_file)
    async with ProcessTransport(fake_cli_argv(), env=env, timeout=30) as proc:
        assert await collect(proc) == LINES
    assert stdin_file.read_bytes() == b""


async def test_stdin_data_is_written_then_closed(tmp_path: Path, transcript: Path) -> None:
    stdin_file = tmp_path / "stdin.bin"
    env = fake_env(transcript=transcript, stdin_file=stdin_file)
    payload = b'{"type":"user"}\n' * 10_000  # larger than a pipe buffer
    async with ProcessTransport(fake_cli_argv(), env=env, stdin=payload, timeout=30) as proc:
        assert await collect(proc) == LINES
    assert stdin_file.read_bytes() == payload


async def test_keep_stdin_open_allows_interactive_protocol(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", [{"n": 1}, "#!echo_stdin", {"n": 2}])
    async with ProcessTransport(
        fake_cli_argv(), env=fake_env(transcript=path), keep_stdin_open=True, timeout=30
    ) as proc:
        it = proc.objects()
        assert await anext(it) == {"n": 1}
        await proc.send(json.dumps({"echo": True}) + "\n")
        assert await anext(it) == {"echo": True}
        await proc.close_stdin()
        assert await anext(it) == {"n": 2}
        await it.aclose()


async def test_send_without_pipe_is_invalid_operation(transcript: Path) -> None:
    async with ProcessTransport(fake_cli_argv(), env=fake_env(transcript=transcript), timeout=30) as proc:
        with pytest.raises(AsmError) as info:
            await proc.send("x")
    assert info.value.code is ErrorCode.INVALID_OPERATION


async def test_env_overrides_merge_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASM_TEST_INHERITED", "parent")
    monkeypatch.setenv("ASM_TEST_REMOVED", "gone?")
    record = tmp_path / "record.json"
    env = fake_env(record=record, record_env="ASM_TEST_INHERITED,ASM_TEST_OVERRIDE,ASM_TEST_REMOVED")
    env_overrides: dict[str, str | None] = {**env, "ASM_TEST_OVERRIDE": "child", "ASM_TEST_REMOVED": None}
    async with ProcessTransport(
        fake_cli_argv("--flag", "value"), env=env_overrides, cwd=tmp_path, timeout=30
    ) as proc:
        await proc.finish()
    data = json.loads(record.read_text())
    assert data["env"] == {
        "ASM_TEST_INHERITED": "parent",
        "ASM_TEST_OVERRIDE": "child",
        "ASM_TEST_REMOVED": None,
    }
    assert data["argv"] == ["--flag", "value"]
    assert Path(data["cwd"]).resolve() == tmp_path.resolve()


async def test_spawn_failure_is_provider_unavailable(tmp_path: Path) -> None:
    with pytest.raises(AsmError) as info:
        async with ProcessTransport([str(tmp_path / "no-such-binary")], timeout=5):
            pass  # pragma: no cover
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE


async def test_not_used_as_context_manager_is_rejected() -> None:
    proc = ProcessTransport(fake_cli_argv())
    with pytest.raises(AsmError) as info:
        await proc.read_line()
    assert info.value.code is ErrorCode.INVALID_OPERATION


def test_constructor_validates_arguments() -> None:
    with pytest.raises(AsmError):
        ProcessTransport([])
    with pytest.raises(AsmError):
        ProcessTransport(["x"], max_line_bytes=0)


# -- resolve_binary ------------------------------------------------------------------------


def test_resolve_explicit_cli_path() -> None:
    assert resolve_binary("claude", cli_path=FAKE_CLI) == FAKE_CLI


def test_resolve_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASM_FAKE_CLI", FAKE_CLI)
    assert resolve_binary("nonexistent-cli-xyz", env_var="ASM_FAKE_CLI") == FAKE_CLI


def test_resolve_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "mycli"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve_binary("mycli") == str(exe)


def test_resolve_missing_names_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ASM_CODEX_CLI", raising=False)
    with pytest.raises(AsmError) as info:
        resolve_binary("codex", env_var="ASM_CODEX_CLI", install_hint="npm install -g @openai/codex")
    err = info.value
    assert err.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert "npm install -g @openai/codex" in err.message
    assert err.details["install_command"] == "npm install -g @openai/codex"
    assert err.details["env_var"] == "ASM_CODEX_CLI"


def test_resolve_bad_explicit_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AsmError) as info:
        resolve_binary("claude", cli_path=tmp_path / "missing", install_hint="pip install claude-agent-sdk")
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert "from cli_path" in info.value.message


def test_fake_cli_is_executable() -> None:
    assert os.access(FAKE_CLI, os.X_OK)
