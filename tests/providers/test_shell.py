"""ShellAdapter: events, result, allow/deny, exit codes, timeout, output cap, cancel, no orphans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType, Run, RunStatus, Session
from agent_session_manager.manager import SessionManager
from agent_session_manager.ports import ProviderEvent
from agent_session_manager.providers import ShellAdapter
from agent_session_manager.providers.shell import command_segments
from agent_session_manager.stores.memory import InMemorySessionStore
from tests.providers.fakes import pid_gone, wait_gone

pytestmark = pytest.mark.anyio


class Recorder:
    """An Emit that records the ProviderEvents and returns a stand-in persisted Event."""

    def __init__(self, session: Session, run: Run) -> None:
        self.session = session
        self.run = run
        self.events: list[ProviderEvent] = []
        self.streamed = anyio.Event()

    async def __call__(self, pe: ProviderEvent) -> Event:
        self.events.append(pe)
        if pe.type is EventType.MESSAGE_STREAMED:
            self.streamed.set()
        return Event(type=pe.type, session_id=self.session.id, run_id=self.run.id, data=pe.data)

    def of(self, type_: EventType) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.type is type_]

    def types(self) -> list[EventType]:
        return [e.type for e in self.events]


def make(run_input: dict[str, Any]) -> tuple[Session, Run, Recorder]:
    session = Session(agent_id="test")
    run = Run(session_id=session.id, input=run_input)
    return session, run, Recorder(session, run)


async def execute(adapter: ShellAdapter, run_input: dict[str, Any], **opts: Any) -> tuple[Any, Recorder]:
    session, run, rec = make(run_input)
    result = await adapter.execute(run, session, rec, **opts)
    return result, rec


async def test_string_command_streams_lines_and_returns_output(tmp_path: Path) -> None:
    adapter = ShellAdapter(cwd=tmp_path)
    result, rec = await execute(adapter, {"command": "echo one; echo two >&2; echo three; pwd"})
    assert result.output["content"] == f"one\nthree\n{tmp_path}\n"
    assert result.output["stderr"] == "two\n"
    assert result.output["exit_code"] == 0
    assert result.output["stop_reason"] == "exit"
    assert result.output["truncated"] is False
    streamed = rec.of(EventType.MESSAGE_STREAMED)
    stdout = [d for d in streamed if d["stream"] == "stdout"]
    assert [d["content"] for d in stdout] == ["one", "three", str(tmp_path)]
    assert "".join(d["delta"] for d in stdout) == result.output["content"]
    assert [d["delta"] for d in streamed if d["stream"] == "stderr"] == ["two\n"]

    types = rec.types()
    assert types[0] is EventType.RUN_STARTED
    assert types[1] is EventType.TOOL_CALL_STARTED
    assert types[-2:] == [EventType.TOOL_CALL_COMPLETED, EventType.MESSAGE_RECEIVED]
    started = rec.of(EventType.RUN_STARTED)[0]
    assert started["cwd"] == str(tmp_path)
    assert isinstance(started["pid"], int)
    assert pid_gone(started["pid"])
    call = rec.of(EventType.TOOL_CALL_STARTED)[0]
    done = rec.of(EventType.TOOL_CALL_COMPLETED)[0]
    assert call["tool_name"] == done["tool_name"] == "shell"
    assert call["tool_call_id"] == done["tool_call_id"]
    assert call["tool_input"]["command"].startswith("echo one")
    assert done["tool_output"]["exit_code"] == 0
    assert result.output["tool_calls"][0]["id"] == call["tool_call_id"]
    assert rec.of(EventType.MESSAGE_RECEIVED)[0]["content"] == result.output["content"]


async def test_argv_command_is_not_interpreted_by_a_shell() -> None:
    result, _ = await execute(ShellAdapter(), {"command": ["echo", "a; echo b", "$HOME"]})
    assert result.output["content"] == "a; echo b $HOME\n"


async def test_prompt_text_is_the_command() -> None:
    result, _ = await execute(ShellAdapter(), {"prompt": "echo from-prompt"})
    assert result.output["content"] == "from-prompt\n"


async def test_stdin_input_and_closed_stdin() -> None:
    result, _ = await execute(ShellAdapter(), {"command": "cat", "stdin": "fed\n"})
    assert result.output["content"] == "fed\n"
    # Without stdin data the command sees EOF at once (cat would otherwise block forever).
    result, _ = await execute(ShellAdapter(timeout=30), {"command": "cat; echo eof"})
    assert result.output["content"] == "eof\n"


async def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASM_SHELL_INHERITED", "yes")
    adapter = ShellAdapter(env={"ASM_SHELL_A": "ctor"})
    result, _ = await execute(
        adapter,
        {"command": 'echo "$ASM_SHELL_A $ASM_SHELL_B $ASM_SHELL_INHERITED"'},
        env={"ASM_SHELL_B": "run"},
    )
    assert result.output["content"] == "ctor run yes\n"


@pytest.mark.parametrize("bad", [{"command": ""}, {"command": []}, {"command": [1, 2]}, {"command": 5}, {}])
async def test_invalid_command_input(bad: dict[str, Any]) -> None:
    with pytest.raises(AsmError) as info:
        await execute(ShellAdapter(), bad)
    assert info.value.code is ErrorCode.INVALID_INPUT


# -- allow / deny ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "deny", "command"),
    [
        (["echo"], None, "echo hi; rm -rf /tmp/x"),
        (["echo"], None, "echo $(id)"),
        (["echo"], None, "echo `id`"),
        (["echo"], None, ["/bin/rm", "x"]),
        (None, ["rm"], "echo hi && rm -rf /tmp/x"),
        (None, ["rm -rf*"], "FOO=1 rm -rf /tmp/x"),
        (["git status*", "echo"], None, "git push"),
        (["rm", "echo"], ["rm"], "rm x"),  # deny wins
        ([], None, "echo hi"),  # empty allow list allows nothing
        (["echo"], None, "echo 'unbalanced"),  # unparseable + allow list: fail closed
    ],
)
async def test_denied_commands_are_refused_before_spawning(
    tmp_path: Path, allow: list[str] | None, deny: list[str] | None, command: str | list[str]
) -> None:
    marker = tmp_path / "ran"
    cmd: str | list[str] = f"{command}; touch {marker}" if isinstance(command, str) else command
    session, run, rec = make({"command": cmd})
    with pytest.raises(AsmError) as info:
        await ShellAdapter(allow=allow, deny=deny, cwd=tmp_path).execute(run, session, rec)
    assert info.value.code is ErrorCode.TOOL_PERMISSION_DENIED
    assert rec.events == []  # nothing started, nothing emitted
    assert not marker.exists()


@pytest.mark.parametrize(
    ("allow", "command"),
    [
        (["echo"], "echo hi | cat"),  # cat not allowed
    ],
)
async def test_every_pipeline_member_must_be_allowed(allow: list[str], command: str) -> None:
    with pytest.raises(AsmError) as info:
        await execute(ShellAdapter(allow=allow), {"command": command})
    assert info.value.code is ErrorCode.TOOL_PERMISSION_DENIED
    assert info.value.details["denied"] == "cat"


async def test_allowed_commands_run() -> None:
    adapter = ShellAdapter(allow=["echo", "cat", "git status*"], deny=["rm"])
    result, _ = await execute(adapter, {"command": "echo hi | cat > /dev/null 2>&1; echo ok"})
    assert result.output["content"] == "ok\n"
    result, _ = await execute(adapter, {"command": ["/bin/echo", "full path matches by basename"]})
    assert result.output["exit_code"] == 0


async def test_per_run_lists_only_add_restrictions() -> None:
    adapter = ShellAdapter(allow=["echo", "cat"])
    with pytest.raises(AsmError):
        await execute(adapter, {"command": "ls"}, allow=["ls"])  # cannot widen the ctor allow list
    with pytest.raises(AsmError):
        await execute(adapter, {"command": "cat /dev/null"}, allow=["echo"])  # narrows
    with pytest.raises(AsmError):
        await execute(adapter, {"command": "echo x"}, deny=["echo"])


def test_command_segments() -> None:
    assert command_segments("A=1 B=2 git status -s > out 2>&1") == [("git", "git status -s 2")]
    assert [n for n, _ in command_segments("a && b || c | d & e; (f)\ng")] == list("abcdefg")
    assert command_segments(["ls", "-l"]) == [("ls", "ls -l")]


# -- exit codes, timeout, output cap ----------------------------------------------------------


async def test_non_success_exit_is_tool_execution_failed() -> None:
    session, run, rec = make({"command": "echo out; echo 'bad token=abcdef123456' >&2; exit 3"})
    with pytest.raises(AsmError) as info:
        await ShellAdapter().execute(run, session, rec)
    err = info.value
    assert err.code is ErrorCode.TOOL_EXECUTION_FAILED
    assert err.details["exit_code"] == 3
    assert "bad token=[REDACTED]" in err.details["stderr_tail"]
    assert err.details["stdout_tail"] == "out\n"
    failed = rec.of(EventType.TOOL_CALL_FAILED)
    assert len(failed) == 1
    assert failed[0]["tool_output"]["exit_code"] == 3
    assert EventType.TOOL_CALL_COMPLETED not in rec.types()


async def test_success_exit_codes_option() -> None:
    result, _ = await execute(ShellAdapter(success_exit_codes={0, 1}), {"command": "exit 1"})
    assert result.output["exit_code"] == 1
    result, _ = await execute(ShellAdapter(), {"command": "exit 2"}, success_exit_codes=[2])
    assert result.output["exit_code"] == 2


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    session, run, rec = make({"command": "sleep 60 & echo $!; wait"})
    with pytest.raises(AsmError) as info:
        await ShellAdapter(timeout=1.0).execute(run, session, rec)
    assert info.value.code is ErrorCode.PROVIDER_TIMEOUT
    shell_pid = rec.of(EventType.RUN_STARTED)[0]["pid"]
    sleep_pid = int(rec.of(EventType.MESSAGE_STREAMED)[0]["content"])
    assert pid_gone(shell_pid)
    assert wait_gone(sleep_pid, allow_zombie=True)
    assert rec.of(EventType.TOOL_CALL_FAILED)[0]["error_code"] == "provider_timeout"


async def test_output_cap_truncates_and_keeps_draining() -> None:
    # 2000 lines of 10 bytes; cap 1000 bytes: capture stops, the command still completes.
    command = "i=0; while [ $i -lt 2000 ]; do echo 123456789; i=$((i+1)); done; echo done >&2"
    result, rec = await execute(ShellAdapter(max_output_bytes=1000), {"command": command})
    assert result.output["truncated"] is True
    assert result.output["exit_code"] == 0
    assert len(result.output["content"]) == 1000
    assert result.output["content"] == "123456789\n" * 100
    assert len(rec.of(EventType.MESSAGE_STREAMED)) == 100


async def test_long_line_without_newline_is_chunked() -> None:
    result, _ = await execute(ShellAdapter(), {"command": "head -c 200000 /dev/zero | tr '\\0' x"})
    assert result.output["content"].replace("\n", "") == "x" * 200_000


# -- cancellation ----------------------------------------------------------------------------


async def test_cancel_kills_shell_and_grandchild() -> None:
    adapter = ShellAdapter()
    session, run, rec = make({"command": "sleep 60 & echo $!; wait"})
    errors: list[AsmError] = []
    async with anyio.create_task_group() as tg:

        async def runner() -> None:
            try:
                await adapter.execute(run, session, rec)
            except AsmError as exc:
                errors.append(exc)

        tg.start_soon(runner)
        with anyio.fail_after(10):
            await rec.streamed.wait()
        await adapter.cancel(run.id)
    assert [e.code for e in errors] == [ErrorCode.CANCELLED]
    shell_pid = rec.of(EventType.RUN_STARTED)[0]["pid"]
    sleep_pid = int(rec.of(EventType.MESSAGE_STREAMED)[0]["content"])
    assert pid_gone(shell_pid)
    assert wait_gone(sleep_pid, allow_zombie=True)
    await adapter.cancel(run.id)  # finished run: no-op


async def test_task_cancellation_kills_the_group() -> None:
    adapter = ShellAdapter()
    session, run, rec = make({"command": "sleep 60 & echo $!; wait"})
    async with anyio.create_task_group() as tg:
        tg.start_soon(adapter.execute, run, session, rec)
        with anyio.fail_after(10):
            await rec.streamed.wait()
        tg.cancel_scope.cancel()
    shell_pid = rec.of(EventType.RUN_STARTED)[0]["pid"]
    sleep_pid = int(rec.of(EventType.MESSAGE_STREAMED)[0]["content"])
    assert pid_gone(shell_pid)
    assert wait_gone(sleep_pid, allow_zombie=True)


def test_capabilities_and_config() -> None:
    adapter = ShellAdapter()
    assert {c.type.value for c in adapter.capabilities()} == {"code_execution", "file_access"}
    assert adapter.name == "shell"
    adapter.validate_config()
    for bad in (
        ShellAdapter(shell="/nonexistent/sh"),
        ShellAdapter(timeout=0),
        ShellAdapter(max_output_bytes=0),
    ):
        with pytest.raises(AsmError):
            bad.validate_config()
    with pytest.raises(AsmError):
        ShellAdapter(allow="echo")  # type: ignore[arg-type]


# -- through the SessionManager -----------------------------------------------------------


async def test_run_once_through_session_manager() -> None:
    store = InMemorySessionStore()
    manager = SessionManager(store, ShellAdapter())
    result = await manager.run_once({"command": "echo hi"})
    assert result.output["content"] == "hi\n"
    types = [e.type for e in result.events]
    assert types[0] is EventType.RUN_STARTED
    terminal = {EventType.RUN_COMPLETED, EventType.RUN_FAILED, EventType.RUN_CANCELLED, EventType.RUN_TIMEOUT}
    assert [t for t in types if t in terminal] == [EventType.RUN_COMPLETED]
    assert types[-1] is EventType.RUN_COMPLETED
    seqs = [e.sequence_number for e in result.events]
    assert seqs == sorted(seqs)


async def test_failing_command_through_session_manager() -> None:
    store = InMemorySessionStore()
    manager = SessionManager(store, ShellAdapter())
    with pytest.raises(AsmError) as info:
        await manager.run_once({"command": "exit 4"})
    assert info.value.code is ErrorCode.TOOL_EXECUTION_FAILED
    runs = await manager.get_session_runs((await store.list_sessions())[0].id)
    assert runs[0].status is RunStatus.FAILED
    events = await manager.get_session_events(runs[0].session_id, run_id=runs[0].id)
    assert events[0].type is EventType.RUN_STARTED
    assert events[-1].type is EventType.RUN_FAILED
    assert [e.type for e in events].count(EventType.RUN_FAILED) == 1


async def test_cancel_run_through_session_manager() -> None:
    store = InMemorySessionStore()
    adapter = ShellAdapter()
    manager = SessionManager(store, adapter)
    session = await manager.activate_session((await manager.start_session(agent_id="a")).id)
    run = await manager.start_run(session.id, {"command": "sleep 60 & echo $!; wait"})
    seen: list[Event] = []
    ready = anyio.Event()

    async def on_event(event: Event) -> None:
        seen.append(event)
        if event.type is EventType.MESSAGE_STREAMED:
            ready.set()

    async with anyio.create_task_group() as tg:

        async def runner() -> None:
            with pytest.raises(AsmError) as info:
                await manager.execute_run(run.id, on_event=on_event)
            assert info.value.code is ErrorCode.CANCELLED

        tg.start_soon(runner)
        with anyio.fail_after(10):
            await ready.wait()
        await manager.cancel_run(run.id)
    final = await manager.get_run(run.id)
    assert final.status is RunStatus.CANCELLED
    events = await manager.get_session_events(session.id, run_id=run.id)
    assert [e.type for e in events].count(EventType.RUN_CANCELLED) == 1
    assert events[-1].type is EventType.RUN_CANCELLED
    sleep_pid = int(next(e for e in seen if e.type is EventType.MESSAGE_STREAMED).data["content"])
    assert wait_gone(sleep_pid, allow_zombie=True)
