"""The identifier grammar at the string level: `[provider!]model[,key=value]...`.

This module knows nothing of generators or field types. It splits an identifier into its parts,
joins parts back into an identifier, escapes and unescapes text, and redacts secrets from an
identifier for error messages (which keys are secret is `jib._secrets`' call).

Escaping is percent-encoding (as in URLs) of the characters the grammar uses (`%` `,` `=` `!` `;`),
whitespace and unprintable characters, so any string survives a round trip while ordinary
identifiers stay readable: `stop=a%2Cb` is the one stop sequence `a,b`.

Whitespace that is not escaped is not part of a name or value: `gpt-4o, temperature = 0.5` is
`gpt-4o,temperature=0.5`. A value that must start or end with a space writes it as `%20`.
A `%` not followed by two hex digits stays a literal `%`; write `%25` to be sure. Secrets follow
the same rules: an api key holding `,` is written with `%2C` (an unescaped `,` ends the value).
A lone surrogate (`"\ud800"`, or a byte that was not UTF-8 in a command-line argument) is not
text: one in a value is escaped as its three-byte form (`%ED%A0%80`) and reads back the same,
but one written raw in an identifier is refused.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from jib._secrets import ENV_REFERENCE_PREFIX, REDACTED, looks_like_secret_name
from jib.errors import InvalidGeneratorError

__all__ = [
    "IdentifierSyntaxError",
    "ParsedIdentifier",
    "escape",
    "format_identifier",
    "parse_identifier",
    "redact_identifier",
    "secret_values",
    "unescape",
]

_SPECIAL = frozenset("%,=!;")
_SPECIAL_OR_SPACE = re.compile(r"[%,=!;\s]")
r"""A special character or whitespace (`\s` is what `str.isspace` calls whitespace)."""
_PROVIDER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class IdentifierSyntaxError(InvalidGeneratorError):
    """The identifier does not follow the grammar; the message says where.

    An `InvalidGeneratorError`, so a caller reading one value (`--param`) reports it cleanly;
    `get_generator` re-raises it with the (redacted) identifier in the message.
    """


@dataclass(slots=True)
class ParsedIdentifier:
    """An identifier split into parts; values are still escaped (see `unescape`)."""

    provider: str | None
    model: str
    kwargs: dict[str, str] = field(default_factory=dict)


def escape(text: str) -> str:
    """Percent-encode the grammar's special characters, whitespace and unprintables in `text`."""
    if text.isprintable() and _SPECIAL_OR_SPACE.search(text) is None:
        return text
    out = []
    for ch in text:
        if ch in _SPECIAL or ch.isspace() or not ch.isprintable():
            # surrogatepass: a lone surrogate is escaped too, and `unescape` gives it back.
            out.append("".join(f"%{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass")))
        else:
            out.append(ch)
    return "".join(out)


def unescape(text: str, *, secret: bool = False) -> str:
    """Undo `escape`: decode `%XX` sequences (UTF-8).

    Raises:
        IdentifierSyntaxError: a `%XX` sequence is not UTF-8; the message quotes `text` unless
            it is a `secret`.
    """
    if "%" not in text:
        return text
    try:
        return unquote(text, errors="surrogatepass")
    except UnicodeDecodeError as exc:
        what = "the secret value" if secret else repr(text)
        raise IdentifierSyntaxError(
            f"{what} holds a %-escape that is not valid UTF-8; write a literal '%' as %25"
        ) from (None if secret else exc)


