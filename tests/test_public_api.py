"""Pins the public API names of DESIGN §3."""

from __future__ import annotations

import importlib

import agent_session_manager

ROOT_NAMES = {
    "SessionManager",
    "RunResult",
    "Session",
    "SessionStatus",
    "Run",
    "RunStatus",
    "Event",
    "EventType",
    "TokenUsage",
    "Capability",
    "Manifest",
    "AsmError",
    "ErrorCode",
    "InMemorySessionStore",
    "SQLiteSessionStore",
    "PostgresSessionStore",
    "open_store",
    "SessionServer",
    "SessionSupervisor",
    "ConcurrencyLimiter",
    "ControlOperations",
    "ProviderAdapter",
    "ProviderEvent",
    "ProviderResult",
}


def test_root_exports_the_design_names() -> None:
    missing = sorted(n for n in ROOT_NAMES if not hasattr(agent_session_manager, n))
    assert missing == []
    assert set(agent_session_manager.__all__) >= ROOT_NAMES


def test_all_is_a_tuple_of_importable_names() -> None:
    for module_name in (
        "agent_session_manager",
        "agent_session_manager.core",
        "agent_session_manager.ports",
        "agent_session_manager.stores",
        "agent_session_manager.providers",
        "agent_session_manager.runtime",
        "agent_session_manager.testing",
    ):
        module = importlib.import_module(module_name)
        assert isinstance(module.__all__, tuple), module_name
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module_name}.{name}"


def test_provider_and_testing_names() -> None:
    from agent_session_manager.providers import AmpAdapter, ClaudeAdapter, CodexAdapter, ShellAdapter
    from agent_session_manager.testing import ScriptedAdapter, run_store_conformance

    for adapter in (AmpAdapter, ClaudeAdapter, CodexAdapter, ShellAdapter, ScriptedAdapter):
        assert isinstance(adapter.name, str)
    assert callable(run_store_conformance)


def test_enum_members_are_upper_case_of_their_values() -> None:
    from agent_session_manager import ErrorCode, EventType, RunStatus, SessionStatus

    for enum in (ErrorCode, EventType, RunStatus, SessionStatus):
        for member in enum:
            assert member.name == member.value.upper()
    assert EventType.RUN_STARTED == "run_started"
    assert len(EventType) == 28
    assert len(ErrorCode) == 43


def test_dependencies_point_inward() -> None:
    """core/ imports only core/; ports/ imports only core/ and ports/ (DESIGN §2)."""
    import ast
    from pathlib import Path

    package = Path(agent_session_manager.__file__).parent
    outer = {"stores", "providers", "runtime", "manager", "cli", "testing", "rendering", "_execution"}
    for layer, allowed_up in (("core", set()), ("ports", {"core"})):
        for path in (package / layer).glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.level >= 2:
                    target = (node.module or "").split(".")[0]
                    assert target not in outer, f"{layer}/{path.name} imports ..{node.module}"
                    assert target in allowed_up, f"{layer}/{path.name} imports ..{node.module}"
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    assert not node.module.startswith("agent_session_manager"), f"{path.name}: {node.module}"
