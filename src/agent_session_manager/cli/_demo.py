"""``asm demo``: a full multi-run session against the scripted provider, shown live."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core import AsmError, ErrorCode, EventType, RunStatus, TokenUsage
from ..manager import SessionManager
from ..ports import SessionStore
from ..rendering import EventRenderer
from ..testing.scripted import Script, ScriptedAdapter, Step, text_script

__all__ = ("demo_scripts", "run_demo")

_PROMPTS = (
    "List the files in this project and tell me what it does.",
    "Add a docstring to the main module.",
    "Run the tests.",
    "Summarize what changed in this session.",
)


def _tool_script(delay: float) -> Script:
    usage = TokenUsage(input_tokens=410, output_tokens=96, cache_read_tokens=128)
    answer = "The project is a Python library; its entry point is src/app/__init__.py."
    base = text_script(answer, chunks=6, usage=usage, delay=delay, session_id="demo-thread-1")
    call = {"tool_call_id": "toolu_01", "tool_name": "bash", "tool_input": {"command": "ls"}}
    steps = [
        base.steps[0],
        Step(EventType.TOOL_CALL_STARTED, call, delay),
        Step(EventType.TOOL_CALL_COMPLETED, {**call, "tool_output": "README.md\nsrc\ntests"}, delay),
        *base.steps[1:],
    ]
    assert base.result is not None
    result = base.result.model_copy(
        update={"output": {**base.result.output, "tool_calls": [call]}, "cost_usd": 0.0031}
    )
    return Script(steps=steps, result=result)


def _failing_script(delay: float) -> Script:
    return Script(
        steps=[
            Step(EventType.RUN_STARTED, {"provider_session_id": "demo-thread-1", "model": "scripted-1"}),
            Step(EventType.MESSAGE_STREAMED, {"delta": "Running the test suite", "content": "…"}, delay),
            Step(
                EventType.ERROR_OCCURRED,
                {"error_code": "provider_rate_limited", "error_message": "429 from the model API"},
                delay,
            ),
        ],
        error=AsmError(ErrorCode.PROVIDER_RATE_LIMITED, "model API rate limit (429); retry later"),
    )


def demo_scripts(runs: int, delay: float) -> list[Script]:
    """The demo's scripts: a tool-using answer, a plain answer, a failure, then answers."""
    scripts = [
        _tool_script(delay),
        text_script("Added a module docstring describing the public API.", chunks=5, delay=delay),
        _failing_script(delay),
    ]
    while len(scripts) < runs:
        scripts.append(text_script("Three runs: one tool call, one edit, one rate-limited.", delay=delay))
    return scripts[:runs]


async def run_demo(store: SessionStore, console: Console, *, runs: int = 3, delay: float = 0.03) -> str:
    """Run the demo session on ``store``; returns the session id."""
    adapter = ScriptedAdapter(demo_scripts(runs, delay))
    manager = SessionManager(store, adapter)
    renderer = EventRenderer(console)
    session = await manager.start_session(
        "demo-agent", context={"system_prompt": "Be concise."}, tags=["demo"]
    )
    await manager.activate_session(session.id)
    console.rule(f"session {session.id}")
    for event in await manager.get_session_events(session.id):
        renderer(event)
    for index in range(runs):
        prompt = _PROMPTS[index % len(_PROMPTS)]
        run = await manager.start_run(session.id, prompt)
        console.rule(f"run {index + 1}/{runs}  {run.id}", style="dim")
        try:
            await manager.execute_run(run.id, on_event=renderer, continuation="auto" if index else None)
        except AsmError as exc:
            renderer.close_stream()
            console.print(f"[red]run failed:[/] {escape(str(exc))}")
    cursor = await store.get_latest_sequence(session.id)
    completed = await manager.complete_session(session.id)
    for event in await manager.get_session_events(session.id, after=cursor):
        renderer(event)
    console.rule()
    await _summary(store, console, completed.id)
    return session.id


async def _summary(store: SessionStore, console: Console, session_id: str) -> None:
    runs = await store.list_runs(session_id)
    table = Table("run", "status", "input tok", "output tok", "cost $", "events", title="Summary")
    total = TokenUsage()
    for run in runs:
        n = len(await store.get_events(session_id, run_id=run.id))
        total = total + run.token_usage
        style = "green" if run.status is RunStatus.COMPLETED else "red"
        table.add_row(
            run.id,
            f"[{style}]{run.status.value}[/]",
            str(run.token_usage.input_tokens),
            str(run.token_usage.output_tokens),
            f"{run.cost_usd:.4f}" if run.cost_usd is not None else "-",
            str(n),
        )
    console.print(table)
    events = await store.get_latest_sequence(session_id)
    console.print(
        f"[bold]{len(runs)} runs[/], [bold]{total.total_tokens} tokens[/] "
        f"(in {total.input_tokens}, out {total.output_tokens}), "
        f"[bold]{events} events[/] in session {session_id}"
    )
    console.print(f"[dim]replay it: asm events {session_id}[/]")
