from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_session_manager.core import (
    AsmError,
    ErrorCode,
    Event,
    EventType,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    TokenUsage,
    ValidationError,
    new_id,
    utc_now,
)

HEX32 = re.compile(r"[0-9a-f]{32}")


def _validation_error(fn: Any, *args: Any, **kwargs: Any) -> AsmError:
    with pytest.raises(AsmError) as info:
        fn(*args, **kwargs)
    assert info.value.code is ErrorCode.VALIDATION_ERROR
    assert isinstance(info.value, ValidationError)
    assert not isinstance(info.value, pydantic.ValidationError)
    return info.value


# --- ids and time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "prefix"),
    [
        (lambda: Session(agent_id="a").id, "ses_"),
        (lambda: Run(session_id="ses_1").id, "run_"),
        (lambda: Event(type="run_started", session_id="ses_1").id, "evt_"),
    ],
)
def test_id_prefixes(factory: Any, prefix: str) -> None:
    ids = {factory() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert value.startswith(prefix)
        assert HEX32.fullmatch(value[len(prefix) :])


def test_new_id_and_utc_now() -> None:
    assert new_id("x").startswith("x_")
    now = utc_now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("agent_id", ["", " ", "\t\n"])
def test_blank_agent_id_is_a_typed_validation_error(agent_id: str) -> None:
    err = _validation_error(Session, agent_id=agent_id)
    assert "agent_id" in str(err)
    assert err.details["model"] == "Session"


def test_missing_agent_id() -> None:
    err = _validation_error(Session)
    assert err.details["errors"][0]["loc"] == "agent_id"


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (Session, {"agent_id": "a", "status": "sleeping"}),
        (Session, {"agent_id": "a", "status": 3}),
        (Session, {"agent_id": 5}),
        (Session, {"agent_id": "a", "tags": "not-a-list"}),
        (Session, {"agent_id": "a", "created_at": datetime(2024, 1, 1)}),  # naive
        (Session, {"agent_id": "a", "unknown_field": 1}),
        (Session, {"agent_id": "a", "id": " "}),
        (Run, {"session_id": ""}),
        (Run, {"session_id": "  "}),
        (Run, {"session_id": "s", "status": "paused"}),
        (Run, {"session_id": "s", "turn_count": -1}),
        (Run, {"session_id": "s", "cost_usd": -0.01}),
        (Event, {"type": "no_such_type", "session_id": "s"}),
        (Event, {"type": "run_started", "session_id": ""}),
        (Event, {"type": "run_started", "session_id": "s", "sequence_number": 0}),
        (Event, {"type": "run_started", "session_id": "s", "timestamp": datetime(2024, 1, 1)}),
        (Event, {"type": "run_started", "session_id": "s", "data": [1, 2]}),
        (TokenUsage, {"input_tokens": -1}),
        (TokenUsage, {"output_tokens": "many"}),
    ],
)
def test_bad_fields_raise_validation_error(cls: Any, kwargs: dict[str, Any]) -> None:
    _validation_error(cls, **kwargs)


def test_model_validate_and_json_raise_typed_errors() -> None:
    _validation_error(Session.model_validate, {"agent_id": ""})
    _validation_error(Event.model_validate_json, '{"type": "nope", "session_id": "s"}')
    _validation_error(Run.model_validate_json, "{not json")


def test_string_enums_are_coerced() -> None:
    assert Session(agent_id="a", status="active").status is SessionStatus.ACTIVE
    assert Run(session_id="s", status="timeout").status is RunStatus.TIMEOUT
    assert Event(type="tool_call_started", session_id="s").type is EventType.TOOL_CALL_STARTED


def test_enum_members_are_upper_case_of_values() -> None:
    for enum in (SessionStatus, RunStatus, EventType):
        for member in enum:
            assert member.name == member.value.upper()
    assert EventType.RUN_STARTED == "run_started"


def test_event_types_cover_the_anchor_and_approvals() -> None:
    anchor = {
        "session_created", "session_started", "session_paused", "session_resumed", "session_completed",
        "session_failed", "session_cancelled", "run_started", "run_completed", "run_failed", "run_cancelled",
        "run_timeout", "message_sent", "message_received", "message_streamed", "tool_call_started",
        "tool_call_completed", "tool_call_failed", "error_occurred", "error_recovered", "token_usage_updated",
        "turn_completed", "workspace_snapshot_taken", "workspace_diff_computed", "policy_violation",
    }  # fmt: skip
    approvals = {"tool_approval_requested", "tool_approval_granted", "tool_approval_denied"}
    assert anchor | approvals <= {t.value for t in EventType}
    assert {t for t in EventType if t.is_terminal_run_event} == {
        EventType.RUN_COMPLETED,
        EventType.RUN_FAILED,
        EventType.RUN_CANCELLED,
        EventType.RUN_TIMEOUT,
    }


# --- immutability ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (Session(agent_id="a"), "agent_id", "b"),
        (Session(agent_id="a"), "status", SessionStatus.ACTIVE),
        (Run(session_id="s"), "status", RunStatus.RUNNING),
        (Event(type="run_started", session_id="s"), "sequence_number", 5),
        (TokenUsage(input_tokens=1), "input_tokens", 2),
    ],
)
def test_models_are_frozen(model: Any, field: str, value: Any) -> None:
    before = getattr(model, field)
    with pytest.raises(AsmError):
        setattr(model, field, value)
    assert getattr(model, field) == before


def test_models_are_hashable_when_fields_are() -> None:
    usage = TokenUsage(input_tokens=1)
    assert hash(usage) == hash(TokenUsage(input_tokens=1))


