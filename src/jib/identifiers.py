"""Build generators from identifier strings and write them back: `get_generator`, `get_identifier`.

    [provider!]model[,key=value]...

Keys are `api_key`, `api_base`-style generator attributes, or `GenerateParams` fields; values are
checked against the field's type. See `jib._syntax` for escaping and `jib._values` for encoding.
An empty value (`key=`) sets an optional field to `None`; for params that is the same as leaving
the key out.

Identifiers read back from data (stored chats, JSONL and ids files) are built with
`trusted=False` (or a `jib.trust.TrustPolicy`): see `jib.trust` for what they may not do.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from jib._secrets import looks_like_secret_name, redact
from jib._syntax import (
    IdentifierSyntaxError,
    parse_identifier,
    redact_identifier,
    secret_values,
    unescape,
)
from jib._values import bool_fields, decode_value, field_kinds, optional_fields, read_bool
from jib.errors import InvalidGeneratorError
from jib.generator.base import Generator
from jib.params import GenerateParams
from jib.registry import DEFAULT_PROVIDER, resolve_provider
from jib.trust import TrustPolicy, policy_for

__all__ = ["get_generator", "get_identifier"]

_RESERVED_KEYS = frozenset({"model", "params"})


def get_generator(
    identifier: str,
    *,
    params: GenerateParams | None = None,
    trusted: bool | TrustPolicy = True,
) -> Generator:
    """Build the generator an identifier describes.

    >>> get_generator("gpt-4o-mini,temperature=0.2").params.temperature
    0.2

    Args:
        identifier: `[provider!]model[,key=value]...`; the provider defaults to `litellm`.
        params: params that override those in the identifier.
        trusted: `True` (the default) for an identifier the user wrote: in code, on the command
            line, in their own environment variable. For one read from data (a stored chat, a
            JSONL or ids file) pass `False`, which applies `TrustPolicy.from_env()`, or the
            `TrustPolicy` saying what it may do (see `jib.trust`).

    Raises:
        UntrustedIdentifierError: an untrusted identifier sets an option its provider does not
            declare inert, reads an environment variable, sends a secret to a host, or sets an
            option that runs code, which the policy does not allow.
        InvalidGeneratorError: the identifier is malformed, names an unknown provider or key, or
            a value has the wrong type. The message names the part at fault; secrets are masked.
    """
    try:
        parsed = parse_identifier(identifier)
    except IdentifierSyntaxError as exc:
        raise _invalid(identifier, str(exc)) from None

    provider = parsed.provider or DEFAULT_PROVIDER
    cls = resolve_provider(provider)
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise InvalidGeneratorError(
            f"provider {provider!r} is registered as {cls!r}, which is not a Generator"
        )

    param_kinds = field_kinds(GenerateParams)
    attribute_kinds = field_kinds(cls)
    param_values: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for key, raw in parsed.kwargs.items():
        if key in _RESERVED_KEYS:
            raise _invalid(
                identifier,
                f"key {key!r} cannot be set with key=value; the model goes before the "
                "first ',' and params are set one by one",
            )
        try:
            if key in param_kinds:
                param_values[key] = _read_value(GenerateParams, key, raw)
            elif key in attribute_kinds:
                attributes[key] = _read_value(cls, key, raw)
            else:
                raise _invalid(
                    identifier, f"unknown key {key!r} for {cls.__name__}. {_suggest(key, cls)}"
                )
        except IdentifierSyntaxError as exc:
            raise _invalid(identifier, f"key {key!r}: {exc}") from None

    try:
        identifier_params = GenerateParams.model_validate(param_values)
    except ValidationError as exc:
        raise _validation_error(identifier, exc, param_values) from exc
    merged = identifier_params.merge_with(params) if params is not None else identifier_params
    try:
        generator = cls(model=parsed.model, params=merged, **attributes)
    except ValidationError as exc:
        # pydantic's own message may quote the input (a model validator's input is every
        # attribute), so it is only kept as the cause when no secret was given.
        secret = any(looks_like_secret_name(key) for key in attributes)
        error = _validation_error(identifier, exc, attributes)
        if secret:
            raise error from None
        raise error from exc
    policy = policy_for(trusted)
    if policy is not None:
        policy.check_generator(generator, identifier=identifier)
    return generator


def _read_value(model: type[BaseModel], key: str, raw: str) -> Any:
    """The value of field `key` of `model` written as `raw` (`key=` unsets an optional field)."""
    if raw == "" and key in optional_fields(model):
        return None
    if key == "api_key":
        return unescape(raw, secret=True)
    if key in bool_fields(model):
        return read_bool(unescape(raw), what=f"the value of {key!r}")
    return decode_value(raw, field_kinds(model)[key], what=f"the value of {key!r}")


def get_identifier(
    generator: Generator, params: GenerateParams | None = None, *, short: bool = False
) -> str:
    """The identifier of `generator` (see `Generator.to_identifier`); secrets are left out."""
    return generator.to_identifier(params, short=short)


def _suggest(key: str, cls: type[Generator]) -> str:
    import difflib

    valid = sorted(
        {*GenerateParams.model_fields, *cls.model_fields} - _RESERVED_KEYS,
    )
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    return f"{hint}Valid keys: {', '.join(valid)}"


def _validation_error(
    identifier: str, exc: ValidationError, given: dict[str, Any]
) -> InvalidGeneratorError:
    problems = []
    for error in exc.errors():
        location = error["loc"]
        key = str(location[0]) if location else "?"
        where = ".".join(str(part) for part in location) or key
        message = error["msg"]
        if key in given and not looks_like_secret_name(key):
            shown_value = repr(given[key])
            if len(shown_value) > 80:
                shown_value = shown_value[:77] + "..."
            message += f" (got {shown_value})"
        problems.append(f"key {where!r}: {message}")
    return _invalid(identifier, "; ".join(problems))


_SHOWN_CHARS = 200


def _invalid(identifier: str, detail: str) -> InvalidGeneratorError:
    # Redacting only here keeps the common, valid path free of the work. The detail is redacted
    # too, with the identifier's own secret values: a message below may have quoted one.
    shown = repr(redact_identifier(identifier))
    if len(shown) > _SHOWN_CHARS:  # an identifier read from data may be megabytes long
        shown = f"{shown[:_SHOWN_CHARS]}… ({len(identifier)} characters)"
    if isinstance(identifier, str):
        detail = redact(detail, secret_values(identifier))
    return InvalidGeneratorError(f"invalid identifier {shown}: {detail}")
