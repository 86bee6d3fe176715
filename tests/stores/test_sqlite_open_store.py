"""open_store(url) and default_store_url()."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_session_manager.core import AsmError, ErrorCode, Event, EventType
from agent_session_manager.stores import InMemorySessionStore
from agent_session_manager.stores._open import default_store_url, open_store
from agent_session_manager.stores.sqlite import SQLiteSessionStore

pytestmark = pytest.mark.anyio


async def test_memory_url() -> None:
    async with await open_store("memory://") as store:
        assert isinstance(store, InMemorySessionStore)


async def test_absolute_sqlite_url_four_slashes(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "abs.db"  # parent directories are created
    async with await open_store(f"sqlite:///{path}") as store:
        assert isinstance(store, SQLiteSessionStore)
        assert store.path == str(path)
        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="ses_1"))
    assert path.exists()


async def test_relative_sqlite_url_three_slashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with await open_store("sqlite:///rel/sessions.db") as store:
        assert isinstance(store, SQLiteSessionStore)
        assert store.path == str(tmp_path / "rel" / "sessions.db")


async def test_sqlite_url_options(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    async with await open_store(f"sqlite:///{path}?synchronous=full&busy_timeout=2.5") as store:
        assert isinstance(store, SQLiteSessionStore)
        assert store.synchronous == "FULL"
        await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="ses_1"))
    async with await open_store(f"sqlite:///{path}?mode=ro") as store:
        assert isinstance(store, SQLiteSessionStore)
        assert store.read_only
        with pytest.raises(AsmError) as info:
            await store.append_event(Event(type=EventType.MESSAGE_SENT, session_id="ses_1"))
        assert info.value.code is ErrorCode.STORAGE_WRITE_FAILED


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost/0",
        "no-scheme.db",
        "sqlite://relative.db",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite:///x.db?colour=blue",
        "sqlite:///x.db?busy_timeout=soon",
        "sqlite:///x.db?mode=rwx",
        "memory://something",
    ],
)
async def test_bad_urls_are_validation_errors(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(AsmError) as info:
        await open_store(url)
    assert info.value.code is ErrorCode.VALIDATION_ERROR


async def test_url_password_is_not_echoed() -> None:
    with pytest.raises(AsmError) as info:
        await open_store("mysql://user:hunter2@localhost/db")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in str(info.value.details)


async def test_corrupt_sqlite_file_via_url(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(AsmError) as info:
        await open_store(f"sqlite:///{path}")
    assert info.value.code is ErrorCode.STORAGE_ERROR


def test_default_store_url_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASM_STORE", "memory://")
    assert default_store_url() == "memory://"


def test_default_store_url_is_sqlite_in_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ASM_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    url = default_store_url()
    assert url == f"sqlite:///{tmp_path}/agent-session-manager/sessions.db"


async def test_open_store_default_uses_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ASM_STORE", f"sqlite:///{tmp_path}/env.db")
    async with await open_store() as store:
        assert isinstance(store, SQLiteSessionStore)
        assert store.path == str(tmp_path / "env.db")