def test_with_helpers_return_new_objects() -> None:
    session = Session(agent_id="a", metadata={"x": 1})
    updated = session.with_metadata(y=2)
    assert updated.metadata == {"x": 1, "y": 2}
    assert session.metadata == {"x": 1}
    run = Run(session_id="s", metadata={"a": 1})
    assert run.with_metadata(a=2).metadata == {"a": 2}
    assert run.metadata == {"a": 1}
    event = Event(type="run_started", session_id="s")
    numbered = event.with_sequence(7)
    assert numbered.sequence_number == 7
    assert event.sequence_number is None
    assert numbered.id == event.id


# --- JSON round trips --------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
aware_datetimes = st.builds(
    lambda dt, minutes: dt.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(min_value=-23 * 60, max_value=23 * 60),
)
nonblank = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
counts = st.integers(min_value=0, max_value=10**12)
usages = st.builds(TokenUsage, input_tokens=counts, output_tokens=counts, cache_read_tokens=counts,
                   cache_creation_tokens=counts)  # fmt: skip

sessions = st.builds(
    Session,
    agent_id=nonblank,
    status=st.sampled_from(list(SessionStatus)),
    context=json_objects,
    metadata=json_objects,
    tags=st.lists(st.text(max_size=10), max_size=4),
    parent_session_id=st.none() | nonblank,
    created_at=aware_datetimes,
    updated_at=aware_datetimes,
)
runs = st.builds(
    Run,
    session_id=nonblank,
    status=st.sampled_from(list(RunStatus)),
    input=json_objects,
    output=st.none() | json_objects,
    error=st.none() | json_objects,
    token_usage=usages,
    turn_count=st.integers(min_value=0, max_value=1000),
    cost_usd=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    metadata=json_objects,
    created_at=aware_datetimes,
    started_at=st.none() | aware_datetimes,
    ended_at=st.none() | aware_datetimes,
)
events = st.builds(
    Event,
    type=st.sampled_from(list(EventType)),
    session_id=nonblank,
    run_id=st.none() | nonblank,
    sequence_number=st.none() | st.integers(min_value=1, max_value=2**62),
    timestamp=aware_datetimes,
    data=json_objects,
    metadata=json_objects,
    provider=st.none() | st.sampled_from(["claude", "codex", "amp"]),
)


def _round_trips(model: Any) -> None:
    cls = type(model)
    dumped = model.model_dump(mode="json")
    assert cls.model_validate(dumped) == model
    assert cls.model_validate_json(model.model_dump_json()) == model


@settings(max_examples=60, deadline=None)
@given(sessions)
def test_session_json_round_trip(session: Session) -> None:
    _round_trips(session)


@settings(max_examples=60, deadline=None)
@given(runs)
def test_run_json_round_trip(run: Run) -> None:
    _round_trips(run)


@settings(max_examples=60, deadline=None)
@given(events)
def test_event_json_round_trip(event: Event) -> None:
    _round_trips(event)


@settings(max_examples=60, deadline=None)
@given(usages)
def test_token_usage_json_round_trip(usage: TokenUsage) -> None:
    _round_trips(usage)
    assert usage.model_dump()["total_tokens"] == usage.input_tokens + usage.output_tokens


def test_json_dump_shape() -> None:
    ts = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    event = Event(type=EventType.MESSAGE_SENT, session_id="ses_1", timestamp=ts, data={"content": "hé 🙂"})
    dumped = event.model_dump(mode="json")
    assert dumped["type"] == "message_sent"
    assert dumped["data"] == {"content": "hé 🙂"}
    assert datetime.fromisoformat(dumped["timestamp"]) == ts
    assert set(dumped) == {
        "id", "type", "session_id", "run_id", "sequence_number", "timestamp", "data", "metadata", "provider",
    }  # fmt: skip


# --- TokenUsage arithmetic --------------------------------------------------------------------


def test_token_usage_total_add_sub() -> None:
    a = TokenUsage(input_tokens=10, output_tokens=5, cache_read_tokens=3, cache_creation_tokens=1)
    b = TokenUsage(input_tokens=1, output_tokens=2, cache_read_tokens=4, cache_creation_tokens=8)
    assert a.total_tokens == 15
    assert a + b == TokenUsage(input_tokens=11, output_tokens=7, cache_read_tokens=7, cache_creation_tokens=9)
    assert (a + b).total_tokens == 18
    assert a - b == TokenUsage(input_tokens=9, output_tokens=3, cache_read_tokens=0, cache_creation_tokens=0)
    assert TokenUsage() + TokenUsage() == TokenUsage()
    assert TokenUsage().total_tokens == 0


def test_token_usage_ignores_supplied_total() -> None:
    usage = TokenUsage.model_validate({"input_tokens": 2, "output_tokens": 3, "total_tokens": 999})
    assert usage.total_tokens == 5


def test_token_usage_arithmetic_with_other_types() -> None:
    with pytest.raises(TypeError):
        TokenUsage() + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        TokenUsage() - {"input_tokens": 1}  # type: ignore[operator]


@settings(max_examples=100, deadline=None)
@given(usages, usages)
def test_token_usage_properties(a: TokenUsage, b: TokenUsage) -> None:
    assert a + b == b + a
    assert (a + b).total_tokens == a.total_tokens + b.total_tokens
    assert (a + b) - b == a
    diff = a - b
    for field in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens"):
        assert getattr(diff, field) == max(0, getattr(a, field) - getattr(b, field))
    assert sum([a, b], TokenUsage()) == a + b
