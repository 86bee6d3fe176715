from __future__ import annotations

from typing import Any

import pytest

from agent_session_manager.core import (
    AsmError,
    Capability,
    CapabilityResolver,
    CapabilityType,
    ErrorCode,
    Manifest,
    Registry,
)

CT = CapabilityType


def _code(fn: Any, *args: Any, **kwargs: Any) -> ErrorCode:
    with pytest.raises(AsmError) as info:
        fn(*args, **kwargs)
    return info.value.code


# --- Capability -------------------------------------------------------------------------------


def test_capability_types_are_the_anchors() -> None:
    assert {t.value for t in CT} == {
        "tool", "resource", "prompt", "sampling", "file_access", "network_access", "code_execution",
    }  # fmt: skip


@pytest.mark.parametrize("kind", [*CT, *(t.value for t in CT)])
def test_capability_accepts_every_type(kind: Any) -> None:
    cap = Capability(name="x", type=kind)
    assert cap.type is CT(kind)
    assert cap.enabled is True
    assert cap.description is None


@pytest.mark.parametrize("kind", ["tools", "", "TOOL", 3, None])
def test_invalid_capability_type(kind: Any) -> None:
    with pytest.raises(AsmError) as info:
        Capability(name="x", type=kind)
    assert info.value.code is ErrorCode.INVALID_CAPABILITY_TYPE
    assert info.value.details["valid"] == [t.value for t in CT]


def test_capability_other_bad_fields() -> None:
    assert _code(Capability, name="", type="tool") is ErrorCode.VALIDATION_ERROR
    assert _code(Capability, type="tool") is ErrorCode.VALIDATION_ERROR
    assert _code(Capability, name="x") is ErrorCode.VALIDATION_ERROR


def test_enable_disable_return_copies() -> None:
    cap = Capability(name="bash", type="code_execution", description="run shell")
    off = cap.disable()
    assert off.enabled is False
    assert cap.enabled is True
    assert off.enable() == cap
    assert Capability.model_validate(cap.model_dump(mode="json")) == cap


# --- CapabilityResolver -----------------------------------------------------------------------

PROVIDER = [
    Capability(name="bash", type=CT.CODE_EXECUTION),
    Capability(name="read_file", type=CT.FILE_ACCESS),
    Capability(name="web_fetch", type=CT.NETWORK_ACCESS, enabled=False),
    Capability(name="system_prompt", type=CT.PROMPT),
]


def test_negotiate_full_with_types_and_names() -> None:
    result = CapabilityResolver(required=[CT.CODE_EXECUTION, "read_file"], optional=["prompt"]).negotiate(
        PROVIDER
    )
    assert result.status == "full"
    assert result.supported == ["code_execution", "read_file", "prompt"]
    assert result.unsupported == []
    assert result.warnings == []


def test_negotiate_degraded_lists_unsupported_optional() -> None:
    resolver = CapabilityResolver(required=["bash"], optional=[CT.SAMPLING, "web_fetch", CT.FILE_ACCESS])
    result = resolver.negotiate(PROVIDER)
    assert result.status == "degraded"
    assert result.supported == ["bash", "file_access"]
    assert result.unsupported == ["sampling", "web_fetch"]  # web_fetch exists but is disabled
    assert len(result.warnings) == 2
    assert "sampling" in result.warnings[0]
    assert "web_fetch" in result.warnings[1]


def test_negotiate_missing_required_names_every_missing_requirement() -> None:
    resolver = CapabilityResolver(required=[CT.NETWORK_ACCESS, "bash", "git", CT.RESOURCE])
    with pytest.raises(AsmError) as info:
        resolver.negotiate(PROVIDER)
    assert info.value.code is ErrorCode.MISSING_REQUIRED_CAPABILITY
    assert info.value.details == {"missing": ["network_access", "git", "resource"]}
    assert "git" in info.value.message


def test_negotiate_with_no_requirements_and_no_capabilities() -> None:
    assert CapabilityResolver().negotiate([]).status == "full"
    with pytest.raises(AsmError):
        CapabilityResolver(required=["tool"]).negotiate([])


def test_resolver_dedupes_and_accepts_capability_objects() -> None:
    resolver = CapabilityResolver(
        required=["bash", "bash", Capability(name="anything", type=CT.FILE_ACCESS)],
        optional=["bash", CT.PROMPT, CT.PROMPT],
    )
    assert resolver.required == ("bash", "file_access")
    assert resolver.optional == ("prompt",)
    assert resolver.negotiate(PROVIDER).status == "full"


