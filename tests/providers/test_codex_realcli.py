"""The real Codex CLI (``scripts/install_codex.sh`` → ``.tools/bin/codex``) against a loopback mock.

Skipped only when the binary is absent and ``CI`` is not set; in CI a missing binary fails.
Each test isolates ``CODEX_HOME`` in a temporary directory and routes the CLI to
``tests/providers/mock_openai.py`` on 127.0.0.1 through a custom model provider.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager import InMemorySessionStore, SessionManager
from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, RunStatus, TokenUsage
from agent_session_manager.core.enums import TERMINAL_RUN_EVENTS
from agent_session_manager.providers.codex import CodexAdapter
from tests.providers.mock_openai import MockOpenAI, Reply

pytestmark = [pytest.mark.realcli, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]


def _codex_binary() -> str | None:
    for candidate in (os.environ.get("ASM_CODEX_CLI"), str(ROOT / ".tools" / "bin" / "codex")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("codex")


@pytest.fixture(scope="module")
def codex_bin() -> str:
    binary = _codex_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Codex CLI missing in CI: run `bash scripts/install_codex.sh` first")
        pytest.skip("Codex CLI not installed (bash scripts/install_codex.sh)")
    return binary


@pytest.fixture
def mock() -> Iterator[MockOpenAI]:
    with MockOpenAI() as server:
        yield server


def _adapter(codex_bin: str, mock: MockOpenAI, tmp_path: Path, **kwargs: Any) -> CodexAdapter:
    home = tmp_path / "codex-home"
    work = tmp_path / "work"
    home.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    return CodexAdapter(
        cli_path=codex_bin,
        model="mock-model",
        cwd=work,
        codex_home=home,
        env={"ASM_MOCK_OPENAI_KEY": "sk-mock-key-for-tests", "HOME": str(tmp_path)},
        extra_args=mock.codex_config(),
        permission_mode="dangerously_skip_permissions",
        timeout=25,
        **kwargs,
    )


def _live_codex_processes(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (our unique working directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def _assert_run_shape(events: list[Event], terminal: EventType) -> None:
    assert events[0].type == EventType.RUN_STARTED
    terminals = [e for e in events if e.type in TERMINAL_RUN_EVENTS]
    assert [e.type for e in terminals] == [terminal]
    assert events[-1].type == terminal
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers)


async def _run_events(store: InMemorySessionStore, session_id: str, run_id: str) -> list[Event]:
    return await store.get_events(session_id, run_id=run_id, limit=1000)


async def test_text_answer_through_the_session_manager(
    codex_bin: str, mock: MockOpenAI, tmp_path: Path
) -> None:
    mock.replies.append(
        Reply.text_answer("Hello from the mock.", input_tokens=321, output_tokens=17, cached=128)
    )
    store = InMemorySessionStore()
    manager = SessionManager(store, _adapter(codex_bin, mock, tmp_path))
    seen: list[Event] = []
    result = await manager.run_once("Say hello", on_event=seen.append)
    assert result.output["content"] == "Hello from the mock."
    assert result.token_usage == TokenUsage(input_tokens=321, output_tokens=17, cache_read_tokens=128)
    events = await _run_events(store, result.session_id, result.run_id)
    _assert_run_shape(events, EventType.RUN_COMPLETED)
    assert events[0].data["provider_session_id"] == result.provider_session_id
    run = await store.get_run(result.run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.token_usage == TokenUsage(input_tokens=321, output_tokens=17, cache_read_tokens=128)
    received = [e for e in events if e.type == EventType.MESSAGE_RECEIVED]
    assert [e.data["content"] for e in received] == ["Hello from the mock."]
    assert [e.id for e in seen if e.run_id == result.run_id] == [e.id for e in events]
    # Codex sent the prompt to the mock
    assert "Say hello" in str(mock.requests[0]["input"])


async def test_tool_round_trip(codex_bin: str, mock: MockOpenAI, tmp_path: Path) -> None:
    mock.replies.extend(
        [
            Reply.shell("echo hi", input_tokens=200, output_tokens=20),
            Reply.text_answer("It printed hi.", input_tokens=260, output_tokens=6),
        ]
    )
    store = InMemorySessionStore()
    manager = SessionManager(store, _adapter(codex_bin, mock, tmp_path))
    result = await manager.run_once("Run echo hi")
    events = await _run_events(store, result.session_id, result.run_id)
    _assert_run_shape(events, EventType.RUN_COMPLETED)
    started = [e for e in events if e.type == EventType.TOOL_CALL_STARTED]
    completed = [e for e in events if e.type == EventType.TOOL_CALL_COMPLETED]
    assert len(started) == len(completed) == 1
    assert started[0].data["tool_name"] == "bash"
    assert "echo hi" in started[0].data["tool_input"]["command"]
    assert completed[0].data["tool_output"] == "hi\n"
    assert completed[0].data["exit_code"] == 0
    # The CLI executed the command and sent its output back to the model.
    outputs = [i for i in mock.requests[1]["input"] if i.get("type") == "function_call_output"]
    assert len(outputs) == 1
    assert "hi" in outputs[0]["output"]
    assert result.output["content"] == "It printed hi."
    assert result.token_usage == TokenUsage(input_tokens=460, output_tokens=26)


async def test_api_error_fails_the_run_with_a_mapped_code(
    codex_bin: str, mock: MockOpenAI, tmp_path: Path
) -> None:
    mock.replies.append(
        Reply.error(401, "Incorrect API key provided", code="invalid_api_key", etype="invalid_request_error")
    )
    store = InMemorySessionStore()
    manager = SessionManager(store, _adapter(codex_bin, mock, tmp_path))
    session = await manager.start_session(agent_id="codex-test")
    await manager.activate_session(session.id)
    run = await manager.start_run(session.id, "Say hello")
    with pytest.raises(AsmError) as info:
        await manager.execute_run(run.id)
    assert info.value.code == ErrorCode.PROVIDER_AUTHENTICATION_FAILED
    assert "sk-mock-key-for-tests" not in str(info.value.details)
    events = await _run_events(store, session.id, run.id)
    _assert_run_shape(events, EventType.RUN_FAILED)
    assert (await store.get_run(run.id)).status == RunStatus.FAILED


async def test_cancel_mid_stream_stops_the_cli(codex_bin: str, mock: MockOpenAI, tmp_path: Path) -> None:
    mock.replies.append(Reply.hang("Thinking about"))
    store = InMemorySessionStore()
    manager = SessionManager(store, _adapter(codex_bin, mock, tmp_path))
    session = await manager.start_session(agent_id="codex-test")
    await manager.activate_session(session.id)
    run = await manager.start_run(session.id, "Say hello slowly")
    errors: list[AsmError] = []

    async def execute() -> None:
        try:
            await manager.execute_run(run.id)
        except AsmError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        assert await anyio.to_thread.run_sync(mock.hanging.wait, 20)
        await manager.cancel_run(run.id)
    assert [e.code for e in errors] == [ErrorCode.CANCELLED]
    events = await _run_events(store, session.id, run.id)
    _assert_run_shape(events, EventType.RUN_CANCELLED)
    assert (await store.get_run(run.id)).status == RunStatus.CANCELLED
    assert _live_codex_processes(str(tmp_path / "work")) == []


async def test_resumed_thread_reports_per_run_usage(codex_bin: str, mock: MockOpenAI, tmp_path: Path) -> None:
    mock.replies.extend(
        [
            Reply.text_answer("first", input_tokens=50, output_tokens=5),
            Reply.text_answer("second", input_tokens=70, output_tokens=7),
        ]
    )
    store = InMemorySessionStore()
    manager = SessionManager(store, _adapter(codex_bin, mock, tmp_path))
    session = await manager.start_session(agent_id="codex-test")
    await manager.activate_session(session.id)
    first = await manager.execute_run((await manager.start_run(session.id, "one")).id)
    second_run = await manager.start_run(session.id, "two")
    second = await manager.execute_run(second_run.id, continuation="native")
    assert second.provider_session_id == first.provider_session_id
    assert first.token_usage == TokenUsage(input_tokens=50, output_tokens=5)
    # Codex reports the thread total (120/12); the run records only its own share.
    assert second.output["usage_total"]["input_tokens"] == 120
    assert second.token_usage == TokenUsage(input_tokens=70, output_tokens=7)
    assert (await store.get_run(second_run.id)).token_usage == TokenUsage(input_tokens=70, output_tokens=7)
    # The resumed turn carried the first exchange (Codex replayed its own history).
    assert "first" in str(mock.requests[1]["input"])
