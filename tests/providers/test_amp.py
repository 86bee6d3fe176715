"""AmpAdapter: pure mapping of the stream-json fixtures and the adapter driven by the fake CLI.

The Amp CLI runs its model loop on the Amp server, so it cannot be pointed at a loopback mock;
these tests replay the fixtures built from the CLI's emitter code (see provider_wire_formats.md §3).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, Run, Session, TokenUsage
from agent_session_manager.ports import ProviderEvent
from agent_session_manager.providers.amp import AmpAdapter, AmpStreamMapper, amp_usage
from tests.providers.fakes import FAKE_CLI, fake_env, pid_gone, write_transcript

FIXTURES = Path(__file__).parent / "fixtures" / "amp"
TEXT = FIXTURES / "amp_stream_json_text.jsonl"
TOOL = FIXTURES / "amp_stream_json_tool_use.jsonl"
ERROR = FIXTURES / "amp_stream_json_error.jsonl"


class Collector:
    def __init__(self, session: Session, run: Run) -> None:
        self.session, self.run = session, run
        self.events: list[Event] = []
        self.started = anyio.Event()

    async def __call__(self, event: ProviderEvent) -> Event:
        stored = Event(type=event.type, session_id=self.session.id, run_id=self.run.id, data=event.data)
        self.events.append(stored)
        if event.type == EventType.RUN_STARTED:
            self.started.set()
        return stored

    @property
    def types(self) -> list[EventType]:
        return [e.type for e in self.events]


def _session_run(prompt: str = "Say hello") -> tuple[Session, Run]:
    session = Session(agent_id="agent")
    return session, Run(session_id=session.id, input={"prompt": prompt})


def _adapter(
    tmp_path: Path, transcript: Path | None, *, key: str | None = "sgamp_test_key_123456", **env: Any
):
    fake = fake_env(
        transcript=transcript,
        pid_file=tmp_path / "pid",
        record=tmp_path / "record.json",
        stdin_file=tmp_path / "stdin.txt",
        record_env="AMP_API_KEY",
        **env,
    )
    fake["AMP_API_KEY"] = key  # type: ignore[assignment]  # None removes it from the child env
    return AmpAdapter(cli_path=FAKE_CLI, env=fake, timeout=20)


def _feed(path: Path) -> tuple[AmpStreamMapper, list[ProviderEvent]]:
    mapper = AmpStreamMapper()
    events: list[ProviderEvent] = []
    for line in path.read_text().splitlines():
        events += mapper.feed(json.loads(line))
    return mapper, events


# -- mapping -----------------------------------------------------------------------------------


def test_text_fixture_mapping() -> None:
    mapper, events = _feed(TEXT)
    assert [e.type for e in events] == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_RECEIVED,
        EventType.TOKEN_USAGE_UPDATED,
    ]
    started = events[0].data
    assert started["provider_session_id"] == "T-019a6c2e-5b7d-7f3a-9c1e-2d4b6a8e0f13"
    assert started["cwd"] == "/home/user/project"
    assert "Bash" in started["tools"]
    assert started["mcp_servers"] == []
    assert events[1].data == {
        "content": "Hello! How can I help you today?",
        "role": "assistant",
        "stop_reason": "end_turn",
    }
    assert mapper.failure is None
    assert mapper.result is not None
    assert mapper.usage == TokenUsage(
        input_tokens=12783, output_tokens=11, cache_read_tokens=12416, cache_creation_tokens=367
    )


def test_tool_fixture_mapping_and_usage_sum() -> None:
    mapper, events = _feed(TOOL)
    assert [e.type for e in events] == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_RECEIVED,
        EventType.TOOL_CALL_STARTED,
        EventType.TOKEN_USAGE_UPDATED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.MESSAGE_RECEIVED,
        EventType.TOKEN_USAGE_UPDATED,
    ]
    started, done = events[2].data, events[4].data
    call_id = "toolu_3f6b2a9e-1c4d-4e8f-9a7b-2d5c8e1f0a63"
    assert started == {"tool_call_id": call_id, "tool_name": "Bash", "tool_input": {"cmd": "ls"}}
    assert done["tool_call_id"] == call_id
    assert done["tool_name"] == "Bash"
    assert done["tool_input"] == {"cmd": "ls"}
    assert json.loads(done["tool_output"]) == {"output": "notes.txt\n", "exitCode": 0}
    assert mapper.usage == TokenUsage(
        input_tokens=12851, output_tokens=59, cache_read_tokens=25614, cache_creation_tokens=367
    )
    assert events[-1].data["input_tokens"] == 12851  # running sum for the run
    assert mapper.turns == 2
    assert mapper.content == "The directory contains `notes.txt`."


def test_error_result_maps_to_failure() -> None:
    mapper, events = _feed(ERROR)
    assert mapper.failure is not None
    assert mapper.failure.code == ErrorCode.TOOL_PERMISSION_DENIED
    assert "require user approval" in mapper.failure.message
    assert EventType.TOOL_CALL_STARTED in [e.type for e in events]


def test_tool_result_error_maps_to_tool_call_failed() -> None:
    mapper = AmpStreamMapper()
    mapper.feed(
        {
            "type": "assistant",
            "message": {"content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"cmd": "x"}}]},
        }
    )
    events = mapper.feed(
        {
            "type": "user",
            "message": {
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "Tool execution cancelled",
                        "is_error": True,
                    }
                ]
            },
        }
    )
    assert [e.type for e in events] == [EventType.TOOL_CALL_FAILED]
    assert events[0].data["is_error"] is True
    assert events[0].data["tool_name"] == "Bash"
    assert mapper.tool_calls[0]["is_error"] is True


def test_thinking_blocks_are_reasoning_and_unknown_lines_ignored() -> None:
    mapper = AmpStreamMapper()
    events = mapper.feed(
        {"type": "assistant", "message": {"content": [{"type": "thinking", "thinking": "hmm"}]}}
    )
    assert [(e.type, e.data["kind"]) for e in events] == [(EventType.MESSAGE_STREAMED, "reasoning")]
    assert mapper.feed({"type": "stream_event", "x": 1}) == []
    assert amp_usage("nope") == TokenUsage()


# -- adapter with the fake CLI --------------------------------------------------------------------


@pytest.mark.anyio
async def test_text_run(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, TEXT)
    session, run = _session_run()
    emit = Collector(session, run)
    result = await adapter.execute(run, session, emit)
    assert emit.types[0] == EventType.RUN_STARTED
    assert result.output["content"] == "Hello! How can I help you today?"
    assert result.provider_session_id == "T-019a6c2e-5b7d-7f3a-9c1e-2d4b6a8e0f13"
    assert result.token_usage.input_tokens == 12783
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["argv"] == ["--execute", "--stream-json"]
    assert record["env"] == {"AMP_API_KEY": "sgamp_test_key_123456"}
    assert (tmp_path / "stdin.txt").read_text() == "Say hello\n"
    assert pid_gone(int((tmp_path / "pid").read_text()))


@pytest.mark.anyio
async def test_tool_run_with_garbage_lines(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, TOOL, garbage=True)
    session, run = _session_run()
    result = await adapter.execute(run, session, Collector(session, run))
    assert [c["name"] for c in result.output["tool_calls"]] == ["Bash"]
    assert result.turn_count == 2


@pytest.mark.anyio
async def test_error_result_with_exit_zero_raises(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, ERROR)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.TOOL_PERMISSION_DENIED
    assert info.value.details["exit_code"] == 0
    assert info.value.details["session_id"] == "T-019a6c35-7d12-7b90-a4e6-0c3f8b5d2e91"


@pytest.mark.anyio
async def test_error_result_messages_are_classified(tmp_path: Path) -> None:
    lines = [json.loads(TEXT.read_text().splitlines()[0])]
    lines.append(
        {
            "type": "result",
            "subtype": "error_during_execution",
            "is_error": True,
            "error": "429 rate limit exceeded",
        }
    )
    adapter = _adapter(tmp_path, write_transcript(tmp_path / "t.jsonl", lines))
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.PROVIDER_RATE_LIMITED


@pytest.mark.anyio
async def test_missing_api_key_fails_up_front_without_spawning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMP_API_KEY", raising=False)
    adapter = _adapter(tmp_path, TEXT, key=None)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.PROVIDER_AUTHENTICATION_FAILED
    assert not (tmp_path / "record.json").exists()
    with pytest.raises(AsmError):
        adapter.validate_config()
    # a key given per run is enough
    result = await adapter.execute(run, session, Collector(session, run), api_key="sgamp_other_key_1234")
    assert result.output["content"]


@pytest.mark.anyio
async def test_login_banner_is_an_authentication_failure(tmp_path: Path) -> None:
    transcript = tmp_path / "login.jsonl"
    transcript.write_text("No API key found. Starting login flow...\n")
    adapter = _adapter(tmp_path, transcript, hang=True)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.PROVIDER_AUTHENTICATION_FAILED
    assert pid_gone(int((tmp_path / "pid").read_text()))


@pytest.mark.anyio
async def test_missing_binary_names_the_install_command(tmp_path: Path) -> None:
    adapter = AmpAdapter(env={"PATH": str(tmp_path), "AMP_API_KEY": "k"})
    with pytest.raises(AsmError) as info:
        adapter.validate_config()
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "npm install -g @sourcegraph/amp" in info.value.message


@pytest.mark.anyio
async def test_setup_error_without_result_uses_stderr(tmp_path: Path) -> None:
    adapter = _adapter(
        tmp_path, None, exit_code=1, stderr="Error: Couldn't connect to the Amp server at https://x"
    )
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "Couldn't connect" in info.value.details["stderr_tail"]


@pytest.mark.anyio
async def test_crash_mid_stream_is_a_provider_error(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, TOOL, crash_after=3, crash_code=0)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.code == ErrorCode.PROVIDER_ERROR
    assert "without a result" in info.value.message


@pytest.mark.anyio
async def test_hang_hits_the_deadline(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, TEXT, hang_after=2)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run), timeout=1.0, term_grace=0.5)
    assert info.value.code == ErrorCode.PROVIDER_TIMEOUT
    assert pid_gone(int((tmp_path / "pid").read_text()))


@pytest.mark.anyio
async def test_cancel_sends_sigint_and_amp_reports_user_cancelled(tmp_path: Path) -> None:
    cancelled = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "error": "User cancelled (SIGINT)",
    }
    adapter = _adapter(tmp_path, TEXT, hang_after=2, on_sigint=json.dumps(cancelled), sigint_code=0)
    session, run = _session_run()
    emit = Collector(session, run)
    errors: list[AsmError] = []

    async def execute() -> None:
        try:
            await adapter.execute(run, session, emit)
        except AsmError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(execute)
        await emit.started.wait()
        await adapter.cancel(run.id)
    assert [e.code for e in errors] == [ErrorCode.CANCELLED]
    assert errors[0].details["exit_code"] == 0
    assert pid_gone(int((tmp_path / "pid").read_text()))


def test_argv_for_continue_permissions_and_options(tmp_path: Path) -> None:
    adapter = AmpAdapter(
        permission_mode="full_auto",
        mode="high",
        settings_file=tmp_path / "s.json",
        mcp_config=tmp_path / "mcp.json",
        thinking=True,
        extra_args=["--label", "x"],
    )
    argv = adapter.build_argv(adapter._options({}), binary="amp", thread_id="T-1")
    assert argv[:6] == ["amp", "threads", "continue", "T-1", "--execute", "--stream-json"]
    assert "--dangerously-allow-all" in argv
    assert "--stream-json-thinking" in argv
    assert argv[argv.index("--mode") + 1] == "high"
    assert argv[argv.index("--settings-file") + 1] == str(tmp_path / "s.json")
    assert argv[-2:] == ["--label", "x"]
    for mode in ("default", "plan", "accept_edits"):
        plain = AmpAdapter(permission_mode=mode)
        assert "--dangerously-allow-all" not in plain.build_argv(
            plain._options({}), binary="amp", thread_id=None
        )


@pytest.mark.anyio
async def test_continue_thread_and_system_prompt(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, TEXT)
    session, run = _session_run("next step")
    await adapter.execute(
        run, session, Collector(session, run), resume_session_id="T-abc", system_prompt="Be terse"
    )
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["argv"][:3] == ["threads", "continue", "T-abc"]
    # continued thread: the system prompt is already part of it
    assert (tmp_path / "stdin.txt").read_text() == "next step\n"
    await adapter.execute(run, session, Collector(session, run), system_prompt="Be terse")
    stdin = (tmp_path / "stdin.txt").read_text()
    assert stdin.startswith("<system_instructions>\nBe terse\n</system_instructions>")
    assert stdin.endswith("next step\n")


# -- model / mode ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["low", "medium", "high", "ultra"])
def test_model_naming_a_mode_becomes_the_mode(mode: str) -> None:
    adapter = AmpAdapter(model=mode)
    argv = adapter.build_argv(adapter._options({}), binary="amp", thread_id=None)
    assert argv[argv.index("--mode") + 1] == mode
    # per run, model or mode replaces the default mode
    other = "low" if mode != "low" else "ultra"
    for key in ("model", "mode"):
        argv = adapter.build_argv(adapter._options({key: other}), binary="amp", thread_id=None)
        assert argv[argv.index("--mode") + 1] == other
    assert "--mode" not in AmpAdapter().build_argv(AmpAdapter()._options({}), binary="amp", thread_id=None)


@pytest.mark.parametrize(
    "kwargs",
    [{"model": "claude-sonnet-4-5"}, {"model": "smart"}, {"mode": "smart"}, {"mode": "low", "model": "high"}],
)
def test_other_models_and_modes_are_validation_errors(kwargs: dict[str, str]) -> None:
    with pytest.raises(AsmError) as info:
        AmpAdapter(**kwargs)
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    if "mode" not in kwargs:
        assert info.value.message == (
            f"Amp selects models by mode (low|medium|high|ultra); got model={kwargs['model']!r}"
        )
    with pytest.raises(AsmError) as info:
        AmpAdapter(mode="high")._options(kwargs)
    assert info.value.code == ErrorCode.VALIDATION_ERROR


@pytest.mark.anyio
async def test_bad_per_run_model_fails_before_spawning(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path, TEXT)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run), model="gpt-5")
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    assert "Amp selects models by mode" in info.value.message
    assert not (tmp_path / "pid").exists()
    result = await adapter.execute(run, session, Collector(session, run), model="ultra")
    assert result.output["content"]
    argv = json.loads((tmp_path / "record.json").read_text())["argv"]
    assert argv[argv.index("--mode") + 1] == "ultra"


# -- max_turns ---------------------------------------------------------------------------------

MULTI = FIXTURES / "amp_stream_json_multi_tool.jsonl"  # 4 assistant messages, 3 tool rounds


def test_turns_are_assistant_messages() -> None:
    mapper = AmpStreamMapper()
    for line in MULTI.read_text().splitlines():
        mapper.feed(json.loads(line))
        if mapper.result is None:  # before the result overrides it with num_turns
            last = mapper.turns
    assert last == 4
    assert mapper.turns == 4


def test_limit_drops_the_excess_message_and_all_after_it() -> None:
    mapper = AmpStreamMapper(max_turns=2)
    types: list[EventType] = []
    for line in MULTI.read_text().splitlines():
        types += [e.type for e in mapper.feed(json.loads(line))]
    assert mapper.limit is not None
    assert mapper.limit.code == ErrorCode.PROVIDER_ERROR
    assert mapper.limit.details["reason"] == "max_turns"
    assert mapper.limit.details["max_turns"] == 2
    assert mapper.limit.details["num_turns"] == 3
    assert mapper.result is None
    # turn 2's tool ran; turn 3 (text, tool use) and everything after it is dropped
    assert types.count(EventType.TOOL_CALL_STARTED) == 2
    assert types.count(EventType.TOOL_CALL_COMPLETED) == 2
    assert types.count(EventType.TOKEN_USAGE_UPDATED) == 2
    assert mapper.usage.input_tokens == 240


@pytest.mark.anyio
@pytest.mark.parametrize("stubborn", [False, True], ids=["sigint", "escalated"])
async def test_max_turns_stops_the_cli_and_raises(tmp_path: Path, stubborn: bool) -> None:
    # The fake hangs after the transcript: only the adapter stopping it ends the run.
    cancelled = {"type": "result", "subtype": "error_during_execution", "is_error": True, "error": "x"}
    signals: dict[str, Any] = (
        {"ignore_sigint": True, "ignore_sigterm": True}
        if stubborn
        else {"on_sigint": json.dumps(cancelled), "sigint_code": 0}
    )
    adapter = _adapter(tmp_path, MULTI, hang=True, **signals)
    session, run = _session_run()
    emit = Collector(session, run)
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, emit, max_turns=2, interrupt_grace=0.2, term_grace=0.2)
    err = info.value
    assert err.code == ErrorCode.PROVIDER_ERROR
    assert "reached max_turns=2" in err.message
    assert err.details["reason"] == "max_turns"
    assert err.details["max_turns"] == 2
    assert err.details["num_turns"] == 3
    assert err.details["session_id"] == "T-019a6c40-2b3c-7d4e-9f50-6a7b8c9d0e1f"
    assert err.details["exit_code"] == (-9 if stubborn else 0)
    assert pid_gone(int((tmp_path / "pid").read_text()))
    assert emit.types.count(EventType.TOOL_CALL_COMPLETED) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(("default", "per_run"), [(4, None), (None, 4), (1, 4), (None, None)])
async def test_under_the_limit_the_run_completes(
    tmp_path: Path, default: int | None, per_run: int | None
) -> None:
    fake = fake_env(transcript=MULTI, pid_file=tmp_path / "pid")
    adapter = AmpAdapter(cli_path=FAKE_CLI, env={**fake, "AMP_API_KEY": "k"}, timeout=20, max_turns=default)
    session, run = _session_run()
    result = await adapter.execute(run, session, Collector(session, run), max_turns=per_run)
    assert result.turn_count == 4
    assert [c["name"] for c in result.output["tool_calls"]] == ["Bash", "Read", "create_file"]
    assert result.output["content"] == "Done: I wrote `notes.txt`."
    assert pid_gone(int((tmp_path / "pid").read_text()))


@pytest.mark.parametrize("bad", [0, -2, "4", 1.5, False])
def test_bad_max_turns_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(AsmError) as info:
        AmpAdapter(max_turns=bad)
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    with pytest.raises(AsmError) as info:
        AmpAdapter()._options({"max_turns": bad})
    assert info.value.code == ErrorCode.VALIDATION_ERROR
