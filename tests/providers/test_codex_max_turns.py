"""CodexAdapter ``max_turns``: turn counting (pure mapper) and enforcement against the fake CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent_session_manager.core import AsmError, ErrorCode, EventType
from agent_session_manager.providers.codex import CodexAdapter, CodexStreamMapper
from tests.providers.fakes import FAKE_CLI, fake_env, pid_gone
from tests.providers.test_codex_adapter import Collector, _adapter, _pid, _session_run

FIXTURES = Path(__file__).parent / "fixtures" / "codex"
MULTI = "codex_exec_json_multi_tool.jsonl"  # 4 turns: ls | cat README | write notes.txt | answer


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines()]


def _limited(tmp_path: Path, max_turns: int, **fake: Any) -> tuple[CodexAdapter, Path]:
    """An adapter with a constructor ``max_turns`` replaying MULTI."""
    pid_file = tmp_path / "pid"
    env = fake_env(transcript=FIXTURES / MULTI, pid_file=pid_file, **fake)
    return CodexAdapter(cli_path=FAKE_CLI, env=env, timeout=20, max_turns=max_turns), pid_file


def _item(phase: str, item_id: str, itype: str, **fields: Any) -> dict[str, Any]:
    return {"type": phase, "item": {"id": item_id, "type": itype, **fields}}


# -- counting (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "turns"),
    [
        ("codex_exec_json_text.jsonl", 1),
        ("real_tool.jsonl", 2),  # the leading warning item is not model output
        # reasoning+ls | file change | answer: the 3 model calls its usage (3 x 2810) shows
        ("codex_exec_json_command.jsonl", 3),
        (MULTI, 4),
    ],
)
def test_turns_are_model_rounds(name: str, turns: int) -> None:
    mapper = CodexStreamMapper()
    for obj in _lines(name):
        mapper.feed(obj)
    assert mapper.turns == turns
    assert mapper.limit is None


def test_parallel_tool_calls_stay_in_one_turn() -> None:
    mapper = CodexStreamMapper()
    for obj in [
        _item("item.started", "item_0", "command_execution", command="a", status="in_progress"),
        _item("item.started", "item_1", "command_execution", command="b", status="in_progress"),
        _item("item.completed", "item_0", "command_execution", command="a", status="completed"),
        _item("item.updated", "item_1", "command_execution", command="b", status="in_progress"),
        _item("item.completed", "item_1", "command_execution", command="b", status="completed"),
        _item("item.completed", "item_2", "error", message="warning"),  # not model output
    ]:
        mapper.feed(obj)
    assert mapper.turns == 1
    mapper.feed(_item("item.completed", "item_3", "agent_message", text="done"))
    assert mapper.turns == 2


def test_limit_drops_the_item_that_starts_the_excess_turn_and_all_after_it() -> None:
    mapper = CodexStreamMapper(max_turns=2)
    types: list[EventType] = []
    for obj in _lines(MULTI):
        types += [e.type for e in mapper.feed(obj)]
    assert mapper.limit is not None
    assert mapper.limit.code == ErrorCode.PROVIDER_ERROR
    assert mapper.limit.details["reason"] == "max_turns"
    assert mapper.limit.details["max_turns"] == 2
    assert mapper.limit.details["num_turns"] == 3
    assert mapper.limit.details["item_id"] == "item_4"
    # turn 2's tools ran; turn 3's reasoning, the file change, the answer and the usage are dropped
    assert types.count(EventType.TOOL_CALL_COMPLETED) == 2
    assert EventType.MESSAGE_STREAMED in types  # turn 1's reasoning
    assert types.count(EventType.MESSAGE_STREAMED) == 1
    assert EventType.TOKEN_USAGE_UPDATED not in types
    assert not mapper.completed


# -- enforcement (fake CLI) --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("stubborn", [False, True], ids=["sigint", "escalated"])
async def test_max_turns_stops_the_cli_and_raises(tmp_path: Path, stubborn: bool) -> None:
    # The fake hangs after the transcript: only the adapter stopping it ends the run.
    # Not stubborn: exits 1 on SIGINT like codex; stubborn: ignores SIGINT/SIGTERM (→ SIGKILL).
    signals: dict[str, Any] = (
        {"ignore_sigint": True, "ignore_sigterm": True} if stubborn else {"on_sigint": "{}", "sigint_code": 1}
    )
    adapter, pid_file = _adapter(tmp_path, MULTI, hang=True, **signals)
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
    assert err.details["thread_id"] == "01a20090-1b2c-7d3e-8f40-5a6b7c8d9e0f"
    assert err.details["exit_code"] == (-9 if stubborn else 1)
    assert pid_gone(_pid(pid_file))
    assert emit.types.count(EventType.TOOL_CALL_COMPLETED) == 2
    assert EventType.TOKEN_USAGE_UPDATED not in emit.types


@pytest.mark.anyio
async def test_constructor_limit_applies_and_a_run_can_override_it(tmp_path: Path) -> None:
    adapter, pid_file = _limited(tmp_path, 3, hang=True)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run))
    assert info.value.details["max_turns"] == 3
    assert info.value.details["num_turns"] == 4
    assert pid_gone(_pid(pid_file))
    # the limit lifted per run: the (non-hanging) replay completes
    adapter, pid_file = _limited(tmp_path, 1)
    result = await adapter.execute(run, session, Collector(session, run), max_turns=4)
    assert result.turn_count == 4
    assert result.output["content"] == "I listed the files, read the README and wrote `notes.txt`."
    assert pid_gone(_pid(pid_file))


@pytest.mark.anyio
@pytest.mark.parametrize("limit", [4, None])
async def test_under_the_limit_the_run_completes(tmp_path: Path, limit: int | None) -> None:
    adapter, pid_file = _adapter(tmp_path, MULTI)
    session, run = _session_run()
    emit = Collector(session, run)
    result = await adapter.execute(run, session, emit, max_turns=limit)
    assert result.turn_count == 4
    assert len(result.output["tool_calls"]) == 3
    assert emit.types[-1] == EventType.TOKEN_USAGE_UPDATED
    assert pid_gone(_pid(pid_file))


@pytest.mark.parametrize("bad", [0, -1, "3", 2.5, True])
def test_bad_max_turns_is_a_validation_error(bad: Any) -> None:
    with pytest.raises(AsmError) as info:
        CodexAdapter(max_turns=bad)
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    with pytest.raises(AsmError) as info:
        CodexAdapter()._options({"max_turns": bad})
    assert info.value.code == ErrorCode.VALIDATION_ERROR


@pytest.mark.anyio
async def test_bad_per_run_max_turns_fails_before_spawning(tmp_path: Path) -> None:
    adapter, pid_file = _adapter(tmp_path, MULTI)
    session, run = _session_run()
    with pytest.raises(AsmError) as info:
        await adapter.execute(run, session, Collector(session, run), max_turns=0)
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    assert not pid_file.exists()
