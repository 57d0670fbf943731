"""What a spec's templates may see and its errors may say, where secrets are concerned.

What response templates write is stored (the answer), and so is every error a spec raises (a
failed chat's message, shown by `jib log --failed`). So:

- response templates see neither `api_key` nor the keys of `state` whose names mark them as
  secrets (`jib._secrets.is_secret_name`: `access_token`, `session`, `X-Api-Key`…), at any
  depth: such a key stays listed, its value undefined, and using it says why
  (`hidden_from_responses`, `hidden_api_key`);
- the errors of rendering a request or reading a response are re-raised with the request's
  secrets (`secrets_of`) masked in every encoding `jib._secrets` knows (`masked_errors`). The
  errors carry no data by design (see `transforms`); this is the second line, for a secret a
  spec wrote into a template or pattern itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from jib._secrets import is_secret_name, mask_values
from jib.errors import BudgetExceededError, ProcessingError
from jib.generator.http.transforms import CompileError, NotJSONError

__all__ = [
    "MAX_STATE_DEPTH",
    "hidden_api_key",
    "hidden_from_responses",
    "masked_errors",
    "secrets_of",
]

T = TypeVar("T")

MAX_STATE_DEPTH = 32
"""How deeply `state` is searched for secret-named keys; deeper values are hidden whole."""

_PLAIN_ERRORS: tuple[type[ProcessingError], ...] = (
    ProcessingError,
    BudgetExceededError,
    CompileError,
    NotJSONError,
)


def secrets_of(api_key: str | None, state: Mapping[str, Any]) -> list[str]:
    """`api_key` and the string values of `state`'s secret-named keys, at any depth."""
    found = [api_key] if api_key else []
    stack: list[tuple[Any, int]] = [(state, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_STATE_DEPTH:
            continue
        items = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in items:
            if isinstance(item, str):
                if isinstance(key, str) and is_secret_name(key):
                    found.append(item)
            elif isinstance(item, (Mapping, list, tuple)):
                stack.append((item, depth + 1))
    return found


def masked_errors(secrets: Callable[[], list[str]], run: Callable[[], T]) -> T:
    """`run()`, its `ProcessingError`s re-raised with `secrets()` masked in their messages."""
    try:
        return run()
    except ProcessingError as exc:
        failure = exc
    message = str(failure)
    masked = mask_values(message, secrets())
    if masked == message:
        raise failure
    error_type = type(failure)
    error = error_type(masked) if error_type in _PLAIN_ERRORS else ProcessingError(masked)
    raise error from failure.__cause__


def hidden_from_responses(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` as response templates see it: every secret-named key (`access_token`,
    `session`, `X-Api-Key`…: `jib._secrets.is_secret_name`) hidden, at any depth.

    A hidden key stays listed but its value is undefined, and using it says why. Nesting
    deeper than `MAX_STATE_DEPTH` levels is hidden whole.
    """
    return cast("dict[str, Any]", _hide(state, 0, "state"))


def hidden_api_key() -> Any:
    """`api_key` as response templates see it: undefined, saying why when used."""
    import jinja2

    return jinja2.StrictUndefined(
        hint="'api_key' is undefined: response templates cannot read the api key (what they "
        "write is stored); only request templates can",
        name="api_key",
    )


def _hide(value: Any, depth: int, where: str) -> Any:
    if isinstance(value, Mapping):
        if depth > MAX_STATE_DEPTH:
            return _hidden(where, "it nests too deeply to be checked for secrets")
        return {
            key: _hidden(f"{where}[{key!r}]", "its name marks it as a secret")
            if isinstance(key, str) and is_secret_name(key)
            else _hide(item, depth + 1, f"{where}[{key!r}]")
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        if depth > MAX_STATE_DEPTH:
            return _hidden(where, "it nests too deeply to be checked for secrets")
        return [_hide(item, depth + 1, f"{where}[{index}]") for index, item in enumerate(value)]
    return value


def _hidden(where: str, why: str) -> Any:
    from jib.generator.http._sandbox import SpecUndefined

    return SpecUndefined(
        hint=f"{where} is hidden from response templates: {why} (what response templates "
        "write is stored); only request templates can read it",
        name=where,
    )