def parse_identifier(identifier: str) -> ParsedIdentifier:
    """Split `identifier` into provider, model and escaped key/value strings.

    Raises:
        IdentifierSyntaxError: with the position and part that break the grammar.
    """
    if not isinstance(identifier, str):
        raise IdentifierSyntaxError(
            f"an identifier must be a string, not {type(identifier).__name__}"
        )
    text = identifier.strip()
    if not text:
        raise IdentifierSyntaxError(
            "the identifier is empty; expected '[provider!]model[,key=value]...'"
        )
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        raise IdentifierSyntaxError(
            f"the character at position {surrogate.start()} is not text ({surrogate.group()!r}: "
            "a lone surrogate, such as a byte that is not UTF-8 on a command line); write it "
            "%-escaped"
        )
    head, *parts = text.split(",")
    provider: str | None = None
    if "!" in head:
        pieces = head.split("!")
        if len(pieces) > 2:
            second = len(pieces[0]) + 1 + len(pieces[1])
            raise IdentifierSyntaxError(
                f"more than one '!' in {head!r} (second at position {second}); expected "
                "'provider!model' — write a '!' inside a model name as %21"
            )
        provider, model = (piece.strip() for piece in pieces)
        if not _PROVIDER_RE.match(provider):
            raise IdentifierSyntaxError(
                f"provider {provider!r} at position 0 is not a valid provider name; expected "
                "letters, digits, '_', '.' or '-'"
            )
    else:
        model = head.strip()
    if not model:
        raise IdentifierSyntaxError("the model name is empty; expected '[provider!]model'")
    kwargs: dict[str, str] = {}
    position = len(head) + 1
    previous_key = ""
    for part in parts:
        if "=" not in part:
            if looks_like_secret_name(previous_key):
                # Most likely the rest of a key holding a ',': never echo it.
                what = f"the part after {previous_key!r}"
            else:
                what = "an empty part (two commas in a row?)" if not part else repr(part)
            raise IdentifierSyntaxError(
                f"{what} at position {position} is not 'key=value'; write a ',' inside a value "
                "(an api key too) as %2C"
            )
        key, value = part.split("=", 1)
        key = key.strip()
        if not _KEY_RE.match(key):
            shown = (
                f"the key after {previous_key!r}"
                if looks_like_secret_name(previous_key)
                else f"key {key!r}"
            )
            raise IdentifierSyntaxError(
                f"{shown} at position {position} is not a valid name; expected letters, "
                "digits and '_' (write a ',' inside a value as %2C)"
            )
        if key in kwargs:
            raise IdentifierSyntaxError(f"key {key!r} appears twice (again at position {position})")
        kwargs[key] = value.strip()
        previous_key = key
        position += len(part) + 1
    return ParsedIdentifier(provider=provider, model=unescape(model), kwargs=kwargs)


def format_identifier(provider: str | None, model: str, items: list[tuple[str, str]]) -> str:
    """Join a provider, a model and already-escaped `(key, value)` items into an identifier."""
    head = escape(model)
    if provider:
        head = f"{provider}!{head}"
    if not items:
        return head
    return ",".join([head, *(f"{key}={value}" for key, value in items)])


def redact_identifier(identifier: object) -> str:
    """`identifier` as text with every secret value replaced by `***` (env references kept).

    Keys that only look like secret ones (`api-key`, `bearer`, `apikye`) count too: a mistyped
    key still holds a secret.
    """
    if not isinstance(identifier, str):
        return f"<{type(identifier).__name__}>"
    head, *parts = identifier.split(",")
    redacted = [head]
    for part, secret in _secret_parts(parts):
        if secret is None:
            redacted.append(part)
        elif secret:
            key = part.partition("=")[0]
            redacted.append(f"{key}={REDACTED}")
    return ",".join(redacted)


def secret_values(identifier: str) -> list[str]:
    """The secret values written in `identifier`, as written and unescaped (to mask in text)."""
    values: list[str] = []
    for part, secret in _secret_parts(identifier.split(",")[1:]):
        if secret:
            value = part.partition("=")[2].strip()
            values.append(value)
            with contextlib.suppress(UnicodeDecodeError):
                values.append(unquote(value, errors="strict"))
    return values


def _secret_parts(parts: list[str]) -> list[tuple[str, bool | None]]:
    """Each part with True (a secret `key=value`), False (the rest of one), or None (not one)."""
    marked: list[tuple[str, bool | None]] = []
    in_secret = False
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or (in_secret and not _KEY_RE.match(key.strip())):
            # A part that is not `key=value` right after a secret is most likely the rest of it.
            marked.append((part, False if in_secret else None))
            continue
        in_secret = looks_like_secret_name(key.strip()) and not value.strip().startswith(
            ENV_REFERENCE_PREFIX
        )
        marked.append((part, True if in_secret else None))
    return marked
