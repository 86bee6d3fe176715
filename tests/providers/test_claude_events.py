"""The Claude message → event mapping and error classification, message by message."""

from __future__ import annotations

from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from agent_session_manager.core import ErrorCode, EventType, TokenUsage
from agent_session_manager.providers._claude_events import (
    ClaudeTurn,
    classify_result_error,
    usage_from_result,
)


def result(**fields: Any) -> ResultMessage:
    base: dict[str, Any] = {
        "subtype": "success",
        "duration_ms": 1,
        "duration_api_ms": 1,
        "is_error": False,
        "num_turns": 1,
        "session_id": "s-1",
    }
    return ResultMessage(**{**base, **fields})


def delta(text: str, *, parent: str | None = None, kind: str = "text_delta") -> StreamEvent:
    payload = {"type": kind, "text": text} if kind == "text_delta" else {"type": kind, "thinking": text}
    return StreamEvent(
        uuid="u",
        session_id="s-1",
        event={"type": "content_block_delta", "index": 0, "delta": payload},
        parent_tool_use_id=parent,
    )


def test_init_is_reported_once() -> None:
    turn = ClaudeTurn()
    init = SystemMessage("init", {"session_id": "s-1", "model": "m", "tools": ["Bash", 3], "cwd": "/w"})
    events = turn.events_for(init)
    assert [e.type for e in events] == [EventType.RUN_STARTED]
    assert events[0].data["tools"] == ["Bash"]
    assert turn.events_for(init) == []  # re-sent at each new turn in stream-json mode
    assert turn.events_for(SystemMessage("status", {"status": "requesting"})) == []


def test_stream_deltas_accumulate_per_message_and_skip_non_text() -> None:
    turn = ClaudeTurn()
    start = StreamEvent(uuid="u", session_id="s", event={"type": "message_start", "message": {"id": "msg_1"}})
    assert turn.events_for(start) == []
    first = turn.events_for(delta("Hel"))[0]
    second = turn.events_for(delta("lo"))[0]
    assert (first.data["content"], second.data["content"]) == ("Hel", "Hello")
    assert second.data["message_id"] == "msg_1"
    assert turn.events_for(delta("thinking...", kind="thinking_delta")) == []
    assert turn.events_for(delta("sub-agent text", parent="toolu_1")) == []
    assert turn.events_for(delta("")) == []
    turn.events_for(StreamEvent(uuid="u", session_id="s", event={"type": "message_start", "message": {}}))
    assert turn.events_for(delta("new"))[0].data["content"] == "new"
    stop = StreamEvent(uuid="u", session_id="s", event={"type": "message_stop"})
    assert turn.events_for(stop) == []


def test_assistant_blocks_and_tool_results() -> None:
    turn = ClaudeTurn()
    msg = AssistantMessage(
        content=[
            ThinkingBlock("hmm", "sig"),
            TextBlock("Reading."),
            ToolUseBlock("t1", "Read", {"file_path": "/x"}),
        ],
        model="m",
    )
    events = turn.events_for(msg)
    assert [e.type for e in events] == [EventType.MESSAGE_RECEIVED, EventType.TOOL_CALL_STARTED]
    sub = AssistantMessage(content=[TextBlock("sub-agent says")], model="m", parent_tool_use_id="t0")
    assert turn.events_for(sub) == []
    assert turn.last_text == "Reading."

    results = UserMessage(
        content=[
            ToolResultBlock("t1", [{"type": "text", "text": "line"}, {"type": "image", "source": {}}]),
            ToolResultBlock("t-unknown", None, is_error=True),
            TextBlock("not a tool result"),
        ]
    )
    done, failed = turn.events_for(results)
    assert done.type is EventType.TOOL_CALL_COMPLETED
    assert done.data["tool_output"].startswith("line\n")
    assert failed.type is EventType.TOOL_CALL_FAILED
    assert failed.data["tool_name"] == "unknown"
    assert failed.data["tool_output"] == ""
    assert turn.events_for(UserMessage(content="plain prompt echo")) == []
    assert [c["id"] for c in turn.tool_calls] == ["t1", "t-unknown"]
    assert turn.events_for(object()) == []


