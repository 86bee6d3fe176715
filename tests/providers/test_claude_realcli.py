"""ClaudeAdapter driving the REAL bundled Claude Code CLI against the loopback mock Anthropic API.

Nothing leaves 127.0.0.1: the CLI gets ANTHROPIC_BASE_URL pointing at the mock, a fake key,
an isolated HOME/CLAUDE_CONFIG_DIR and non-essential traffic disabled. These tests run in CI
(CI=true); elsewhere they are skipped only when the CLI binary is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import claude_agent_sdk
import pytest

from agent_session_manager import EventType, InMemorySessionStore, RunStatus, SessionManager, TokenUsage
from agent_session_manager.core import AsmError, ErrorCode
from agent_session_manager.providers.claude import ClaudeAdapter
from tests.providers.fixtures.claude.support import Collector, cancel_when, child_pids, new_run
from tests.providers.mock_anthropic import (
    MockAnthropicServer,
    Usage,
    error_reply,
    text_reply,
    tool_use_reply,
)

BUNDLED = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.realcli,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not BUNDLED.exists() and not os.environ.get("CI"),
        reason="bundled Claude Code CLI not present (install the claude-agent-sdk platform wheel)",
    ),
]


@pytest.fixture
def mock(monkeypatch: pytest.MonkeyPatch) -> Iterator[MockAnthropicServer]:
    # Credentials from the developer's environment must not reach (or be preferred by) the CLI.
    for var in ("ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDECODE"):
        monkeypatch.delenv(var, raising=False)
    with MockAnthropicServer() as server:
        yield server


def real_adapter(server: MockAnthropicServer, tmp_path: Path, **kwargs: Any) -> ClaudeAdapter:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ClaudeAdapter(
        env=server.cli_env(tmp_path / "home"),
        cwd=work,
        model="claude-sonnet-4-5",
        timeout=30,
        **kwargs,
    )


async def test_streamed_text_answer(mock: MockAnthropicServer, tmp_path: Path) -> None:
    mock.script(text_reply(["Hel", "lo ", "wor", "ld"], usage=Usage(30, 7)))
    before = child_pids()
    run, session = new_run("Say hello")
    emit = Collector(session_id=session.id, run_id=run.id)

    result = await real_adapter(mock, tmp_path).execute(run, session, emit)

    assert emit.types()[0] is EventType.RUN_STARTED
    streamed = emit.of(EventType.MESSAGE_STREAMED)
    assert [s["delta"] for s in streamed] == ["Hel", "lo ", "wor", "ld"]
    assert streamed[-1]["content"] == "Hello world"
    assert [m["content"] for m in emit.of(EventType.MESSAGE_RECEIVED)] == ["Hello world"]
    assert result.output["content"] == "Hello world"
    assert result.token_usage == TokenUsage(input_tokens=30, output_tokens=7)
    assert result.provider_session_id
    assert result.turn_count == 1
    main = mock.main_requests
    assert len(main) == 1
    assert main[0].body["stream"] is True
    assert main[0].body["model"] == "claude-sonnet-4-5"
    assert main[0].last_user_content()[-1]["text"] == "Say hello"
    assert child_pids() <= before


async def test_tool_round_trip_runs_bash(mock: MockAnthropicServer, tmp_path: Path) -> None:
    mock.script(
        tool_use_reply("Bash", {"command": "echo hi", "description": "Print hi"}, preamble="Let me run it."),
        text_reply(["It printed ", "hi."]),
    )
    run, session = new_run("Run echo hi")
    emit = Collector(session_id=session.id, run_id=run.id)

    result = await real_adapter(mock, tmp_path, allowed_tools=["Bash"]).execute(run, session, emit)

    started = emit.of(EventType.TOOL_CALL_STARTED)
    completed = emit.of(EventType.TOOL_CALL_COMPLETED)
    assert [(s["tool_name"], s["tool_input"]["command"]) for s in started] == [("Bash", "echo hi")]
    assert len(completed) == 1
    assert completed[0]["tool_call_id"] == started[0]["tool_call_id"]
    assert completed[0]["tool_output"] == "hi"
    assert result.output["content"] == "It printed hi."
    assert result.output["tool_calls"][0]["output"] == "hi"
    # The CLI really ran the command and sent its output back to the model.
    second = mock.main_requests[1].last_user_content()
    tool_results = [b for b in second if b.get("type") == "tool_result"]
    content = tool_results[0]["content"]
    text = content if isinstance(content, str) else content[0]["text"]
    assert text.startswith("hi")
    assert result.token_usage.input_tokens == 24  # two API calls of 12 input tokens each


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        (429, ErrorCode.PROVIDER_RATE_LIMITED),
        (529, ErrorCode.PROVIDER_UNAVAILABLE),
    ],
)
async def test_api_error_becomes_typed_error(
    mock: MockAnthropicServer, tmp_path: Path, status: int, code: ErrorCode
) -> None:
    mock.script(error_reply(status))
    run, session = new_run()
    with pytest.raises(AsmError) as info:
        await real_adapter(mock, tmp_path).execute(run, session, Collector())
    assert info.value.code is code
    assert info.value.details["api_error_status"] == status


async def test_cancel_mid_stream(mock: MockAnthropicServer, tmp_path: Path) -> None:
    mock.script(text_reply([f"{i} " for i in range(300)], delay=0.05))
    before = child_pids()
    adapter = real_adapter(mock, tmp_path)
    run, session = new_run("Count slowly")
    emit = Collector(session_id=session.id, run_id=run.id)
    outcome = await cancel_when(
        lambda: adapter.execute(run, session, emit), emit.first_delta, lambda: adapter.cancel(run.id)
    )

    assert [e.code for e in outcome] == [ErrorCode.CANCELLED]
    assert len(emit.of(EventType.MESSAGE_STREAMED)) < 300
    assert child_pids() <= before


async def test_through_session_manager(mock: MockAnthropicServer, tmp_path: Path) -> None:
    mock.script(text_reply(["Hi ", "there"], usage=Usage(40, 9, 5, 3)))
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, real_adapter(mock, tmp_path))
        result = await manager.run_once("hi")

        events = await manager.get_session_events(result.session_id, run_id=result.run_id)
        types = [e.type for e in events]
        assert types[0] is EventType.RUN_STARTED
        terminal = {
            EventType.RUN_COMPLETED,
            EventType.RUN_FAILED,
            EventType.RUN_CANCELLED,
            EventType.RUN_TIMEOUT,
        }
        assert [t for t in types if t in terminal] == [EventType.RUN_COMPLETED]
        assert types[-1] is EventType.RUN_COMPLETED
        assert EventType.MESSAGE_STREAMED in types
        run = await manager.get_run(result.run_id)
        assert run.status is RunStatus.COMPLETED
        expected = TokenUsage(input_tokens=40, output_tokens=9, cache_read_tokens=5, cache_creation_tokens=3)
        assert run.token_usage == expected
        assert result.token_usage == expected
        assert result.output["content"] == "Hi there"
        session = await manager.get_session(result.session_id)
        assert (
            session.metadata["provider_sessions"]["claude"]["provider_session_id"]
            == events[0].data["provider_session_id"]
        )


async def test_through_session_manager_api_error(mock: MockAnthropicServer, tmp_path: Path) -> None:
    mock.script(error_reply(429))
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, real_adapter(mock, tmp_path))
        with pytest.raises(AsmError) as info:
            await manager.run_once("hi")
        assert info.value.code is ErrorCode.PROVIDER_RATE_LIMITED
        sessions = await store.list_sessions()
        runs = await manager.get_session_runs(sessions[0].id)
        events = await manager.get_session_events(sessions[0].id, run_id=runs[0].id)
        assert events[0].type is EventType.RUN_STARTED
        assert events[-1].type is EventType.RUN_FAILED
        assert events[-1].data["error_code"] == "provider_rate_limited"
        assert runs[0].status is RunStatus.FAILED


async def test_native_resume_continues_the_cli_session(mock: MockAnthropicServer, tmp_path: Path) -> None:
    mock.script(text_reply(["Nice to meet you, Ada."]), text_reply(["Your name is Ada."]))
    async with InMemorySessionStore() as store:
        manager = SessionManager(store, real_adapter(mock, tmp_path))
        session = await manager.start_session("agent")
        await manager.activate_session(session.id)
        first = await manager.start_run(session.id, {"prompt": "My name is Ada."})
        await manager.execute_run(first.id)
        second = await manager.start_run(session.id, {"prompt": "What is my name?"})
        result = await manager.execute_run(second.id, continuation="native")

    assert result.output["content"] == "Your name is Ada."
    history = mock.main_requests[1].body["messages"]
    texts = [
        block["text"] if isinstance(block, dict) else block
        for message in history
        for block in (message["content"] if isinstance(message["content"], list) else [message["content"]])
        if isinstance(block, str) or block.get("type") == "text"
    ]
    # The resumed CLI sent the earlier exchange itself; the adapter sent only the new prompt.
    assert any("My name is Ada." in t for t in texts)
    assert any("Nice to meet you, Ada." in t for t in texts)
    assert sum("What is my name?" in t for t in texts) == 1


async def test_resume_of_unknown_session_fails_cleanly(mock: MockAnthropicServer, tmp_path: Path) -> None:
    run, session = new_run()
    with pytest.raises(AsmError) as info:
        await real_adapter(mock, tmp_path).execute(
            run, session, Collector(), resume_session_id="8a1c9a7e-0000-4000-8000-000000000000"
        )
    assert info.value.code is ErrorCode.PROVIDER_ERROR
    assert info.value.details["reason"] == "resume_failed"
    assert not info.value.retryable
    assert mock.main_requests == []
