"""Helpers the provider adapters share: error classification, usage, env, binary lookup, base class."""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent_session_manager.core import AsmError, ErrorCode, PermissionMode, Session, TokenUsage
from agent_session_manager.providers import _claude_events
from agent_session_manager.providers._common import (
    classify_error_message,
    code_for_status,
    provider_session_entry,
    resume_id_for,
    token_usage_from,
)
from agent_session_manager.providers._subprocess import ProcessTransport, effective_env, resolve_binary
from agent_session_manager.providers.amp import AmpAdapter, amp_usage
from agent_session_manager.providers.claude import ClaudeAdapter
from agent_session_manager.providers.codex import CodexAdapter, codex_usage
from agent_session_manager.providers.codex import classify_error_message as codex_classify
from tests.providers.fakes import FAKE_CLI, fake_cli_argv, fake_env, write_transcript

# -- error classification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (None, None),
        (200, None),
        (400, None),
        (404, None),
        (418, None),
        (401, ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        (403, ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        (402, ErrorCode.PROVIDER_QUOTA_EXCEEDED),
        (408, ErrorCode.PROVIDER_TIMEOUT),
        (429, ErrorCode.PROVIDER_RATE_LIMITED),
        (500, ErrorCode.PROVIDER_UNAVAILABLE),
        (503, ErrorCode.PROVIDER_UNAVAILABLE),
        (529, ErrorCode.PROVIDER_UNAVAILABLE),
    ],
)
def test_code_for_status(status: int | None, code: ErrorCode | None) -> None:
    assert code_for_status(status) is code


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            "unexpected status 401 Unauthorized: Incorrect API key provided",
            ErrorCode.PROVIDER_AUTHENTICATION_FAILED,
        ),
        ("HTTP 403 Forbidden", ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        ("invalid_api_key", ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        ("Not logged in. Run codex login", ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        ("No API key found", ErrorCode.PROVIDER_AUTHENTICATION_FAILED),
        # quota wins over the 429 it arrives with: retrying cannot help
        ("429 Too Many Requests: You exceeded your current quota", ErrorCode.PROVIDER_QUOTA_EXCEEDED),
        ("insufficient_credits", ErrorCode.PROVIDER_QUOTA_EXCEEDED),
        ("check your billing details", ErrorCode.PROVIDER_QUOTA_EXCEEDED),
        ("exceeded retry limit, last status: 429", ErrorCode.PROVIDER_RATE_LIMITED),
        ("Rate limit reached for gpt-5", ErrorCode.PROVIDER_RATE_LIMITED),
        ("too many requests", ErrorCode.PROVIDER_RATE_LIMITED),
        ("unexpected status 500 Internal Server Error", ErrorCode.PROVIDER_UNAVAILABLE),
        ("503 Service Unavailable", ErrorCode.PROVIDER_UNAVAILABLE),
        ("Overloaded", ErrorCode.PROVIDER_UNAVAILABLE),
        ("We're currently experiencing high demand", ErrorCode.PROVIDER_UNAVAILABLE),
        ("Reconnecting... 2/5", ErrorCode.PROVIDER_UNAVAILABLE),
        ("stream disconnected before completion", ErrorCode.PROVIDER_UNAVAILABLE),
        ("Error: Couldn't connect to the Amp server", ErrorCode.PROVIDER_UNAVAILABLE),
        ("connection refused", ErrorCode.PROVIDER_UNAVAILABLE),
        ("the model produced an invalid tool call", ErrorCode.PROVIDER_ERROR),
        ("", ErrorCode.PROVIDER_ERROR),
        # digits inside longer numbers are not statuses
        ("request id 14290 failed", ErrorCode.PROVIDER_ERROR),
    ],
)
def test_classify_error_message(message: str, code: ErrorCode) -> None:
    assert classify_error_message(message) is code


def test_old_import_locations_still_work() -> None:
    assert codex_classify is classify_error_message
    assert _claude_events.code_for_status is code_for_status


# -- usage -----------------------------------------------------------------------------------


def test_token_usage_from_anthropic_fields() -> None:
    raw = {
        "input_tokens": 10,
        "output_tokens": 5.9,
        "cache_read_input_tokens": 3,
        "cache_creation_input_tokens": 2,
        "cached_input_tokens": 99,
    }
    assert token_usage_from(raw) == TokenUsage(
        input_tokens=10, output_tokens=5, cache_read_tokens=3, cache_creation_tokens=2
    )
    assert amp_usage(raw) == token_usage_from(raw)
    assert _claude_events.usage_from_result(raw) == token_usage_from(raw)


def test_token_usage_from_custom_cache_keys_and_codex() -> None:
    raw = {"input_tokens": 7, "output_tokens": 1, "cached_input_tokens": 4, "cache_write_input_tokens": 2}
    expected = TokenUsage(input_tokens=7, output_tokens=1, cache_read_tokens=4, cache_creation_tokens=2)
    assert token_usage_from(
        raw, cache_read_key="cached_input_tokens", cache_creation_key="cache_write_input_tokens"
    ) == (expected)
    assert codex_usage(raw) == expected


@pytest.mark.parametrize("raw", [None, {}, "garbage", [1, 2], {"input_tokens": -3, "output_tokens": "9"}])
def test_token_usage_from_junk_is_zero(raw: Any) -> None:
    assert token_usage_from(raw) == TokenUsage()


# -- provider sessions -----------------------------------------------------------------------


def test_provider_session_entry_and_resume_id() -> None:
    session = Session(
        agent_id="a",
        metadata={
            "provider_sessions": {"codex": {"provider_session_id": "th-1", "usage_total": {}}, "amp": "x"}
        },
    )
    assert provider_session_entry(session, "codex") == {"provider_session_id": "th-1", "usage_total": {}}
    assert provider_session_entry(session, "amp") is None
    assert provider_session_entry(session, "claude") is None
    assert resume_id_for(session, "codex") == "th-1"
    assert resume_id_for(session, "amp") is None
    assert provider_session_entry(Session(agent_id="a", metadata={"provider_sessions": []}), "codex") is None
    empty = Session(agent_id="a", metadata={"provider_sessions": {"codex": {"provider_session_id": ""}}})
    assert resume_id_for(empty, "codex") is None


# -- environment and binary lookup -----------------------------------------------------------


def test_effective_env_applies_and_removes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASM_TEST_KEEP", "1")
    monkeypatch.setenv("ASM_TEST_DROP", "1")
    env = effective_env({"ASM_TEST_DROP": None, "ASM_TEST_NEW": 5, "ASM_TEST_ABSENT": None})
    assert env["ASM_TEST_KEEP"] == "1"
    assert "ASM_TEST_DROP" not in env
    assert env["ASM_TEST_NEW"] == "5"
    assert effective_env({"A": "b"}, inherit=False) == {"A": "b"}
    assert effective_env(None) == dict(os.environ)


def test_resolve_binary_tries_env_vars_in_order(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "SECOND": FAKE_CLI}
    assert resolve_binary("nonexistent-cli-xyz", env_var=("FIRST", "SECOND"), env=env) == FAKE_CLI
    with pytest.raises(AsmError) as info:
        resolve_binary("nonexistent-cli-xyz", env_var=("FIRST", "SECOND"), env={**env, "FIRST": "/nope/x"})
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "(from FIRST)" in info.value.message
    assert info.value.details["env_var"] == "FIRST"
    with pytest.raises(AsmError) as info:
        resolve_binary("nonexistent-cli-xyz", env_var=("FIRST", "SECOND"), env={"PATH": str(tmp_path)})
    assert info.value.details["env_var"] == "FIRST"
    assert "not found on PATH" in info.value.message


@pytest.mark.parametrize("var", ["ASM_AMP_CLI", "AMP_CLI_PATH"])
def test_amp_binary_from_either_env_var(tmp_path: Path, var: str) -> None:
    exe = tmp_path / "my-amp"
    shutil.copy(FAKE_CLI, exe)
    os.chmod(exe, 0o755)
    AmpAdapter(env={"PATH": str(tmp_path / "empty"), "AMP_API_KEY": "k", var: str(exe)}).validate_config()
    with pytest.raises(AsmError) as info:
        AmpAdapter(env={"AMP_API_KEY": "k", var: str(tmp_path / "missing")}).validate_config()
    assert info.value.code == ErrorCode.PROVIDER_UNAVAILABLE
    assert "npm install -g @sourcegraph/amp" in info.value.message


@pytest.mark.anyio
async def test_objects_on_noise_sees_non_json_lines_and_can_stop(tmp_path: Path) -> None:
    path = write_transcript(tmp_path / "t.jsonl", ["banner", "", '{"a": 1}', "[1]", "STOP here", '{"b": 2}'])
    seen: list[str] = []

    def on_noise(line: str) -> None:
        seen.append(line)
        if line.startswith("STOP"):
            raise AsmError(ErrorCode.PROVIDER_AUTHENTICATION_FAILED, "stopped")

    objs: list[dict[str, Any]] = []

    async def consume(proc: ProcessTransport) -> None:
        async for obj in proc.objects(on_noise=on_noise):
            objs.append(obj)

    async with ProcessTransport(fake_cli_argv(), env=fake_env(transcript=path), timeout=30) as proc:
        with pytest.raises(AsmError) as info:
            await consume(proc)
    assert info.value.code == ErrorCode.PROVIDER_AUTHENTICATION_FAILED
    assert objs == [{"a": 1}]
    assert seen == ["banner", "[1]", "STOP here"]  # blank lines are not noise
    assert proc.noise_lines == 2  # the raising line is not counted


# -- the JSONL CLI base (through the two adapters) -------------------------------------------


def test_options_merge_mappings_keep_defaults_and_allow_no_timeout() -> None:
    codex = CodexAdapter(env={"A": "1"}, config={"x": 1}, model="m", timeout=5.0)
    o = codex._options({"env": {"B": "2"}, "config": {"y": 2}, "model": None, "timeout": None, "new": 1})
    assert o["env"] == {"A": "1", "B": "2"}
    assert o["config"] == {"x": 1, "y": 2}
    assert o["model"] == "m"  # None per run keeps the default
    assert o["timeout"] is None  # ...except for timeout, where None disables the deadline
    assert o["new"] == 1
    amp = AmpAdapter(env={"A": "1"}, settings_file="s.json")
    o = amp._options({"env": {"B": "2"}, "permission_mode": "full_auto"})
    assert o["env"] == {"A": "1", "B": "2"}
    assert o["settings_file"] == "s.json"
    assert o["permission_mode"] is PermissionMode.FULL_AUTO
    # amp merges only env: another mapping option replaces the default
    assert AmpAdapter(extra={"a": 1})._options({"extra": {"b": 2}})["extra"] == {"b": 2}


@pytest.mark.parametrize("adapter_cls", [CodexAdapter, AmpAdapter])
def test_bad_permission_mode_is_a_validation_error(
    adapter_cls: type[CodexAdapter] | type[AmpAdapter],
) -> None:
    with pytest.raises(AsmError) as info:
        adapter_cls(permission_mode="yolo")
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    with pytest.raises(AsmError) as info:
        adapter_cls()._options({"permission_mode": "yolo"})
    assert info.value.code == ErrorCode.VALIDATION_ERROR


def test_shared_capabilities() -> None:
    names = ["streaming", "tool_use", "interrupt", "mcp", "file_operations", "bash"]
    assert [c.name for c in CodexAdapter().capabilities()] == names
    assert [c.name for c in AmpAdapter().capabilities()] == names


@pytest.mark.anyio
async def test_cancel_of_unknown_run_is_a_no_op() -> None:
    await CodexAdapter().cancel("nope")
    await AmpAdapter().cancel("nope")


# -- the common option set of the agent adapters ------------------------------------------------

COMMON_OPTIONS = (
    "model",
    "permission_mode",
    "max_turns",
    "system_prompt",
    "cwd",
    "env",
    "cli_path",
    "timeout",
)


@pytest.mark.parametrize("adapter_cls", [ClaudeAdapter, CodexAdapter, AmpAdapter])
def test_agent_adapters_accept_the_common_options(adapter_cls: type[Any]) -> None:
    params = inspect.signature(adapter_cls.__init__).parameters
    for name in COMMON_OPTIONS:
        # an explicit keyword, not swallowed by a **kwargs catch-all
        assert name in params, f"{adapter_cls.__name__} lacks {name}"
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is not inspect.Parameter.empty
    assert {"extra_args", "sdk_opts"} & set(params), f"{adapter_cls.__name__} lacks extra_args/sdk_opts"
    # and each is accepted with a value (none is merely swallowed and rejected later)
    adapter = adapter_cls(
        model="high" if adapter_cls is AmpAdapter else "some-model",
        permission_mode="plan",
        max_turns=3,
        system_prompt="Be brief.",
        cwd="/tmp",
        env={"X": "1"},
        cli_path="/bin/true",
        timeout=30.0,
    )
    assert adapter.name in ("claude", "codex", "amp")
