"""ConcurrencyLimiter and ControlOperations."""

from __future__ import annotations

import pytest

from agent_session_manager.core import AsmError, Capability, CapabilityType, ErrorCode
from agent_session_manager.runtime import ConcurrencyLimiter, ControlOperations
from agent_session_manager.testing import ScriptedAdapter

pytestmark = pytest.mark.anyio


def test_limiter_session_slots_are_idempotent_and_capped() -> None:
    limiter = ConcurrencyLimiter(max_parallel_sessions=2, max_parallel_runs=None)
    limiter.acquire_session_slot("a")
    limiter.acquire_session_slot("a")
    limiter.acquire_session_slot("b")
    with pytest.raises(AsmError) as info:
        limiter.acquire_session_slot("c")
    assert info.value.code is ErrorCode.MAX_SESSIONS_EXCEEDED
    assert info.value.message == "Maximum parallel sessions limit (2) exceeded. Currently active: 2"
    status = limiter.status()
    assert (status.active_sessions, status.available_session_slots) == (2, 0)
    assert status.available_run_slots is None
    limiter.release_session_slot("a")
    limiter.release_session_slot("never")
    limiter.acquire_session_slot("c")


def test_limiter_run_slots_global_idempotent_and_released_with_session() -> None:
    limiter = ConcurrencyLimiter(max_parallel_runs=2)
    limiter.acquire_run_slot("s1", "r1")
    limiter.acquire_run_slot("s1", "r1")
    limiter.acquire_run_slot("s2", "r2")
    with pytest.raises(AsmError) as info:
        limiter.acquire_run_slot("s3", "r3")
    assert info.value.code is ErrorCode.MAX_RUNS_EXCEEDED
    assert limiter.status().available_run_slots == 0
    limiter.release_session_slot("s1")  # releases r1 too
    limiter.acquire_run_slot("s3", "r3")
    limiter.release_run_slot("r2")
    limiter.release_run_slot("unknown")
    assert limiter.status().active_runs == 1
    assert limiter.limits().max_parallel_runs == 2
    assert limiter.limits().max_parallel_sessions == 100


def test_limiter_unlimited_and_validation() -> None:
    limiter = ConcurrencyLimiter(None, None)
    for i in range(500):
        limiter.acquire_run_slot("s", f"r{i}")
    assert limiter.status().available_run_slots is None
    for bad in (0, -1, True, 1.5):
        with pytest.raises(AsmError) as info:
            ConcurrencyLimiter(max_parallel_runs=bad)  # type: ignore[arg-type]
        assert info.value.code is ErrorCode.VALIDATION_ERROR


class PausableAdapter(ScriptedAdapter):
    """A ScriptedAdapter that advertises pause/resume and records calls."""

    def __init__(self, *, enabled: bool = True, fail_cancel: bool = False) -> None:
        super().__init__(
            capabilities=[
                Capability(name="pause", type=CapabilityType.TOOL, enabled=enabled),
                Capability(name="resume", type=CapabilityType.TOOL, enabled=enabled),
            ]
        )
        self.ops: list[tuple[str, str]] = []
        self.fail_cancel = fail_cancel

    async def pause(self, run_id: str) -> None:
        self.ops.append(("pause", run_id))

    async def resume(self, run_id: str) -> None:
        self.ops.append(("resume", run_id))

    async def cancel(self, run_id: str) -> None:
        if self.fail_cancel:
            raise AsmError(ErrorCode.PROVIDER_UNAVAILABLE, "gone")
        self.ops.append(("cancel", run_id))
        await super().cancel(run_id)


