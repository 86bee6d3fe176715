"""ClaudeAdapter against a fake Claude Code CLI replaying transcripts recorded from the real one.

The fake (fixtures/claude/fake_claude.py) speaks the SDK's stream-json control protocol:
it answers ``initialize`` and ``interrupt`` and replays a transcript for the user message.
Every test also checks that the CLI process is gone afterwards (reaped, not a zombie).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager import InMemorySessionStore, SessionManager
from agent_session_manager.core import (
    AsmError,
    CapabilityType,
    ErrorCode,
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    TokenUsage,
)
from agent_session_manager.providers.claude import ClaudeAdapter
from tests.providers.fixtures.claude.support import (
    Collector,
    cancel_when,
    fake_argv,
    fake_env,
    fake_pid,
    fake_stdin,
    make_fake_cli,
    new_run,
    pid_alive,
)

pytestmark = pytest.mark.anyio


def adapter_for(tmp_path: Path, name: str, mode: str = "replay", **kwargs: Any) -> ClaudeAdapter:
    env = {**fake_env(tmp_path, name, mode), **kwargs.pop("env", {})}
    return ClaudeAdapter(cli_path=make_fake_cli(tmp_path), env=env, cwd=tmp_path, **kwargs)


async def run_adapter(adapter: ClaudeAdapter, **opts: Any) -> tuple[Any, Collector]:
    run, session = new_run()
    emit = Collector(session_id=session.id, run_id=run.id)
    result = await adapter.execute(run, session, emit, **opts)
    return result, emit


async def fail_adapter(adapter: ClaudeAdapter, **opts: Any) -> tuple[AsmError, Collector]:
    run, session = new_run()
    emit = Collector(session_id=session.id, run_id=run.id)
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, emit, **opts)
    return info.value, emit


# -- successful turns ----------------------------------------------------------------------------


async def test_text_turn_streams_deltas_and_returns_result(tmp_path: Path) -> None:
    result, emit = await run_adapter(adapter_for(tmp_path, "text", model="claude-sonnet-4-5"))

    types = emit.types()
    assert types[0] is EventType.RUN_STARTED
    started = emit.of(EventType.RUN_STARTED)[0]
    assert started["provider_session_id"] == result.provider_session_id
    assert started["model"] == "claude-sonnet-4-5"
    assert "Bash" in started["tools"]

    streamed = emit.of(EventType.MESSAGE_STREAMED)
    assert [s["delta"] for s in streamed] == ["Hello", " from", " the", " mock."]
    assert [s["content"] for s in streamed][-1] == "Hello from the mock."
    assert streamed[1]["content"] == "Hello from"
    assert emit.of(EventType.MESSAGE_RECEIVED) == [
        {
            "role": "assistant",
            "content": "Hello from the mock.",
            "message_id": streamed[0]["message_id"],
            "model": "claude-sonnet-4-5",
        }
    ]
    usage = emit.of(EventType.TOKEN_USAGE_UPDATED)[0]
    assert (usage["input_tokens"], usage["output_tokens"]) == (12, 24)
    assert (usage["cache_read_tokens"], usage["cache_creation_tokens"]) == (100, 7)
    assert types.index(EventType.TOKEN_USAGE_UPDATED) == len(types) - 1

    assert result.output["content"] == "Hello from the mock."
    assert result.output["stop_reason"] == "end_turn"
    assert result.output["tool_calls"] == []
    assert result.token_usage.input_tokens == 12
    assert result.token_usage.output_tokens == 24
    assert result.token_usage.cache_read_tokens == 100
    assert result.cost_usd is not None
    assert result.cost_usd > 0
    assert result.turn_count == 1
    assert result.model == "claude-sonnet-4-5"
    assert not pid_alive(fake_pid(tmp_path))


async def test_prompt_and_flags_reach_the_cli(tmp_path: Path) -> None:
    adapter = adapter_for(
        tmp_path,
        "text",
        model="claude-opus-4",
        permission_mode="accept_edits",
        max_turns=3,
        allowed_tools=["Bash", "Read"],
        disallowed_tools=["WebFetch"],
        extra_args={"add-dir": "/tmp"},
    )
    run, session = new_run("What is 2+2?")
    await adapter.execute(run, session, Collector())
    argv = fake_argv(tmp_path)
    joined = " ".join(argv)
    assert "--include-partial-messages" in argv
    assert "--model claude-opus-4" in joined
    assert "--permission-mode acceptEdits" in joined
    assert "--max-turns 3" in joined
    assert "--allowedTools Bash,Read" in joined
    assert "--disallowedTools WebFetch" in joined
    assert "--add-dir /tmp" in joined
    # No system_prompt: Claude Code keeps its own (no empty --system-prompt override).
    assert "--system-prompt" not in argv
    assert not any(a.startswith("--resume") for a in argv)
    users = [m for m in fake_stdin(tmp_path) if m.get("type") == "user"]
    assert users[0]["message"]["content"] == "What is 2+2?"
    assert fake_stdin(tmp_path)[0]["request"]["subtype"] == "initialize"


@pytest.mark.parametrize(
    ("mode", "flag"),
    [
        ("default", "default"),
        ("plan", "plan"),
        ("full_auto", "bypassPermissions"),
        ("dangerously_skip_permissions", "bypassPermissions"),
    ],
)
async def test_permission_modes_map_to_sdk_modes(tmp_path: Path, mode: str, flag: str) -> None:
    await run_adapter(adapter_for(tmp_path, "text", permission_mode=mode))
    argv = fake_argv(tmp_path)
    assert argv[argv.index("--permission-mode") + 1] == flag


async def test_per_run_options_override_and_system_prompt(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "text", model="claude-a")
    await run_adapter(adapter, model="claude-b", system_prompt="Be terse.", unrelated_option=1)
    argv = fake_argv(tmp_path)
    assert argv[argv.index("--model") + 1] == "claude-b"
    assert argv[argv.index("--system-prompt") + 1] == "Be terse."


async def test_cli_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASM_CLAUDE_CLI", str(make_fake_cli(tmp_path)))
    adapter = ClaudeAdapter(env=fake_env(tmp_path, "text"))
    adapter.validate_config()
    result, _ = await run_adapter(adapter)
    assert result.output["content"] == "Hello from the mock."


async def test_tool_round_trip(tmp_path: Path) -> None:
    result, emit = await run_adapter(adapter_for(tmp_path, "tool_use"))
    started = emit.of(EventType.TOOL_CALL_STARTED)
    completed = emit.of(EventType.TOOL_CALL_COMPLETED)
    assert len(started) == 1
    assert started[0]["tool_name"] == "Bash"
    assert started[0]["tool_input"]["command"] == "echo hi"
    assert completed == [
        {
            "tool_call_id": started[0]["tool_call_id"],
            "tool_name": "Bash",
            "tool_input": started[0]["tool_input"],
            "tool_output": "hi",
        }
    ]
    types = emit.types()
    assert types.index(EventType.TOOL_CALL_STARTED) < types.index(EventType.TOOL_CALL_COMPLETED)
    received = [m["content"] for m in emit.of(EventType.MESSAGE_RECEIVED)]
    assert received == ["Running it.", "The command printed hi."]
    assert result.output["content"] == "The command printed hi."
    assert result.output["tool_calls"] == [
        {
            "id": started[0]["tool_call_id"],
            "name": "Bash",
            "input": started[0]["tool_input"],
            "output": "hi",
            "is_error": False,
        }
    ]
    assert result.turn_count == 2
    assert not pid_alive(fake_pid(tmp_path))


async def test_failed_tool_emits_tool_call_failed(tmp_path: Path) -> None:
    result, emit = await run_adapter(adapter_for(tmp_path, "tool_error"))
    failed = emit.of(EventType.TOOL_CALL_FAILED)
    assert len(failed) == 1
    assert failed[0]["is_error"] is True
    assert failed[0]["tool_output"] == "Exit code 1"
    assert emit.of(EventType.TOOL_CALL_COMPLETED) == []
    assert result.output["tool_calls"][0]["is_error"] is True
    assert result.output["content"] == "It failed."


async def test_reference_fixture_with_multiple_assistant_blocks(tmp_path: Path) -> None:
    result, emit = await run_adapter(adapter_for(tmp_path, "claude_stream_json_tool_use.jsonl"))
    assert emit.of(EventType.TOOL_CALL_COMPLETED)[0]["tool_output"] == "notes.txt"
    assert result.output["content"] == "The directory contains `notes.txt`."
    assert result.token_usage.input_tokens == 24
    assert result.token_usage.cache_read_tokens == 9620


async def test_non_json_noise_on_stdout_is_ignored(tmp_path: Path) -> None:
    result, emit = await run_adapter(adapter_for(tmp_path, "text", mode="noise"))
    assert result.output["content"] == "Hello from the mock."
    assert len(emit.of(EventType.MESSAGE_STREAMED)) == 4


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code", "retryable"),
    [
        ("api_error_401", ErrorCode.PROVIDER_AUTHENTICATION_FAILED, False),
        ("api_error_429", ErrorCode.PROVIDER_RATE_LIMITED, True),
        ("api_error_529", ErrorCode.PROVIDER_UNAVAILABLE, True),
    ],
)
async def test_api_errors_reported_as_success_subtype_are_failures(
    tmp_path: Path, name: str, code: ErrorCode, retryable: bool
) -> None:
    error, emit = await fail_adapter(adapter_for(tmp_path, name))
    assert error.code is code
    assert error.retryable is retryable
    assert error.details["subtype"] == "success"  # the CLI's quirk: judged by is_error
    assert error.details["api_error_status"] == int(name.rsplit("_", 1)[1])
    assert error.details["terminal_reason"] == "api_error"
    assert error.message
    # The CLI's synthetic error message is not reported as an assistant answer.
    assert emit.of(EventType.MESSAGE_RECEIVED) == []
    assert emit.types()[0] is EventType.RUN_STARTED
    assert not pid_alive(fake_pid(tmp_path))


async def test_reference_api_error_fixture_prompt_too_long(tmp_path: Path) -> None:
    error, _ = await fail_adapter(adapter_for(tmp_path, "claude_stream_json_api_error.jsonl"))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert error.details["reason"] == "prompt_too_long"
    assert "Prompt is too long" in error.message


async def test_max_turns_is_a_provider_error_with_reason(tmp_path: Path) -> None:
    error, emit = await fail_adapter(adapter_for(tmp_path, "max_turns", max_turns=1))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert error.details["reason"] == "max_turns"
    assert error.details["subtype"] == "error_max_turns"
    assert "maximum number of turns" in error.message
    # Usage of the aborted work is still reported before the failure.
    assert emit.of(EventType.TOKEN_USAGE_UPDATED)[0]["output_tokens"] > 0


async def test_corrupt_json_line_fails_cleanly(tmp_path: Path) -> None:
    error, _ = await fail_adapter(adapter_for(tmp_path, "text", mode="corrupt"))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert error.details["reason"] == "malformed_output"
    assert not pid_alive(fake_pid(tmp_path))


async def test_crash_mid_stream_reports_exit_code_and_redacted_stderr(tmp_path: Path) -> None:
    error, emit = await fail_adapter(adapter_for(tmp_path, "text", mode="crash"))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert error.details["exit_code"] == 3
    assert error.details["reason"] == "process_exited"
    assert EventType.RUN_STARTED in emit.types()
    text = f"{error.message} {error.details}"
    assert "sk-ant-api03-abcdefghijklmnop" not in text
    assert not pid_alive(fake_pid(tmp_path))


async def test_cli_that_dies_at_start_is_unavailable(tmp_path: Path) -> None:
    error, emit = await fail_adapter(adapter_for(tmp_path, "text", mode="exit_on_start"))
    assert error.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert emit.events == []
    assert "sk-ant-api03-abcdefghijklmnop" not in f"{error.message} {error.details}"


async def test_missing_cli_names_the_install_command(tmp_path: Path) -> None:
    adapter = ClaudeAdapter(cli_path=tmp_path / "no-such-claude")
    with pytest.raises(AsmError) as info:
        adapter.validate_config()
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    error, _ = await fail_adapter(adapter)
    assert error.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert "pip install claude-agent-sdk" in error.message


async def test_hang_hits_the_hard_deadline_and_kills_the_cli(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "text", mode="hang", timeout=1.0, interrupt_grace=0.3)
    error, emit = await fail_adapter(adapter)
    assert error.code is ErrorCode.PROVIDER_TIMEOUT
    assert error.retryable
    assert emit.types() == [EventType.RUN_STARTED]
    assert not pid_alive(fake_pid(tmp_path))


async def test_hang_during_handshake_hits_the_deadline(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "text", mode="hang_on_init", timeout=0.5, interrupt_grace=0.3)
    error, _ = await fail_adapter(adapter)
    assert error.code is ErrorCode.PROVIDER_TIMEOUT
    assert not pid_alive(fake_pid(tmp_path))


# -- cancellation -------------------------------------------------------------------------------


async def test_cancel_interrupts_the_turn(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "interrupt")
    run, session = new_run()
    emit = Collector(session_id=session.id, run_id=run.id)
    outcome = await cancel_when(
        lambda: adapter.execute(run, session, emit), emit.first_delta, lambda: adapter.cancel(run.id)
    )

    assert [e.code for e in outcome] == [ErrorCode.CANCELLED]
    interrupts = [m for m in fake_stdin(tmp_path) if m.get("request", {}).get("subtype") == "interrupt"]
    assert len(interrupts) == 1
    assert not pid_alive(fake_pid(tmp_path))
    await adapter.cancel(run.id)  # finished: a no-op


async def test_cancel_of_a_hung_run_escalates(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "text", mode="hang", interrupt_grace=0.3)
    run, session = new_run()
    emit = Collector(session_id=session.id, run_id=run.id)
    started = anyio.Event()

    async def on_event(event: Any) -> Any:
        stored = await emit(event)
        started.set()
        return stored

    outcome = await cancel_when(
        lambda: adapter.execute(run, session, on_event), started, lambda: adapter.cancel(run.id)
    )

    assert [e.code for e in outcome] == [ErrorCode.CANCELLED]
    assert not pid_alive(fake_pid(tmp_path))


async def test_cancelling_the_caller_stops_the_cli(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "interrupt")
    run, session = new_run()
    emit = Collector(session_id=session.id, run_id=run.id)
    finished_normally = False

    async def execute(scope: anyio.CancelScope) -> None:
        nonlocal finished_normally
        with scope:
            await adapter.execute(run, session, emit)
            finished_normally = True

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(execute, scope)
        await emit.first_delta.wait()
        scope.cancel()

    assert not finished_normally
    assert scope.cancelled_caught
    # The adapter interrupted the turn before tearing the process down.
    assert any(m.get("request", {}).get("subtype") == "interrupt" for m in fake_stdin(tmp_path))
    assert not pid_alive(fake_pid(tmp_path))


async def test_cancel_unknown_run_is_a_noop() -> None:
    await ClaudeAdapter().cancel("run_unknown")


# -- continuation -------------------------------------------------------------------------------


async def test_native_resume_passes_resume_and_only_new_messages(tmp_path: Path) -> None:
    session = Session(
        agent_id="a",
        metadata={"provider_sessions": {"claude": {"provider_session_id": "abc-123"}}},
        context={"transcript": {"messages": [{"role": "user", "content": "earlier"}]}},
    )
    run = Run(session_id=session.id, input={"prompt": "next"})
    await adapter_for(tmp_path, "text").execute(run, session, Collector(), continuation="native")
    assert "--resume=abc-123" in fake_argv(tmp_path)
    users = [m for m in fake_stdin(tmp_path) if m.get("type") == "user"]
    assert users[0]["message"]["content"] == "next"


async def test_resume_session_id_option(tmp_path: Path) -> None:
    await run_adapter(adapter_for(tmp_path, "text"), resume_session_id="sess-9")
    assert "--resume=sess-9" in fake_argv(tmp_path)


async def test_native_continuation_without_recorded_id_is_invalid(tmp_path: Path) -> None:
    error, _ = await fail_adapter(adapter_for(tmp_path, "text"), continuation="native")
    assert error.code is ErrorCode.INVALID_OPERATION


async def test_transcript_replay_goes_into_the_prompt(tmp_path: Path) -> None:
    session = Session(
        agent_id="a",
        context={
            "transcript": {
                "messages": [
                    {"role": "user", "content": "My name is Ada."},
                    {"role": "assistant", "content": "Hello Ada."},
                ]
            }
        },
    )
    run = Run(session_id=session.id, input={"prompt": "What is my name?"})
    await adapter_for(tmp_path, "text").execute(run, session, Collector())
    prompt = next(m for m in fake_stdin(tmp_path) if m.get("type") == "user")["message"]["content"]
    assert "user: My name is Ada." in prompt
    assert "assistant: Hello Ada." in prompt
    assert prompt.endswith("What is my name?")


# -- configuration ------------------------------------------------------------------------------


def test_invalid_options_are_validation_errors() -> None:
    with pytest.raises(AsmError) as info:
        ClaudeAdapter(permission_mode="yolo")
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    with pytest.raises(AsmError) as info:
        ClaudeAdapter(max_turns=0)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    with pytest.raises(AsmError) as info:
        ClaudeAdapter(timeout=-1)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    with pytest.raises(AsmError) as info:
        ClaudeAdapter(sdk_opts={"no_such_field": 1}).validate_config()
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert "no_such_field" in info.value.message


async def test_sdk_opts_are_applied(tmp_path: Path) -> None:
    seen: list[str] = []
    adapter = adapter_for(
        tmp_path, "text", sdk_opts={"fallback_model": "claude-haiku-4-5", "stderr": seen.append}
    )
    await run_adapter(adapter)
    argv = fake_argv(tmp_path)
    assert argv[argv.index("--fallback-model") + 1] == "claude-haiku-4-5"


async def test_invalid_input_is_rejected_before_spawning(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "text")
    session = Session(agent_id="a")
    run = Run(session_id=session.id, input={})
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector())
    assert info.value.code is ErrorCode.INVALID_INPUT
    assert not (tmp_path / "record.jsonl").exists()


def test_capabilities_and_name() -> None:
    adapter = ClaudeAdapter()
    assert adapter.name == "claude"
    types = {c.type for c in adapter.capabilities()}
    assert {
        CapabilityType.SAMPLING,
        CapabilityType.TOOL,
        CapabilityType.FILE_ACCESS,
        CapabilityType.CODE_EXECUTION,
    } <= types
    names = {c.name for c in adapter.capabilities()}
    assert {"streaming", "tool_use", "interrupt"} <= names
    adapter.validate_config()  # the bundled CLI ships with the installed SDK


# -- through the SessionManager -------------------------------------------------------------------

TERMINAL = {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED, EventType.RUN_TIMEOUT}


async def test_session_manager_run_once(tmp_path: Path) -> None:
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, adapter_for(tmp_path, "text"))
        result = await manager.run_once("hi")
        events = await manager.get_session_events(result.session_id, run_id=result.run_id)
        types = [e.type for e in events]
        assert types[0] is EventType.RUN_STARTED
        assert [t for t in types if t in TERMINAL] == [EventType.RUN_COMPLETED]
        assert types[-1] is EventType.RUN_COMPLETED
        run = await manager.get_run(result.run_id)
        assert run.token_usage == TokenUsage(
            input_tokens=12, output_tokens=24, cache_read_tokens=100, cache_creation_tokens=7
        )
        assert run.turn_count == 1
        assert run.cost_usd == result.cost_usd
        assert events[0].data["provider_session_id"] == result.provider_session_id


async def test_session_manager_cancel_run(tmp_path: Path) -> None:
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, adapter_for(tmp_path, "interrupt"))
        session = await manager.start_session("agent")
        await manager.activate_session(session.id)
        run = await manager.start_run(session.id, {"prompt": "count"})
        streaming = anyio.Event()

        def on_event(event: Event) -> None:
            if event.type is EventType.MESSAGE_STREAMED:
                streaming.set()

        outcome = await cancel_when(
            lambda: manager.execute_run(run.id, on_event=on_event),
            streaming,
            lambda: manager.cancel_run(run.id),
        )

        assert [e.code for e in outcome] == [ErrorCode.CANCELLED]
        events = await manager.get_session_events(session.id, run_id=run.id)
        assert [e.type for e in events if e.type in TERMINAL] == [EventType.RUN_CANCELLED]
        assert events[-1].type is EventType.RUN_CANCELLED
        assert (await manager.get_run(run.id)).status is RunStatus.CANCELLED
        assert not pid_alive(fake_pid(tmp_path))


async def test_cli_exiting_without_result_is_a_provider_error(tmp_path: Path) -> None:
    lines = (Path(__file__).parent / "fixtures" / "claude" / "text.jsonl").read_text().splitlines()
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(line for line in lines if '"type": "result"' not in line) + "\n")
    error, emit = await fail_adapter(adapter_for(tmp_path, str(truncated), mode="eof"))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert "without a result" in error.message
    assert EventType.MESSAGE_RECEIVED in emit.types()
    assert not pid_alive(fake_pid(tmp_path))


async def test_same_run_cannot_execute_twice_at_once(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "interrupt")
    run, session = new_run()
    emit = Collector(session_id=session.id, run_id=run.id)
    outcome: list[AsmError] = []

    async def execute() -> None:
        try:
            await adapter.execute(run, session, emit)
        except AsmError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        await emit.first_delta.wait()
        with pytest.raises(AsmError) as info:
            await adapter.execute(run, session, Collector())
        assert info.value.code is ErrorCode.INVALID_OPERATION
        await adapter.cancel(run.id)
    assert [e.code for e in outcome] == [ErrorCode.CANCELLED]


async def test_user_stderr_callback_is_chained(tmp_path: Path) -> None:
    seen: list[str] = []
    adapter = adapter_for(tmp_path, "text", mode="crash", sdk_opts={"stderr": seen.append})
    error, _ = await fail_adapter(adapter)
    assert error.details["exit_code"] == 3
    assert any("fake claude crashed" in line for line in seen)
    assert "fake claude crashed" in error.details["stderr_tail"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interrupt_grace": None},
        {"env": ["A=1"]},
        {"allowed_tools": "Bash"},
        {"max_turns": "3"},
    ],
)
def test_more_invalid_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(AsmError) as info:
        ClaudeAdapter(**kwargs)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


async def test_invalid_per_run_override_is_rejected(tmp_path: Path) -> None:
    error, _ = await fail_adapter(adapter_for(tmp_path, "text"), permission_mode="bogus")
    assert error.code is ErrorCode.VALIDATION_ERROR
    assert not (tmp_path / "record.jsonl").exists()


async def test_non_utf8_output_fails_cleanly(tmp_path: Path) -> None:
    error, _ = await fail_adapter(adapter_for(tmp_path, "text", mode="binary"))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert not pid_alive(fake_pid(tmp_path))


async def test_oversized_line_fails_cleanly(tmp_path: Path) -> None:
    error, _ = await fail_adapter(adapter_for(tmp_path, "text", sdk_opts={"max_buffer_size": 2000}))
    assert error.code is ErrorCode.PROVIDER_ERROR
    assert error.details["reason"] == "malformed_output"
    assert not pid_alive(fake_pid(tmp_path))


async def test_emit_failure_propagates_unchanged_and_stops_the_cli(tmp_path: Path) -> None:
    adapter = adapter_for(tmp_path, "interrupt", interrupt_grace=2)
    run, session = new_run()
    boom = RuntimeError("on_event exploded")

    async def emit(event: Any) -> Any:
        if event.type is EventType.MESSAGE_STREAMED:
            raise boom
        return await Collector()(event)

    with pytest.raises(RuntimeError) as info:
        await adapter.execute(run, session, emit)
    assert info.value is boom
    assert any(m.get("request", {}).get("subtype") == "interrupt" for m in fake_stdin(tmp_path))
    assert not pid_alive(fake_pid(tmp_path))
