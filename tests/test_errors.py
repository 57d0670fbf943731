"""The error hierarchy answers 'what can I do about it?'."""

from __future__ import annotations

import pickle

import pytest

from jib import errors


@pytest.mark.parametrize(
    ("status", "message", "cls", "retryable"),
    [
        (429, "slow down", errors.RateLimitError, True),
        (401, "bad key", errors.AuthenticationError, False),
        (403, "forbidden", errors.AuthenticationError, False),
        (
            400,
            "This model's maximum context length is 8192 tokens",
            errors.ContextLengthError,
            False,
        ),
        (400, "bad field", errors.BadRequestError, False),
        (413, "too large", errors.ContextLengthError, False),
        (500, "boom", errors.ServerError, True),
        (503, "unavailable", errors.ServerError, True),
        (504, "gateway timeout", errors.ProviderTimeoutError, True),
    ],
)
def test_error_for_status_picks_the_class_and_retryability(
    status: int, message: str, cls: type[errors.ProviderError], retryable: bool
) -> None:
    error = errors.error_for_status(status, message, provider="p")
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.status_code == status
    assert str(error) == f"[p] HTTP {status}: {message}"


def test_every_error_is_a_jib_error_and_retryable_list_is_one_line() -> None:
    for cls in errors.RETRYABLE_ERRORS:
        assert issubclass(cls, errors.ProviderError) and cls.retryable
    assert issubclass(errors.InvalidGeneratorError, errors.JibError)
    assert issubclass(errors.InvalidGeneratorError, ValueError)
    assert issubclass(errors.ProcessingError, errors.JibError)
    assert issubclass(errors.ContextLengthError, errors.BadRequestError)


def test_provider_errors_survive_pickling() -> None:
    error = errors.RateLimitError("later", status_code=429, provider="x")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is errors.RateLimitError
    assert (copy.message, copy.status_code, copy.provider, copy.retryable) == (
        "later",
        429,
        "x",
        True,
    )


def test_missing_dependency_error_names_the_extra() -> None:
    error = errors.MissingDependencyError("torch", "transformers", "TransformersGenerator")
    assert 'pip install "jib[transformers]"' in str(error)
    assert isinstance(error, ImportError)


def test_missing_dependency_and_stored_errors_survive_pickling() -> None:
    from jib import StoredError

    error = errors.MissingDependencyError("torch", "transformers", "TransformersGenerator")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.package, copy.extra, str(copy)) == ("torch", "transformers", str(error))
    stored = pickle.loads(pickle.dumps(StoredError("RateLimitError", "later")))
    assert (stored.type_name, stored.message) == ("RateLimitError", "later")