def test_result_without_init_still_records_session_and_falls_back_to_last_text() -> None:
    turn = ClaudeTurn()
    turn.events_for(AssistantMessage(content=[TextBlock("final words")], model="m"))
    events = turn.events_for(result(usage=None, session_id="s-9", stop_reason=None))
    assert events[0].data["total_tokens"] == 0
    assert turn.provider_session_id == "s-9"
    assert not turn.failed()
    out = turn.provider_result()
    assert out.output == {"content": "final words", "tool_calls": [], "stop_reason": "end_turn"}
    assert out.cost_usd is None


def test_usage_ignores_junk() -> None:
    assert usage_from_result(None) == TokenUsage()
    assert usage_from_result({"input_tokens": "x", "output_tokens": -3}) == TokenUsage()
    assert usage_from_result({"input_tokens": 5.0, "cache_read_input_tokens": 2}) == TokenUsage(
        input_tokens=5, cache_read_tokens=2
    )


@pytest.mark.parametrize(
    ("fields", "kind", "code", "reason"),
    [
        ({"api_error_status": 401}, None, ErrorCode.PROVIDER_AUTHENTICATION_FAILED, None),
        ({"api_error_status": 403}, None, ErrorCode.PROVIDER_AUTHENTICATION_FAILED, None),
        ({"api_error_status": 402}, None, ErrorCode.PROVIDER_QUOTA_EXCEEDED, None),
        ({"api_error_status": 408}, None, ErrorCode.PROVIDER_TIMEOUT, None),
        ({"api_error_status": 429}, None, ErrorCode.PROVIDER_RATE_LIMITED, None),
        ({"api_error_status": 500}, None, ErrorCode.PROVIDER_UNAVAILABLE, None),
        ({"api_error_status": 529}, None, ErrorCode.PROVIDER_UNAVAILABLE, None),
        ({}, "authentication_failed", ErrorCode.PROVIDER_AUTHENTICATION_FAILED, None),
        ({}, "billing_error", ErrorCode.PROVIDER_QUOTA_EXCEEDED, None),
        ({}, "rate_limit", ErrorCode.PROVIDER_RATE_LIMITED, None),
        ({}, "server_error", ErrorCode.PROVIDER_UNAVAILABLE, None),
        ({}, "invalid_request", ErrorCode.PROVIDER_ERROR, None),
        ({"subtype": "error_max_turns"}, None, ErrorCode.PROVIDER_ERROR, "max_turns"),
        ({"subtype": "error_max_budget_usd"}, None, ErrorCode.PROVIDER_ERROR, "max_budget_usd"),
        ({"terminal_reason": "prompt_too_long"}, None, ErrorCode.PROVIDER_ERROR, "prompt_too_long"),
        ({"subtype": "error_during_execution"}, None, ErrorCode.PROVIDER_ERROR, None),
    ],
)
def test_classify_result_error(
    fields: dict[str, Any], kind: str | None, code: ErrorCode, reason: str | None
) -> None:
    error = classify_result_error(result(is_error=True, **fields), kind)
    assert error.code is code
    assert error.details.get("reason") == reason
    assert error.details["provider"] == "claude"
    if kind:
        assert error.details["api_error_kind"] == kind


def test_error_message_prefers_errors_then_result_and_is_redacted() -> None:
    leaked = "key sk-ant-api03-ABCDEFGHIJKLMNOP rejected"
    assert classify_result_error(result(is_error=True, errors=["  ", leaked])).message == (
        "key [REDACTED] rejected"
    )
    assert classify_result_error(result(is_error=True, result="API Error: boom")).message == "API Error: boom"
    assert (
        classify_result_error(result(is_error=True, api_error_status=418)).message == "API error (HTTP 418)"
    )
    assert (
        "error_during_execution"
        in classify_result_error(result(is_error=True, subtype="error_during_execution")).message
    )


def test_error_subtype_without_is_error_is_still_a_failure() -> None:
    turn = ClaudeTurn()
    turn.events_for(result(subtype="error_max_turns", is_error=False))
    assert turn.failed()
    assert turn.error().details["reason"] == "max_turns"
