"""CodexAdapter driven through the fake CLI replaying recorded transcripts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, Run, Session, TokenUsage
from agent_session_manager.ports import ProviderEvent
from agent_session_manager.providers.codex import CodexAdapter
from tests.providers.fakes import FAKE_CLI, fake_env, pid_gone, wait_gone

FIXTURES = Path(__file__).parent / "fixtures" / "codex"


class Collector:
    """An ``emit`` that records events and can signal when a given type arrives."""

    def __init__(self, session: Session, run: Run) -> None:
        self.session, self.run = session, run
        self.events: list[Event] = []
        self.seen: dict[EventType, anyio.Event] = {}

    def waiter(self, etype: EventType) -> anyio.Event:
        return self.seen.setdefault(etype, anyio.Event())

    async def __call__(self, event: ProviderEvent) -> Event:
        stored = Event(
            type=event.type,
            session_id=self.session.id,
            run_id=self.run.id,
            data=event.data,
            sequence_number=len(self.events) + 1,
        )
        self.events.append(stored)
        self.waiter(event.type).set()
        return stored

    @property
    def types(self) -> list[EventType]:
        return [e.type for e in self.events]


def _session_run(prompt: str = "Say hello", **metadata: Any) -> tuple[Session, Run]:
    session = Session(agent_id="agent", metadata=metadata)
    run = Run(session_id=session.id, input={"messages": [{"role": "user", "content": prompt}]})
    return session, run


def _adapter(tmp_path: Path, fixture: str | None, **env: Any) -> tuple[CodexAdapter, Path]:
    pid_file = tmp_path / "pid"
    fake = fake_env(
        transcript=FIXTURES / fixture if fixture else None,
        pid_file=pid_file,
        record=tmp_path / "record.json",
        stdin_file=tmp_path / "stdin.txt",
        record_env="CODEX_API_KEY,CODEX_HOME",
        **env,
    )
    fake["CODEX_HOME"] = str(tmp_path / "codex-home")
    adapter = CodexAdapter(cli_path=FAKE_CLI, env=fake, model="gpt-test", timeout=20)
    return adapter, pid_file


def _pid(pid_file: Path) -> int:
    return int(pid_file.read_text())


def _record(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "record.json").read_text())


@pytest.mark.anyio
async def test_text_run_returns_content_usage_and_thread_id(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(tmp_path, "real_text.jsonl")
    session, run = _session_run()
    emit = Collector(session, run)
    result = await adapter.execute(run, session, emit)
    assert emit.types[0] == EventType.RUN_STARTED
    assert EventType.MESSAGE_RECEIVED in emit.types
    assert result.output["content"] == "Hello from the mock model."
    assert result.token_usage == TokenUsage(input_tokens=120, output_tokens=9, cache_read_tokens=64)
    assert result.provider_session_id == "01a2008e-87af-7880-bdce-8e413aa8dc91"
    assert result.model == "gpt-test"
    assert result.output["usage_total"]["input_tokens"] == 120
    # the prompt went to stdin and the CLI got `exec --json ... -`
    assert (tmp_path / "stdin.txt").read_text() == "Say hello"
    argv = _record(tmp_path)["argv"]
    assert argv[:2] == ["exec", "--json"]
    assert argv[-1] == "-"
    assert argv[argv.index("-m") : argv.index("-m") + 2] == ["-m", "gpt-test"]
    assert "resume" not in argv
    assert pid_gone(_pid(pid_file))


@pytest.mark.anyio
async def test_tool_run_reports_tool_calls(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, "real_tool.jsonl")
    session, run = _session_run()
    emit = Collector(session, run)
    result = await adapter.execute(run, session, emit)
    completed = [e for e in emit.events if e.type == EventType.TOOL_CALL_COMPLETED]
    assert len(completed) == 1
    assert completed[0].data["tool_output"] == "hi\n"
    assert completed[0].data["tool_name"] == "bash"
    assert result.output["tool_calls"][0]["exit_code"] == 0
    assert result.output["content"] == "The command printed: hi"


@pytest.mark.anyio
async def test_turn_failed_raises_mapped_error_with_stderr_tail(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(
        tmp_path, "real_error_401.jsonl", exit_code=1, stderr="ERROR codex_api: key sk-abcdefghijklmnopqrstuv"
    )
    session, run = _session_run()
    emit = Collector(session, run)
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, emit)
    err = info.value
    assert err.code == ErrorCode.PROVIDER_AUTHENTICATION_FAILED
    assert err.details["exit_code"] == 1
    assert "ERROR codex_api" in err.details["stderr_tail"]
    assert "sk-abcdefghijklmnopqrstuv" not in err.details["stderr_tail"]
    assert err.details["thread_id"] == "01a2008e-9063-73f0-b7e9-a522d4662b45"
    assert pid_gone(_pid(pid_file))


@pytest.mark.anyio
async def test_retry_notices_do_not_fail_the_run(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, "real_retry.jsonl")
    session, run = _session_run()
    emit = Collector(session, run)
    result = await adapter.execute(run, session, emit)
    assert result.output["content"] == "Recovered after a retry."
    assert any(
        e.type == EventType.ERROR_OCCURRED and e.data["error_message"].startswith("Reconnecting")
        for e in emit.events
    )


@pytest.mark.anyio
async def test_garbage_and_non_utf8_lines_are_ignored(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, "codex_exec_json_command.jsonl", garbage=True, non_utf8=True)
    session, run = _session_run()
    result = await adapter.execute(run, session, Collector(session, run))
    assert [c["name"] for c in result.output["tool_calls"]] == ["bash", "file_change"]


@pytest.mark.anyio
async def test_line_over_limit_fails_cleanly(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(tmp_path, "real_text.jsonl", long_line=5000)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run), max_line_bytes=1000)
    assert info.value.code == ErrorCode.PROVIDER_ERROR
    assert "exceeds 1000 bytes" in info.value.message
    assert pid_gone(_pid(pid_file))


@pytest.mark.anyio
async def test_crash_mid_stream_is_a_provider_error(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(tmp_path, "real_tool.jsonl", crash_after=4, crash_code=101)
    session, run = _session_run()
    emit = Collector(session, run)
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, emit)
    assert info.value.code == ErrorCode.PROVIDER_ERROR
    assert info.value.details["exit_code"] == 101
    assert "before the turn completed" in info.value.message
    assert EventType.TOOL_CALL_STARTED in emit.types
    assert pid_gone(_pid(pid_file))


@pytest.mark.anyio
async def test_hang_hits_the_deadline(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(tmp_path, "codex_exec_json_sigint.jsonl", hang=True)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run), timeout=1.0, term_grace=1.0)
    assert info.value.code == ErrorCode.PROVIDER_TIMEOUT
    assert info.value.retryable
    assert pid_gone(_pid(pid_file))


async def _execute_and_cancel(
    adapter: CodexAdapter, session: Session, run: Run, emit: Collector, **opts: Any
) -> AsmError:
    """Run ``execute`` and cancel it once ``run_started`` was emitted; return the error raised."""
    errors: list[AsmError] = []

    async def run_it() -> None:
        try:
            await adapter.execute(run, session, emit, **opts)
        except AsmError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_it)
        await emit.waiter(EventType.RUN_STARTED).wait()
        await adapter.cancel(run.id)
    assert len(errors) == 1
    return errors[0]


@pytest.mark.anyio
async def test_cancel_sends_sigint_and_raises_cancelled(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(
        tmp_path, "codex_exec_json_sigint.jsonl", hang=True, on_sigint='{"type":"x"}', sigint_code=1
    )
    session, run = _session_run()
    emit = Collector(session, run)
    err = await _execute_and_cancel(adapter, session, run, emit)
    assert err.code == ErrorCode.CANCELLED
    assert err.details["exit_code"] == 1  # exited on SIGINT, no escalation needed
    assert pid_gone(_pid(pid_file))
    await adapter.cancel(run.id)  # unknown/finished run: no-op


@pytest.mark.anyio
async def test_cancel_escalates_to_sigkill_when_signals_are_ignored(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(
        tmp_path, "codex_exec_json_sigint.jsonl", hang=True, ignore_sigint=True, ignore_sigterm=True
    )
    session, run = _session_run()
    emit = Collector(session, run)
    err = await _execute_and_cancel(adapter, session, run, emit, interrupt_grace=0.2, term_grace=0.2)
    assert err.code == ErrorCode.CANCELLED
    assert err.details["exit_code"] == -9
    assert pid_gone(_pid(pid_file))


@pytest.mark.anyio
async def test_cancelling_the_caller_leaves_no_process(tmp_path: Path) -> None:
    child_file = tmp_path / "child"
    adapter, pid_file = _adapter(
        tmp_path, "codex_exec_json_sigint.jsonl", hang=True, spawn_child=True, child_pid_file=child_file
    )
    session, run = _session_run()
    emit = Collector(session, run)
    async with anyio.create_task_group() as tg:

        async def run_it() -> None:
            await adapter.execute(run, session, emit)

        tg.start_soon(run_it)
        await emit.waiter(EventType.RUN_STARTED).wait()
        tg.cancel_scope.cancel()
    assert pid_gone(_pid(pid_file))
    assert wait_gone(int(child_file.read_text()), allow_zombie=True)


@pytest.mark.anyio
async def test_resume_uses_the_recorded_thread_and_rollout_baseline(tmp_path: Path) -> None:
    thread = "01a20067-2128-7852-bfcd-25357cd51570"
    adapter, _ = _adapter(tmp_path, "codex_exec_json_resume.jsonl")
    rollout_dir = tmp_path / "codex-home" / "sessions" / "2026" / "11" / "21"
    rollout_dir.mkdir(parents=True)
    token_count = {
        "type": "event_msg",
        "payload": {
            "type": "token_count",
            "info": {
                "total_token_usage": {"input_tokens": 2810, "cached_input_tokens": 2304, "output_tokens": 57}
            },
        },
    }
    (rollout_dir / f"rollout-2026-11-21T00-00-00-{thread}.jsonl").write_text(
        '{"type":"session_meta"}\n' + json.dumps(token_count) + "\n"
    )
    session, run = _session_run("and again")
    session = session.model_copy(
        update={"context": {"transcript": {"messages": [{"role": "user", "content": "old"}]}}}
    )
    emit = Collector(session, run)
    result = await adapter.execute(run, session, emit, resume_session_id=thread)
    argv = _record(tmp_path)["argv"]
    assert argv[-3:] == ["resume", thread, "-"]
    # the native thread holds the history: only this run's prompt is sent
    assert (tmp_path / "stdin.txt").read_text() == "and again"
    assert result.token_usage == TokenUsage(input_tokens=2810, output_tokens=57, cache_read_tokens=2304)
    assert emit.events[0].data["resumed"] is True


@pytest.mark.anyio
async def test_resume_baseline_falls_back_to_session_metadata(tmp_path: Path) -> None:
    thread = "01a20067-2128-7852-bfcd-25357cd51570"
    adapter, _ = _adapter(tmp_path, "codex_exec_json_resume.jsonl")
    entry = {"provider_session_id": thread, "usage_total": {"input_tokens": 5000, "output_tokens": 100}}
    session, run = _session_run(provider_sessions={"codex": entry})
    result = await adapter.execute(run, session, Collector(session, run), resume_session_id=thread)
    assert result.token_usage.input_tokens == 620
    assert result.token_usage.output_tokens == 14


@pytest.mark.anyio
async def test_without_resume_id_a_fresh_thread_gets_the_transcript(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, "real_text.jsonl")
    session, run = _session_run("next", provider_sessions={"codex": {"provider_session_id": "t-1"}})
    session = session.model_copy(update={"context": {"transcript": [{"role": "user", "content": "earlier"}]}})
    await adapter.execute(run, session, Collector(session, run))
    assert "resume" not in _record(tmp_path)["argv"]
    stdin = (tmp_path / "stdin.txt").read_text()
    assert "user: earlier" in stdin
    assert stdin.endswith("next")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (None, []),
        ("default", []),
        ("plan", ["--sandbox", "read-only"]),
        ("accept_edits", ["--sandbox", "workspace-write"]),
        ("full_auto", ["--sandbox", "workspace-write", "-c", 'approval_policy="never"']),
        ("dangerously_skip_permissions", ["--dangerously-bypass-approvals-and-sandbox"]),
    ],
)
def test_permission_modes_map_to_current_flags(mode: str | None, expected: list[str]) -> None:
    adapter = CodexAdapter(permission_mode=mode)
    argv = adapter.build_argv(adapter._options({}), binary="codex", thread_id=None)
    flags = [a for a in argv if a.startswith("--sandbox") or a.startswith("--dangerously") or "approval" in a]
    assert flags == [a for a in expected if a != "-c" and a not in ("read-only", "workspace-write")]
    assert "--full-auto" not in argv
    for i in range(len(expected) - 1):
        if expected[i] == "--sandbox":
            assert argv[argv.index("--sandbox") + 1] == expected[i + 1]


def test_system_prompt_config_cwd_and_extra_args(tmp_path: Path) -> None:
    adapter = CodexAdapter(
        system_prompt='Be "brief"\nalways',
        cwd=tmp_path,
        config={"model_reasoning_effort": "low", "sandbox_workspace_write": {"network_access": False}},
        extra_args=["--add-dir", "/data"],
    )
    argv = adapter.build_argv(adapter._options({}), binary="codex", thread_id="abc")
    assert argv[argv.index("-C") + 1] == str(tmp_path)
    assert 'developer_instructions="Be \\"brief\\"\\nalways"' in argv
    assert 'model_reasoning_effort="low"' in argv
    assert 'sandbox_workspace_write={"network_access"=false}' in argv
    assert argv.index("--add-dir") < argv.index("resume")
    assert argv[-3:] == ["resume", "abc", "-"]


def test_invalid_permission_mode_is_a_validation_error() -> None:
    with pytest.raises(AsmError) as info:
        CodexAdapter(permission_mode="yolo")
    assert info.value.code == ErrorCode.VALIDATION_ERROR


@pytest.mark.anyio
async def test_missing_binary_is_provider_unavailable(tmp_path: Path) -> None:
    adapter = CodexAdapter(env={"PATH": str(tmp_path)})
    with pytest.raises(AsmError) as info:
        adapter.validate_config()
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "npm install -g @openai/codex" in info.value.message
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE


def test_env_var_selects_the_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "my-codex"
    shutil.copy(FAKE_CLI, exe)
    os.chmod(exe, 0o755)
    monkeypatch.setenv("ASM_CODEX_CLI", str(exe))
    CodexAdapter().validate_config()
    monkeypatch.setenv("ASM_CODEX_CLI", str(tmp_path / "missing"))
    with pytest.raises(AsmError) as info:
        CodexAdapter().validate_config()
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE


@pytest.mark.anyio
async def test_api_key_and_codex_home_reach_the_cli(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, "real_text.jsonl")
    session, run = _session_run()
    await adapter.execute(run, session, Collector(session, run), api_key="sk-key", codex_home=tmp_path / "h")
    assert _record(tmp_path)["env"] == {"CODEX_API_KEY": "sk-key", "CODEX_HOME": str(tmp_path / "h")}


@pytest.mark.anyio
async def test_empty_input_is_invalid(tmp_path: Path) -> None:
    adapter, _ = _adapter(tmp_path, "real_text.jsonl")
    session = Session(agent_id="a")
    run = Run(session_id=session.id, input={})
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.INVALID_INPUT


def test_capabilities_and_name() -> None:
    adapter = CodexAdapter()
    assert adapter.name == "codex"
    assert {c.name for c in adapter.capabilities()} >= {"streaming", "tool_use", "bash", "interrupt"}