@pytest.mark.parametrize("bad", ["", "   ", 42, None])
def test_resolver_rejects_bad_requirements(bad: Any) -> None:
    assert _code(CapabilityResolver, required=[bad]) is ErrorCode.INVALID_CAPABILITY_TYPE
    assert _code(CapabilityResolver, optional=[bad]) is ErrorCode.INVALID_CAPABILITY_TYPE


# --- Manifest ---------------------------------------------------------------------------------


def _manifest(*caps: Capability, name: str = "coder", provider: str | None = "claude") -> Manifest:
    return Manifest(name=name, version="1.0", provider=provider, capabilities=list(caps))


def test_manifest_add_get_remove() -> None:
    bash = Capability(name="bash", type=CT.CODE_EXECUTION)
    read = Capability(name="read", type=CT.FILE_ACCESS, enabled=False)
    base = _manifest(bash)
    added = base.add_capability(read)
    assert [c.name for c in added.capabilities] == ["bash", "read"]
    assert [c.name for c in base.capabilities] == ["bash"]  # original untouched
    assert added.get_capability("read") == read
    assert added.enabled_capabilities() == [bash]
    removed = added.remove_capability("bash")
    assert [c.name for c in removed.capabilities] == ["read"]
    assert [c.name for c in added.capabilities] == ["bash", "read"]


def test_manifest_duplicates_and_missing() -> None:
    bash = Capability(name="bash", type=CT.CODE_EXECUTION)
    manifest = _manifest(bash)
    assert _code(manifest.add_capability, bash.disable()) is ErrorCode.DUPLICATE_CAPABILITY
    assert _code(_manifest, bash, Capability(name="bash", type=CT.TOOL)) is ErrorCode.DUPLICATE_CAPABILITY
    assert _code(manifest.get_capability, "nope") is ErrorCode.CAPABILITY_NOT_FOUND
    assert _code(manifest.remove_capability, "nope") is ErrorCode.CAPABILITY_NOT_FOUND


def test_manifest_validation_and_round_trip() -> None:
    assert _code(Manifest, name="", version="1") is ErrorCode.VALIDATION_ERROR
    assert _code(Manifest, name="n", version="") is ErrorCode.VALIDATION_ERROR
    manifest = _manifest(Capability(name="bash", type=CT.CODE_EXECUTION, config={"timeout": 5}))
    assert Manifest.model_validate(manifest.model_dump(mode="json")) == manifest


# --- Registry ---------------------------------------------------------------------------------


def test_registry_register_get_and_immutability() -> None:
    empty = Registry()
    one = empty.register(_manifest(name="b"))
    two = one.register(_manifest(name="a", provider="codex"))
    assert len(empty) == 0
    assert len(one) == 1
    assert len(two) == 2
    assert "a" in two
    assert "a" not in one
    assert [m.name for m in two.list()] == ["a", "b"]
    assert two.get("a").provider == "codex"
    assert _code(two.register, _manifest(name="a")) is ErrorCode.ALREADY_EXISTS
    assert _code(Registry, [_manifest(name="x"), _manifest(name="x")]) is ErrorCode.ALREADY_EXISTS
    assert _code(two.get, "zzz") is ErrorCode.NOT_FOUND


def test_registry_update_and_unregister() -> None:
    reg = Registry([_manifest(name="a"), _manifest(name="b")])
    newer = Manifest(name="a", version="2.0", provider="amp")
    updated = reg.update(newer)
    assert updated.get("a").version == "2.0"
    assert reg.get("a").version == "1.0"
    assert [m.name for m in updated.list()] == ["a", "b"]
    assert _code(reg.update, _manifest(name="zzz")) is ErrorCode.NOT_FOUND
    smaller = reg.unregister("a")
    assert [m.name for m in smaller.list()] == ["b"]
    assert len(reg) == 2
    assert _code(reg.unregister, "zzz") is ErrorCode.NOT_FOUND


def test_registry_filters() -> None:
    bash = Capability(name="bash", type=CT.CODE_EXECUTION)
    fetch_off = Capability(name="fetch", type=CT.NETWORK_ACCESS, enabled=False)
    reg = Registry(
        [
            _manifest(bash, name="c", provider="claude"),
            _manifest(fetch_off, name="b", provider="codex"),
            _manifest(bash, fetch_off.enable(), name="a", provider="claude"),
        ]
    )
    assert [m.name for m in reg.filter_by_provider("claude")] == ["a", "c"]
    assert reg.filter_by_provider("amp") == []
    assert [m.name for m in reg.filter_by_capability(CT.CODE_EXECUTION)] == ["a", "c"]
    assert [m.name for m in reg.filter_by_capability("network_access")] == ["a"]  # b's is disabled
    assert reg.filter_by_capability(CT.SAMPLING) == []
