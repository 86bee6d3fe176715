from __future__ import annotations

import pickle

import pytest

from agent_session_manager.core import (
    AsmError,
    ConcurrencyError,
    ErrorCategory,
    ErrorCode,
    NotFoundError,
    OperationError,
    PolicyViolationError,
    ProviderError,
    ResourceError,
    StateError,
    StorageError,
    ToolError,
    ValidationError,
)

RETRYABLE = {
    ErrorCode.PROVIDER_TIMEOUT,
    ErrorCode.PROVIDER_RATE_LIMITED,
    ErrorCode.PROVIDER_UNAVAILABLE,
    ErrorCode.STORAGE_CONNECTION_FAILED,
    ErrorCode.TIMEOUT,
}

CATEGORY_CLASS = {
    ErrorCategory.VALIDATION: ValidationError,
    ErrorCategory.STATE: StateError,
    ErrorCategory.RESOURCE: ResourceError,
    ErrorCategory.PROVIDER: ProviderError,
    ErrorCategory.STORAGE: StorageError,
    ErrorCategory.RUNTIME: OperationError,
    ErrorCategory.CONCURRENCY: ConcurrencyError,
    ErrorCategory.TOOL: ToolError,
}

NOT_FOUND = {
    ErrorCode.NOT_FOUND,
    ErrorCode.SESSION_NOT_FOUND,
    ErrorCode.RUN_NOT_FOUND,
    ErrorCode.CAPABILITY_NOT_FOUND,
}

ALL_CODES = list(ErrorCode)


def test_the_anchor_has_43_codes_with_upper_case_members() -> None:
    assert len(ALL_CODES) == 43
    for code in ALL_CODES:
        assert code.name == code.value.upper()
        assert ErrorCode(code.value) is code


@pytest.mark.parametrize("code", ALL_CODES)
def test_every_code_has_category_and_default_message(code: ErrorCode) -> None:
    assert isinstance(code.category, ErrorCategory)
    assert isinstance(code.default_message, str)
    assert code.default_message.strip()


def test_every_category_is_used() -> None:
    assert {c.category for c in ALL_CODES} == set(ErrorCategory)


def test_spot_check_categories() -> None:
    assert ErrorCode.VALIDATION_ERROR.category is ErrorCategory.VALIDATION
    assert ErrorCode.INVALID_TRANSITION.category is ErrorCategory.STATE
    assert ErrorCode.SESSION_NOT_FOUND.category is ErrorCategory.RESOURCE
    assert ErrorCode.PROVIDER_RATE_LIMITED.category is ErrorCategory.PROVIDER
    assert ErrorCode.STORAGE_WRITE_FAILED.category is ErrorCategory.STORAGE
    assert ErrorCode.TIMEOUT.category is ErrorCategory.RUNTIME
    assert ErrorCode.MAX_RUNS_EXCEEDED.category is ErrorCategory.CONCURRENCY
    assert ErrorCode.TOOL_PERMISSION_DENIED.category is ErrorCategory.TOOL


@pytest.mark.parametrize("code", ALL_CODES)
def test_retryable_exactly_for_the_five_codes(code: ErrorCode) -> None:
    expected = code in RETRYABLE
    assert code.retryable is expected
    assert AsmError(code).retryable is expected


def test_retryable_set_is_exactly_five() -> None:
    assert {c for c in ALL_CODES if c.retryable} == RETRYABLE


@pytest.mark.parametrize("code", ALL_CODES)
def test_asm_error_returns_the_category_subclass(code: ErrorCode) -> None:
    err = AsmError(code)
    assert isinstance(err, AsmError)
    assert isinstance(err, Exception)
    assert isinstance(err, CATEGORY_CLASS[code.category])
    if code in NOT_FOUND:
        assert type(err) is NotFoundError
    elif code is ErrorCode.POLICY_VIOLATION:
        assert type(err) is PolicyViolationError
    else:
        assert type(err) is CATEGORY_CLASS[code.category]
    assert err.code is code
    assert err.category is code.category


def test_subclass_hierarchy() -> None:
    assert issubclass(NotFoundError, ResourceError)
    assert issubclass(PolicyViolationError, OperationError)
    for cls in CATEGORY_CLASS.values():
        assert issubclass(cls, AsmError)


def test_category_subclass_can_be_caught() -> None:
    with pytest.raises(NotFoundError) as info:
        raise AsmError(ErrorCode.RUN_NOT_FOUND, "run_x", {"run_id": "run_x"})
    assert info.value.details == {"run_id": "run_x"}
    with pytest.raises(ProviderError):
        raise AsmError("provider_timeout")


def test_string_code_is_coerced_and_unknown_becomes_unknown_error() -> None:
    assert AsmError("timeout").code is ErrorCode.TIMEOUT
    err = AsmError("definitely_not_a_code", "boom")
    assert err.code is ErrorCode.UNKNOWN_ERROR
    assert err.message == "boom"
    assert type(err) is OperationError


def test_default_message_and_details() -> None:
    err = AsmError(ErrorCode.SESSION_NOT_FOUND)
    assert err.message == ErrorCode.SESSION_NOT_FOUND.default_message
    assert err.details == {}
    assert AsmError(ErrorCode.TIMEOUT, "").message == ErrorCode.TIMEOUT.default_message
    assert AsmError().code is ErrorCode.UNKNOWN_ERROR


def test_details_are_copied() -> None:
    details = {"a": 1}
    err = AsmError(ErrorCode.INTERNAL_ERROR, "x", details)
    details["a"] = 2
    assert err.details == {"a": 1}


def test_str_and_repr() -> None:
    err = AsmError(ErrorCode.RUN_NOT_FOUND, "Run not found: run_1")
    assert str(err) == "[run_not_found] Run not found: run_1"
    assert repr(err) == "NotFoundError(code='run_not_found', message='Run not found: run_1')"


@pytest.mark.parametrize("code", ALL_CODES)
def test_to_dict_from_dict_round_trip(code: ErrorCode) -> None:
    err = AsmError(code, f"message for {code}", {"n": 1, "nested": {"k": ["v"]}})
    data = err.to_dict()
    assert data == {
        "code": code.value,
        "message": f"message for {code}",
        "details": {"n": 1, "nested": {"k": ["v"]}},
    }
    back = AsmError.from_dict(data)
    assert type(back) is type(err)
    assert (back.code, back.message, back.details) == (err.code, err.message, err.details)


def test_from_dict_tolerates_bad_input() -> None:
    back = AsmError.from_dict({"code": "nope", "message": "m", "details": ["not", "a", "dict"]})
    assert back.code is ErrorCode.UNKNOWN_ERROR
    assert back.message == "m"
    assert back.details == {}
    empty = AsmError.from_dict({})
    assert empty.code is ErrorCode.UNKNOWN_ERROR
    assert empty.message == ErrorCode.UNKNOWN_ERROR.default_message


@pytest.mark.parametrize("code", ALL_CODES)
def test_pickle_round_trip(code: ErrorCode) -> None:
    err = AsmError(code, "pickled", {"x": [1, 2]})
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert back.code is code
    assert back.message == "pickled"
    assert back.details == {"x": [1, 2]}
    assert back.retryable is err.retryable
    assert str(back) == str(err)


def test_chaining_from_driver_exception() -> None:
    def fail() -> None:
        try:
            raise OSError("disk full")
        except OSError as exc:
            raise AsmError(ErrorCode.STORAGE_WRITE_FAILED, "write failed") from exc

    with pytest.raises(StorageError) as info:
        fail()
    assert isinstance(info.value.__cause__, OSError)