class InterruptingAdapter(ScriptedAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.interrupted: list[str] = []

    def interrupt(self, run_id: str) -> None:
        self.interrupted.append(run_id)


async def test_cancel_is_idempotent_and_recorded() -> None:
    adapter = PausableAdapter()
    ops = ControlOperations(adapter)
    ops.register_run("ses_1", "run_1")
    assert await ops.cancel("run_1") == "run_1"
    assert await ops.cancel("run_1") == "run_1"
    assert adapter.ops == [("cancel", "run_1")]
    status = ops.get_operation_status("run_1")
    assert status.state == "cancelled"
    assert [(h.operation, h.result) for h in status.history] == [("cancel", "ok"), ("cancel", "noop")]


async def test_interrupt_uses_adapter_interrupt_when_available_else_cancel() -> None:
    adapter = InterruptingAdapter()
    ops = ControlOperations(adapter)
    await ops.interrupt("run_1")
    await ops.interrupt("run_1")
    assert adapter.interrupted == ["run_1"]
    assert adapter.cancelled == []
    plain = ScriptedAdapter()
    ops2 = ControlOperations(plain)
    await ops2.interrupt("run_2")
    assert plain.cancelled == ["run_2"]
    assert ops2.get_operation_status("run_2").state == "interrupted"


async def test_adapter_error_is_raised_recorded_and_state_kept() -> None:
    ops = ControlOperations(PausableAdapter(fail_cancel=True))
    ops.register_run("s", "r")
    with pytest.raises(AsmError) as info:
        await ops.cancel("r")
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    status = ops.get_operation_status("r")
    assert status.state == "running"
    assert status.history[-1].result == "provider_unavailable"


async def test_non_asm_adapter_error_becomes_provider_error() -> None:
    class Broken(ScriptedAdapter):
        async def cancel(self, run_id: str) -> None:
            raise RuntimeError("nope")

    ops = ControlOperations(Broken())
    with pytest.raises(AsmError) as info:
        await ops.cancel("r")
    assert info.value.code is ErrorCode.PROVIDER_ERROR


async def test_pause_resume_gated_on_capability() -> None:
    ops = ControlOperations(ScriptedAdapter())
    with pytest.raises(AsmError) as info:
        await ops.pause("r")
    assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED
    assert info.value.message == "Capability 'pause' not supported by adapter"
    disabled = ControlOperations(PausableAdapter(enabled=False))
    with pytest.raises(AsmError) as info:
        await disabled.resume("r")
    assert info.value.code is ErrorCode.CAPABILITY_NOT_SUPPORTED


async def test_capability_without_method_is_provider_error() -> None:
    adapter = ScriptedAdapter(capabilities=[Capability(name="pause", type=CapabilityType.TOOL)])
    with pytest.raises(AsmError) as info:
        await ControlOperations(adapter).pause("r")
    assert info.value.code is ErrorCode.PROVIDER_ERROR


async def test_pause_resume_flow_and_terminal_checks() -> None:
    adapter = PausableAdapter()
    ops = ControlOperations(adapter)
    ops.register_run("s", "r")
    await ops.pause("r")
    await ops.pause("r")  # already paused: no second call
    await ops.resume("r")
    await ops.resume("r")  # already running
    assert adapter.ops == [("pause", "r"), ("resume", "r")]
    ops.mark_finished("r", "completed")
    for op in (ops.resume, ops.pause):
        with pytest.raises(AsmError) as info:
            await op("r")
        assert info.value.code is ErrorCode.INVALID_OPERATION
    assert "terminal state: completed" in ops.get_operation_history("r")[-1].error.message  # type: ignore[union-attr]
    await ops.cancel("r")  # finished: nothing to stop
    assert ("cancel", "r") not in adapter.ops
    assert ops.is_terminal_state("cancelled")
    assert not ops.is_terminal_state("paused")
    ops.mark_finished("r", "running")  # not terminal: ignored
    assert ops.get_operation_status("r").state == "completed"


async def test_cancel_all_and_interrupt_session() -> None:
    adapter = PausableAdapter()
    ops = ControlOperations(adapter)
    for run_id in ("a", "b", "c"):
        ops.register_run("s1", run_id)
    ops.register_run("s2", "z")
    ops.mark_finished("c", "failed")
    result = await ops.interrupt_session("s1")
    assert result == {"a": None, "b": None}
    assert ops.registered_runs("s1") == ["a", "b", "c"]
    failing = ControlOperations(PausableAdapter(fail_cancel=True))
    out = await failing.cancel_all(["x", "y"])
    assert set(out) == {"x", "y"}
    assert all(isinstance(e, AsmError) and e.code is ErrorCode.PROVIDER_UNAVAILABLE for e in out.values())
    ok = await ops.cancel_all(["z"])
    assert ok == {"z": None}
    assert ops.get_operation_status("unknown").state == "unknown"
    assert ops.get_operation_history("unknown") == ()


async def test_tracking_is_bounded() -> None:
    ops = ControlOperations(ScriptedAdapter(), max_tracked_runs=2)
    for run_id in ("a", "b", "c"):
        ops.register_run("s", run_id)
    assert ops.registered_runs("s") == ["b", "c"]
    with pytest.raises(AsmError):
        ControlOperations(ScriptedAdapter(), max_tracked_runs=0)
