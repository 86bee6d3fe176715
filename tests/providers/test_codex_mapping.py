"""Pure event mapping of ``codex exec --json`` transcripts (recorded from the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_session_manager.core import ErrorCode, EventType, TokenUsage
from agent_session_manager.providers.codex import CodexStreamMapper, classify_error_message, codex_usage

FIXTURES = Path(__file__).parent / "fixtures" / "codex"


def _feed(name: str, **kwargs: Any) -> tuple[CodexStreamMapper, list[Any]]:
    mapper = CodexStreamMapper(**kwargs)
    events = []
    for line in (FIXTURES / name).read_text().splitlines():
        events += mapper.feed(json.loads(line))
    return mapper, events


def test_text_fixture_maps_to_run_started_message_and_usage() -> None:
    mapper, events = _feed("codex_exec_json_text.jsonl", model="gpt-5")
    assert [e.type for e in events] == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_RECEIVED,
        EventType.TOKEN_USAGE_UPDATED,
    ]
    started = events[0].data
    assert started["provider_session_id"] == "01a20067-2128-7852-bfcd-25357cd51570"
    assert started["model"] == "gpt-5"
    assert events[1].data["content"] == "Hello! How can I help you today?"
    assert events[1].data["role"] == "assistant"
    assert mapper.completed
    assert mapper.failure is None
    assert mapper.usage == TokenUsage(input_tokens=2810, output_tokens=57, cache_read_tokens=2304)
    assert events[2].data["input_tokens"] == 2810
    assert events[2].data["reasoning_output_tokens"] == 12


def test_command_fixture_maps_tools_with_canonical_keys() -> None:
    mapper, events = _feed("codex_exec_json_command.jsonl")
    types = [e.type for e in events]
    assert types == [
        EventType.RUN_STARTED,
        EventType.MESSAGE_STREAMED,  # reasoning
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.MESSAGE_RECEIVED,
        EventType.TOKEN_USAGE_UPDATED,
    ]
    assert events[1].data["kind"] == "reasoning"
    started, done = events[2].data, events[3].data
    assert started["tool_call_id"] == done["tool_call_id"] == "item_1"
    assert started["tool_name"] == "bash"
    assert started["tool_input"] == {"command": "/bin/bash -lc ls"}
    assert done["tool_output"] == "README.md\n"
    assert done["exit_code"] == 0
    file_done = events[5].data
    assert file_done["tool_name"] == "file_change"
    assert file_done["tool_input"]["changes"] == [{"path": "/home/user/project/hello.txt", "kind": "add"}]
    assert [c["name"] for c in mapper.tool_calls] == ["bash", "file_change"]
    assert mapper.content.startswith("I listed the directory")


def test_real_tool_fixture_counts_two_model_calls_in_usage() -> None:
    mapper, events = _feed("real_tool.jsonl")
    assert mapper.usage.input_tokens == 360
    warnings = [e for e in events if e.type == EventType.ERROR_OCCURRED]
    assert len(warnings) == 1
    assert warnings[0].data["fatal"] is False
    assert "Model metadata" in warnings[0].data["error_message"]


def test_failed_command_maps_to_tool_call_failed() -> None:
    mapper = CodexStreamMapper()
    item = {"id": "item_3", "type": "command_execution", "command": "false", "aggregated_output": "boom"}
    mapper.feed({"type": "item.started", "item": {**item, "status": "in_progress", "exit_code": None}})
    events = mapper.feed({"type": "item.completed", "item": {**item, "status": "failed", "exit_code": 1}})
    assert [e.type for e in events] == [EventType.TOOL_CALL_FAILED]
    assert events[0].data["exit_code"] == 1
    assert events[0].data["tool_output"] == "boom"


def test_completed_without_started_emits_both() -> None:
    mapper = CodexStreamMapper()
    item = {"id": "i", "type": "mcp_tool_call", "server": "docs", "tool": "search", "arguments": {"q": "x"}}
    events = mapper.feed(
        {"type": "item.completed", "item": {**item, "status": "failed", "error": {"message": "nope"}}}
    )
    assert [e.type for e in events] == [EventType.TOOL_CALL_STARTED, EventType.TOOL_CALL_FAILED]
    assert events[0].data["tool_name"] == "mcp__docs__search"
    assert events[0].data["tool_input"] == {"q": "x"}
    assert events[1].data["tool_output"] == {"error": "nope"}


def test_web_search_and_todo_list() -> None:
    mapper = CodexStreamMapper()
    events = mapper.feed(
        {"type": "item.completed", "item": {"id": "w", "type": "web_search", "query": "anyio"}}
    )
    assert [e.type for e in events] == [EventType.TOOL_CALL_STARTED, EventType.TOOL_CALL_COMPLETED]
    assert events[0].data["tool_input"] == {"query": "anyio"}
    todo = {"id": "t", "type": "todo_list", "items": [{"text": "a", "completed": True}, {"text": "b"}]}
    events = mapper.feed({"type": "item.updated", "item": todo})
    assert events[0].type == EventType.MESSAGE_STREAMED
    assert events[0].data["kind"] == "todo_list"
    assert events[0].data["content"] == "[x] a\n[ ] b"


def test_failed_fixture_sets_failure_with_mapped_code() -> None:
    mapper, events = _feed("codex_exec_json_failed.jsonl")
    assert not mapper.completed
    assert mapper.failure is not None
    assert mapper.failure.code == ErrorCode.PROVIDER_QUOTA_EXCEEDED
    # the `error` notice before turn.failed is reported, but as non-fatal
    assert [e.type for e in events] == [EventType.RUN_STARTED, EventType.ERROR_OCCURRED]


@pytest.mark.parametrize(
    ("fixture", "code"),
    [
        ("real_error_401.jsonl", ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        ("real_error_429.jsonl", ErrorCode.PROVIDER_RATE_LIMITED),
        ("real_error_500.jsonl", ErrorCode.PROVIDER_UNAVAILABLE),
    ],
)
def test_real_api_errors_are_classified(fixture: str, code: ErrorCode) -> None:
    mapper, _ = _feed(fixture)
    assert mapper.failure is not None
    assert mapper.failure.code == code


def test_retry_notice_is_not_a_failure() -> None:
    mapper, events = _feed("real_retry.jsonl")
    assert mapper.completed
    assert mapper.failure is None
    notices = [e.data for e in events if e.type == EventType.ERROR_OCCURRED]
    assert any(n["error_message"].startswith("Reconnecting") for n in notices)
    assert all(n["fatal"] is False for n in notices)
    assert mapper.content == "Recovered after a retry."


def test_sigint_fixture_has_no_terminal_event() -> None:
    mapper, _ = _feed("codex_exec_json_sigint.jsonl")
    assert not mapper.completed
    assert mapper.failure is None


def test_resumed_thread_usage_is_a_delta_against_the_baseline() -> None:
    baseline = codex_usage({"input_tokens": 2810, "cached_input_tokens": 2304, "output_tokens": 57})
    mapper, events = _feed("codex_exec_json_resume.jsonl", baseline=baseline, resumed=True)
    assert events[0].data["resumed"] is True
    assert mapper.usage == TokenUsage(input_tokens=2810, output_tokens=57, cache_read_tokens=2304)
    assert mapper.thread_total is not None
    assert mapper.thread_total.input_tokens == 5620
    assert events[-1].data["thread_total"]["input_tokens"] == 5620


def test_total_below_baseline_is_trusted_as_the_run_usage() -> None:
    mapper = CodexStreamMapper(baseline=TokenUsage(input_tokens=10_000, output_tokens=900))
    mapper.feed({"type": "turn.completed", "usage": {"input_tokens": 50, "output_tokens": 5}})
    assert mapper.usage == TokenUsage(input_tokens=50, output_tokens=5)


def test_unknown_lines_map_to_nothing() -> None:
    mapper = CodexStreamMapper()
    assert mapper.feed({"type": "item.plan.delta", "delta": "x"}) == []
    assert mapper.feed({"type": "item.completed", "item": "not a dict"}) == []
    assert mapper.feed({"type": "item.completed", "item": {"type": "collab_tool_call", "id": "c"}}) == []
    assert mapper.feed({"no": "type"}) == []


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            "unexpected status 401 Unauthorized: Incorrect API key provided",
            ErrorCode.PROVIDER_AUTHENTICATION_FAILED,
        ),
        ("Quota exceeded. Check your plan and billing details.", ErrorCode.PROVIDER_QUOTA_EXCEEDED),
        ("exceeded retry limit, last status: 429 Too Many Requests", ErrorCode.PROVIDER_RATE_LIMITED),
        ("unexpected status 503 Service Unavailable", ErrorCode.PROVIDER_UNAVAILABLE),
        ("Model is overloaded", ErrorCode.PROVIDER_UNAVAILABLE),
        ("context window exceeded", ErrorCode.PROVIDER_ERROR),
    ],
)
def test_classify_error_message(message: str, code: ErrorCode) -> None:
    assert classify_error_message(message) == code
