from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from agent_session_manager import __version__
from agent_session_manager.cli import cli


def test_version_and_help() -> None:
    runner = CliRunner()
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert __version__ in version.output
    helped = runner.invoke(cli, ["--help"])
    assert helped.exit_code == 0
    for command in ("demo", "sessions", "events", "run"):
        assert command in helped.output


def test_console_script_entry_point_runs() -> None:
    exe = Path(sys.executable).with_name("asm")
    assert exe.exists(), "the asm console script is installed with the package"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().endswith(__version__)


def test_demo_then_sessions_then_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    runner = CliRunner()
    demo = runner.invoke(cli, ["demo", "--store", url, "--delay", "0"])
    assert demo.exit_code == 0, demo.output
    out = demo.output
    for expected in ("run_started", "tool_call_started", "message_streamed", "run_completed", "run_failed"):
        assert expected in out
    assert "3 runs" in out
    assert "session_completed" in out

    listed = runner.invoke(cli, ["sessions", "--store", url])
    assert listed.exit_code == 0, listed.output
    assert "demo-agent" in listed.output
    assert "completed" in listed.output

    session_id = next(tok for tok in out.split() if tok.startswith("ses_"))
    events = runner.invoke(cli, ["events", session_id, "--store", url])
    assert events.exit_code == 0, events.output
    assert "session_created" in events.output
    assert "session_completed" in events.output
    after = runner.invoke(cli, ["events", session_id, "--store", url, "--after", "30"])
    assert "session_created" not in after.output


def test_store_from_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    runner = CliRunner(env={"ASM_STORE": url})
    demo = runner.invoke(cli, ["demo", "--delay", "0", "--runs", "1"])
    assert demo.exit_code == 0, demo.output
    assert (tmp_path / "env.db").exists()


def test_unknown_session_is_a_clean_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(cli, ["events", "ses_missing", "--store", url])
    assert result.exit_code == 1
    assert "session_not_found" in result.output


def test_bad_store_url_is_a_clean_error() -> None:
    result = CliRunner().invoke(cli, ["sessions", "--store", "nosuch://x"])
    assert result.exit_code == 1
    assert "validation_error" in result.output


def test_run_with_shell_provider(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'run.db'}"
    result = CliRunner().invoke(cli, ["run", "--provider", "shell", "--store", url, "echo hello-from-shell"])
    assert result.exit_code == 0, result.output
    assert "hello-from-shell" in result.output
    assert "run_completed" in result.output


@pytest.mark.anyio
async def test_events_follow_streams_live_appends(tmp_path: Path) -> None:
    from agent_session_manager import Event, EventType, SessionManager, open_store
    from agent_session_manager.testing import ScriptedAdapter

    url = f"sqlite:///{tmp_path / 'follow.db'}"
    async with await open_store(url) as store:
        manager = SessionManager(store, ScriptedAdapter())
        session = await manager.start_session("follower")
        await manager.activate_session(session.id)

    exe = str(Path(sys.executable).with_name("asm"))
    env = {**os.environ, "COLUMNS": "200"}
    async with await anyio.open_process(
        [exe, "events", session.id, "--follow", "--store", url], env=env
    ) as proc:
        assert proc.stdout is not None
        seen = ""

        async def read_until(marker: str) -> None:
            nonlocal seen
            assert proc.stdout is not None
            while marker not in seen:
                seen += (await proc.stdout.receive()).decode()

        with anyio.fail_after(60):
            await read_until("session_started")
            async with await open_store(url) as store:
                await store.append_event(
                    Event(
                        type=EventType.MESSAGE_RECEIVED,
                        session_id=session.id,
                        data={"role": "assistant", "content": "live-marker-42"},
                    )
                )
            await read_until("live-marker-42")
        proc.terminate()
        await proc.wait()
    assert seen.index("session_created") < seen.index("session_started") < seen.index("live-marker-42")


def test_run_rejects_an_option_the_provider_does_not_take(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opt.db'}"
    result = CliRunner().invoke(cli, ["run", "-p", "shell", "--model", "m1", "--store", url, "echo hi"])
    assert result.exit_code == 1
    assert "validation_error" in result.output
    assert "--model" in result.output


def test_run_missing_provider_binary_is_a_clean_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'amp.db'}"
    env = {"PATH": str(tmp_path), "AMP_API_KEY": "sgamp_test_key_123456", "ASM_AMP_CLI": ""}
    result = CliRunner(env=env).invoke(cli, ["run", "-p", "amp", "--store", url, "hello"])
    assert result.exit_code == 1
    assert "provider_unavailable" in result.output
    assert "npm install" in result.output


def test_run_continues_a_session(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cont.db'}"
    runner = CliRunner()
    first = runner.invoke(cli, ["run", "-p", "shell", "--store", url, "echo first-run"])
    assert first.exit_code == 0, first.output
    session_id = next(tok for tok in first.output.split() if tok.startswith("ses_"))
    second = runner.invoke(
        cli, ["run", "-p", "shell", "--store", url, "--session", session_id, "echo second-run"]
    )
    assert second.exit_code == 0, second.output
    assert "second-run" in second.output
    assert session_id in second.output
    listed = runner.invoke(cli, ["events", session_id, "--store", url])
    assert listed.output.count("run_completed") == 2
    assert listed.output.index("first-run") < listed.output.index("second-run")


@pytest.mark.anyio
async def test_ctrl_c_cancels_the_run_cleanly(tmp_path: Path) -> None:
    import signal

    from agent_session_manager import EventType, RunStatus, open_store

    url = f"sqlite:///{tmp_path / 'sigint.db'}"
    exe = str(Path(sys.executable).with_name("asm"))
    argv = [exe, "run", "-p", "shell", "--store", url, "sleep 30; echo never-printed"]
    env = {**os.environ, "COLUMNS": "200"}
    async with await anyio.open_process(argv, env=env) as proc:
        assert proc.stdout is not None
        seen = ""
        with anyio.fail_after(60):
            while "run_started" not in seen:
                seen += (await proc.stdout.receive()).decode()
            proc.send_signal(signal.SIGINT)
            code = await proc.wait()
    assert code == 130
    session_id = next(tok for tok in seen.split() if tok.startswith("ses_"))
    async with await open_store(url) as store:
        (run,) = await store.list_runs(session_id)
        assert run.status is RunStatus.CANCELLED
        events = await store.get_events(session_id, run_id=run.id)
    assert [e.type for e in events].count(EventType.RUN_CANCELLED) == 1
    assert events[-1].type is EventType.RUN_CANCELLED
    shell_pid = next(e.data["pid"] for e in events if e.type is EventType.RUN_STARTED)
    assert not Path(f"/proc/{shell_pid}").exists()  # the provider's process was stopped and reaped
