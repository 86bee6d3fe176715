"""The transcript builder (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_session_manager import AsmError, ErrorCode, Event, EventType
from agent_session_manager.core.transcript import Transcript, build_transcript

SID = "ses_t"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ev(seq: int | None, etype: EventType | str, run: str = "run_1", **data: Any) -> Event:
    return Event(
        type=etype,
        session_id=SID,
        run_id=run,
        sequence_number=seq,
        data=data,
        timestamp=T0 + timedelta(seconds=seq or 0),
    )


def simple(messages: list[Any]) -> list[tuple[str, Any]]:
    return [(m.role, m.content if m.content is not None else m.tool_name) for m in messages]


def test_messages_and_streamed_deltas() -> None:
    events = [
        ev(1, EventType.RUN_STARTED),
        ev(2, EventType.MESSAGE_SENT, content="Hi"),
        ev(3, EventType.MESSAGE_STREAMED, delta="Hel"),
        ev(4, EventType.MESSAGE_STREAMED, content="lo"),
        ev(5, EventType.MESSAGE_STREAMED, delta="(thinking)", kind="thinking"),
        ev(6, EventType.MESSAGE_RECEIVED, content=""),  # empty: the buffer is the content
        ev(7, EventType.RUN_COMPLETED),
        ev(8, EventType.MESSAGE_SENT, role="system", content="sys"),
        ev(9, EventType.MESSAGE_RECEIVED, role="weird", content="final"),
        ev(10, EventType.TOKEN_USAGE_UPDATED, input_tokens=1),
    ]
    t = build_transcript(reversed(events))  # any order: sorted by sequence
    assert simple(t.messages) == [
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("system", "sys"),
        ("assistant", "final"),
    ]
    assert t.session_id == SID
    assert t.last_sequence == 10
    assert t.last_timestamp == events[-1].timestamp
    assert t.pending_stream == ""
    assert t.messages[1].sequence_number == 6
    assert t.messages[1].run_id == "run_1"


def test_final_message_replaces_deltas_and_terminal_flushes() -> None:
    t = build_transcript(
        [
            ev(1, EventType.MESSAGE_STREAMED, delta="partial"),
            ev(2, EventType.MESSAGE_RECEIVED, content="the full answer"),
            ev(3, EventType.MESSAGE_STREAMED, delta="cut "),
            ev(4, EventType.MESSAGE_STREAMED, delta="off"),
            ev(5, EventType.RUN_FAILED),
        ]
    )
    assert simple(t.messages) == [("assistant", "the full answer"), ("assistant", "cut off")]


def test_pending_stream_survives_and_flushes_before_next_user_message() -> None:
    t = build_transcript([ev(1, EventType.MESSAGE_STREAMED, delta="dangling")])
    assert t.messages == []
    assert t.pending_stream == "dangling"
    t2 = t.extend([ev(2, EventType.MESSAGE_SENT, content="next")])
    assert simple(t2.messages) == [("assistant", "dangling"), ("user", "next")]
    assert t2.pending_stream == ""


def test_tool_calls_and_aliases() -> None:
    t = build_transcript(
        [
            ev(1, EventType.TOOL_CALL_STARTED, tool_call_id="c1", tool_name="bash", tool_input={"cmd": "ls"}),
            ev(2, EventType.TOOL_CALL_COMPLETED, tool_call_id="c1", tool_name="bash", tool_output="a\nb"),
            ev(3, EventType.TOOL_CALL_STARTED, tool_use_id="c2", tool_name="edit", input="not a dict"),
            ev(4, EventType.TOOL_CALL_FAILED, call_id="c2", output={"error": "denied"}),
            ev(5, EventType.TOOL_CALL_STARTED, call_id=7, tool_name=3, arguments={"x": 1}),
        ]
    )
    m = t.messages
    assert [x.role for x in m] == ["assistant", "tool", "assistant", "tool", "assistant"]
    assert (m[0].tool_call_id, m[0].tool_name, m[0].tool_input) == ("c1", "bash", {"cmd": "ls"})
    assert m[1].tool_output == "a\nb"
    assert m[2].tool_call_id == "c2"
    assert m[2].tool_input is None
    assert m[3].tool_call_id == "c2"
    assert m[3].tool_output == {"error": "denied"}
    assert (m[4].tool_call_id, m[4].tool_name, m[4].tool_input) == ("7", "3", {"x": 1})


def test_non_string_content_is_repr() -> None:
    t = build_transcript([ev(1, EventType.MESSAGE_SENT, content=[{"type": "text", "text": "hi"}])])
    assert "hi" in (t.messages[0].content or "")


def test_unsequenced_events_come_after_stored_ones() -> None:
    t = build_transcript(
        [
            ev(None, EventType.MESSAGE_RECEIVED, content="live"),
            ev(1, EventType.MESSAGE_SENT, content="stored"),
        ]
    )
    assert simple(t.messages) == [("user", "stored"), ("assistant", "live")]
    assert t.last_sequence == 1


def test_empty_and_session_id() -> None:
    assert build_transcript([]).session_id == "unknown"
    assert build_transcript([], session_id="ses_x").session_id == "ses_x"
    assert build_transcript([]).last_timestamp is None


def _conversation() -> list[Event]:
    return [
        ev(1, EventType.MESSAGE_SENT, content="a" * 10),
        ev(2, EventType.MESSAGE_RECEIVED, content="b" * 10),
        ev(3, EventType.TOOL_CALL_STARTED, tool_call_id="c", tool_name="tool", tool_input={"k": "v"}),
        ev(4, EventType.TOOL_CALL_COMPLETED, tool_call_id="c", tool_output="o" * 20),
        ev(5, EventType.MESSAGE_RECEIVED, content="c" * 10),
    ]


def test_truncation_max_messages() -> None:
    t = build_transcript(_conversation(), max_messages=2)
    assert [m.sequence_number for m in t.messages] == [4, 5]
    assert t.last_sequence == 5


def test_truncation_max_chars_counts_tool_payloads() -> None:
    # newest first: 10 (c) + 20 (tool output) = 30 fits; the tool call costs 4 + 10 more
    assert [m.sequence_number for m in build_transcript(_conversation(), max_chars=30).messages] == [4, 5]
    assert [m.sequence_number for m in build_transcript(_conversation(), max_chars=44).messages] == [3, 4, 5]
    assert build_transcript(_conversation(), max_chars=9).messages == []


def test_truncation_tokens_and_combined_limits() -> None:
    # 8 tokens ~ 32 chars; the tighter of max_chars and max_tokens_approx wins
    assert [m.sequence_number for m in build_transcript(_conversation(), max_tokens_approx=8).messages] == [
        4,
        5,
    ]
    both = build_transcript(_conversation(), max_chars=1000, max_tokens_approx=2)
    assert both.messages == []
    assert len(build_transcript(_conversation(), max_chars=1000, max_messages=1).messages) == 1


@pytest.mark.parametrize(
    "limits",
    [{"max_messages": 0}, {"max_chars": -5}, {"max_tokens_approx": 1.5}, {"max_messages": True}],
)
def test_invalid_limits(limits: dict[str, Any]) -> None:
    with pytest.raises(AsmError) as info:
        build_transcript(_conversation(), **limits)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


def test_extend_skips_already_applied_events() -> None:
    events = _conversation()
    t = build_transcript(events[:3])
    again = t.extend(events)  # overlapping batch: only seq > 3 is applied
    assert simple(again.messages) == simple(build_transcript(events).messages)
    assert t.extend([]).messages == t.messages
    assert t.extend([]).last_sequence == 3


# -- property: incremental extend equals full rebuild ---------------------------------------

_EVENT_KINDS = st.sampled_from(
    [
        EventType.MESSAGE_SENT,
        EventType.MESSAGE_RECEIVED,
        EventType.MESSAGE_STREAMED,
        EventType.TOOL_CALL_STARTED,
        EventType.TOOL_CALL_COMPLETED,
        EventType.TOOL_CALL_FAILED,
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.TOKEN_USAGE_UPDATED,
    ]
)
_TEXT = st.text(alphabet="abc xy", max_size=12)


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    specs = draw(st.lists(st.tuples(_EVENT_KINDS, _TEXT, st.sampled_from(["c1", "c2", None])), max_size=25))
    events = []
    for seq, (kind, text, call) in enumerate(specs, start=1):
        if kind is EventType.MESSAGE_STREAMED:
            data: dict[str, Any] = {"delta": text}
        elif kind in (EventType.TOOL_CALL_STARTED,):
            data = {"tool_call_id": call, "tool_name": text or None, "tool_input": {"q": text}}
        elif kind in (EventType.TOOL_CALL_COMPLETED, EventType.TOOL_CALL_FAILED):
            data = {"tool_call_id": call, "tool_output": text}
        else:
            data = {"content": text}
        events.append(ev(seq, kind, **data))
    return events


_LIMITS = st.fixed_dictionaries(
    {},
    optional={
        "max_messages": st.integers(1, 8),
        "max_chars": st.integers(1, 80),
        "max_tokens_approx": st.integers(1, 20),
    },
)


@settings(max_examples=150, deadline=None)
@given(events=event_lists(), cuts=st.lists(st.integers(0, 25), max_size=4), limits=_LIMITS)
def test_incremental_extend_equals_full_rebuild(
    events: list[Event], cuts: list[int], limits: dict[str, Any]
) -> None:
    full = build_transcript(events, session_id=SID, **limits)
    transcript = Transcript(session_id=SID)
    start = 0
    for cut in sorted(cuts):
        transcript = transcript.extend(events[start:cut], **limits)
        start = max(start, cut)
    transcript = transcript.extend(events[start:], **limits)
    assert transcript == full
    # and a rebuilt transcript never holds more than the limits allow
    if "max_messages" in limits:
        assert len(full.messages) <= limits["max_messages"]
