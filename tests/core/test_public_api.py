"""Pins the public surface of ``agent_session_manager.core`` and its purity (no I/O imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agent_session_manager.core as core

CORE_DIR = Path(core.__file__).parent
CORE_FILES = sorted(CORE_DIR.rglob("*.py"))
FORBIDDEN = {
    "anyio", "asyncio", "trio", "sqlite3", "aiosqlite", "psycopg", "psycopg_pool", "asyncpg",
    "subprocess", "socket", "os", "shutil", "threading", "multiprocessing", "importlib", "httpx",
}  # fmt: skip

EXPECTED = {
    "AsmError", "Capability", "CapabilityResolver", "CapabilityType", "ConcurrencyError", "ErrorCategory",
    "ErrorCode", "Event", "EventType", "Manifest", "NegotiationResult", "NotFoundError", "OperationError",
    "PermissionMode", "PolicyViolationError", "ProviderError", "Registry", "ResourceError", "Run",
    "RunStatus", "Session", "SessionStatus", "StateError", "StorageError", "TokenUsage", "ToolError",
    "ValidationError", "new_id", "utc_now",
}  # fmt: skip


def test_all_is_a_tuple_of_importable_names() -> None:
    assert isinstance(core.__all__, tuple)
    assert len(set(core.__all__)) == len(core.__all__)
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from agent_session_manager.core import *", namespace)
    assert set(core.__all__) <= set(namespace)


def test_the_contract_names_are_exported() -> None:
    assert set(core.__all__) >= EXPECTED


def test_core_files_found() -> None:
    names = {p.name for p in CORE_FILES}
    assert {"__init__.py", "errors.py", "models.py", "enums.py", "capability.py"} <= names


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import; relative imports are resolved against core's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
            else:
                package = ["agent_session_manager", "core"]
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                found.append((node.lineno, ".".join([*base, *(node.module or "").split(".")]).rstrip(".")))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.append((node.lineno, "__import__"))
    return found


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_imports_no_io_modules(path: Path) -> None:
    bad = [
        (line, mod) for line, mod in _imports(path) if mod.split(".")[0] in FORBIDDEN or mod == "__import__"
    ]
    assert not bad, f"{path.name} imports I/O modules: {bad}"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_core_depends_on_nothing_outside_core(path: Path) -> None:
    outward = [
        (line, mod)
        for line, mod in _imports(path)
        if mod.startswith("agent_session_manager") and not mod.startswith("agent_session_manager.core")
    ]
    assert not outward, f"{path.name} imports outer layers: {outward}"


def test_the_import_scanner_sees_forbidden_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os.path\nfrom anyio import sleep\nfrom ..stores import x\nfrom .models import Event\n"
        "__import__('socket')\n",
        encoding="utf-8",
    )
    mods = [mod for _, mod in _imports(sample)]
    assert mods == [
        "os.path",
        "anyio",
        "agent_session_manager.stores",
        "agent_session_manager.core.models",
        "__import__",
    ]
