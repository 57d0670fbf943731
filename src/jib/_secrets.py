"""Secrets in one place: which names hold one, the `***` marker, and taking secrets out of text.

Every layer asks this module: identifiers (which keys to mask and leave out), the HTTP generator
(which headers and `state` keys are credentials), providers (their error messages and the
exceptions chained under them), storage (stored error messages) and the CLI (error lines).

A *secret name* is a key, header or field name whose value is a credential: `api_key`,
`X-Api-Key`, `Authorization`, `access_token`, `Set-Cookie`, `password`... Names are split into
words (`_`, `-`, `.`, spaces and camelCase), so `max_tokens` and `tokenizer` are not secret names.
For error text only, near misses count too (`api-key`, `apikye`, `bearer`, `tokn`): a mistyped
secret key still holds a secret.

`redact(text, secrets)` masks, in this order: the known secret values (and any word holding a
long prefix or suffix of one, as servers that echo a key "partly masked" do), bearer/basic
credentials, and the values of secret-named `name=value`, `name: value` and `"name": "value"`
pairs. `env:NAME` references are not secrets (they name where a key is read from) and stay.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote

__all__ = [
    "ENV_REFERENCE_PREFIX",
    "REDACTED",
    "RedactedError",
    "is_secret_name",
    "looks_like_secret_name",
    "mask_values",
    "redact",
    "redacted_chain",
]

REDACTED = "***"
"""What a secret is replaced with, everywhere."""

ENV_REFERENCE_PREFIX = "env:"
"""A secret value starting with this names the environment variable to read it from."""

# Whole words (after splitting a name) that make it a secret name.
_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "credential",
        "credentials",
        "auth",
        "authorization",
        "bearer",
        "cookie",
        "session",
        "sessionid",
    }
)
# Endings of a name written without separators (`xapikey`, `accesstoken`, `setcookie`).
_SECRET_ENDINGS = (
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "token",
    "secret",
    "password",
    "passwd",
    "credentials",
    "authorization",
    "cookie",
    "sessionid",
)
# What a mistyped secret name is compared with (error text only).
_NEAR_TERMS = (
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "bearer",
    "authorization",
    "credentials",
    "cookie",
)
_NEAR_CUTOFF = 0.8
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")

# A secret echoed back partly masked ("sk-abc1****wxyz") is still a secret's fragment: any word
# holding this many characters of a known secret's start or end is masked.
_FRAGMENT = 6
_SHORTEST_SECRET = 4
_WORD_BREAKS = frozenset(" \t\r\n'\",;:=&?#/<>()[]{}")

# "Bearer …" and "Basic …" anywhere; "Token …" and "Digest …" are common words, so only after
# a secret name (`Authorization: Token …`, see `_COLON_PAIR`).
_CREDENTIAL_SCHEME = re.compile(r"\b(Bearer|Basic)(\s+)(?!\*\*\*)[^\s'\",;)\]}>]+", re.IGNORECASE)
# `name=value` (query strings, identifiers, kwargs reprs), `"name": "value"` (JSON), and
# `name: value` (headers, prose such as "Incorrect API key: sk-...").
# Each starts only where a name starts, so a long run of letters is scanned once, not per letter.
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9_.\-])([A-Za-z][A-Za-z0-9_.\-]*)(\s*=\s*)([^\s,&'\"\]\)}]+)"
)
_JSON_PAIR = re.compile(r"\"([^\"\\]{1,100})\"(\s*:\s*)\"((?:[^\"\\]|\\.)*)\"")
_COLON_PAIR = re.compile(
    r"(?<![A-Za-z0-9_\-])([A-Za-z][A-Za-z0-9_\-]*)"
    r"(:[ \t]*(?:(?:Bearer|Basic|Token|Digest)[ \t]+)?)([^\s'\",;)\]}>]+)",
    re.IGNORECASE,
)
# Words that look like a mistyped secret name but are ordinary parameter names.
_NOT_SECRET_WORDS = frozenset({"tokens", "tokenizer", "tokenize", "keyword", "keywords"})


def _words(name: str) -> list[str]:
    return [word for word in _SEPARATORS.split(_CAMEL.sub("_", name).lower()) if word]


def is_secret_name(name: str) -> bool:
    """True for names whose values are secrets: `api_key`, `X-Api-Key`, `access_token`, ...

    >>> [is_secret_name(n) for n in ("api_key", "Authorization", "max_tokens", "tokenizer")]
    [True, True, False, False]
    """
    words = _words(name)
    if any(word in _SECRET_WORDS for word in words):
        return True
    compact = "".join(words)
    return compact.endswith(_SECRET_ENDINGS)


@functools.lru_cache(maxsize=1024)
def looks_like_secret_name(name: str) -> bool:
    """`is_secret_name`, or a near miss of one (`api-key`, `apikye`, `tokn`): for error text.

    >>> [looks_like_secret_name(n) for n in ("api_kye", "bearer", "temperature")]
    [True, True, False]
    """
    if is_secret_name(name):
        return True
    words = _words(name)
    for candidate in (*words, "".join(words)):
        if candidate in _NOT_SECRET_WORDS:
            continue
        if len(candidate) >= 4 and difflib.get_close_matches(
            candidate, _NEAR_TERMS, n=1, cutoff=_NEAR_CUTOFF
        ):
            return True
    return False


# -- text ---------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with secrets masked as `***` (see the module docstring for what counts).

    Args:
        text: any text: an error message, a log line, a response body.
        secrets: values known to be secret (an api key, a token); shorter than 4 characters
            they are ignored, as masking them would mask ordinary text.

    >>> redact("bad key sk-live-0123456789 (Bearer abc), api_key=xyz", ["sk-live-0123456789"])
    'bad key *** (Bearer ***), api_key=***'
    """
    text = mask_values(text, secrets)
    text = _CREDENTIAL_SCHEME.sub(rf"\g<1>\g<2>{REDACTED}", text)
    text = _JSON_PAIR.sub(_masked_pair, text)
    text = _ASSIGNMENT.sub(_masked_pair, text)
    return _COLON_PAIR.sub(_masked_pair, text)


def mask_values(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with only the known `secrets` masked (whole, encoded, or a long prefix or suffix
    of one), for text whose `name=value` pairs must stay readable (a rendered request)."""
    known = sorted(_variants(secrets), key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, REDACTED)
    for secret in known:
        if len(secret) >= 2 * _FRAGMENT:
            for fragment in {secret[:_FRAGMENT], secret[-_FRAGMENT:]}:
                text = _mask_words_holding(text, fragment)
    return text


def _variants(secrets: Iterable[str | None]) -> set[str]:
    """Each secret as written, percent-encoded (in a URL) and JSON-escaped (in a body)."""
    found: set[str] = set()
    for secret in secrets:
        if not secret or len(secret) < _SHORTEST_SECRET:
            continue
        found.add(secret)
        found.add(quote(secret, safe=""))
        found.add(secret.replace("\\", "\\\\").replace('"', '\\"'))
    return found


def _mask_words_holding(text: str, fragment: str) -> str:
    """Mask every word (a run between `_WORD_BREAKS`) that contains `fragment`; linear time."""
    parts: list[str] = []
    position = 0
    found = text.find(fragment)
    while found != -1:
        start = found
        while start > position and text[start - 1] not in _WORD_BREAKS:
            start -= 1
        end = found + len(fragment)
        while end < len(text) and text[end] not in _WORD_BREAKS:
            end += 1
        if end > found + len(fragment) and text[end - 1] == ".":
            end -= 1  # the sentence's full stop, not the secret's
        parts.append(text[position:start])
        parts.append(REDACTED)
        position = end
        found = text.find(fragment, position)
    parts.append(text[position:])
    return "".join(parts)


def _masked_pair(match: re.Match[str]) -> str:
    name, separator, value = match.group(1), match.group(2), match.group(3)
    if (
        name.lower() == "key"  # too common in prose ("expected 'key=value'") to mean a secret
        or not value
        or value.startswith((ENV_REFERENCE_PREFIX, REDACTED))
        or not looks_like_secret_name(name)
    ):
        return match.group(0)
    if match.re is _JSON_PAIR:
        return f'"{name}"{separator}"{REDACTED}"'
    return f"{name}{separator}{REDACTED}"


# -- exceptions ---------------------------------------------------------------------------------

_MAX_CHAIN = 16


class RedactedError(Exception):
    """Stands in for an exception whose text may hold a secret: its type and redacted message.

    Providers chain these under jib's own errors instead of the library's exceptions, whose
    messages (and attached requests) can carry the api key, so a printed traceback or
    `logging.exception` shows what failed and where, never the key.

    Attributes:
        type_name: the qualified name of the exception it stands for
            (`litellm.exceptions.AuthenticationError`).
        message: that exception's message, redacted.
    """

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}" if message else type_name)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message))


def redacted_chain(exc: BaseException, secrets: Iterable[str | None] = ()) -> RedactedError:
    """A stand-in for `exc` and the exceptions chained under it, every message redacted.

    Each link keeps its type name, redacted message and traceback (the frames show where it
    happened); nothing else of the original exceptions is kept, so no reference to a request or
    response holding the key survives. Raise jib's error `from` the result, outside the `except`
    block that caught `exc` (inside it, Python would chain `exc` itself as `__context__`).
    """
    known = list(secrets)
    links = list(_chain(exc))
    stand_ins = [
        RedactedError(_type_name(link), redact(_message_of(link), known)).with_traceback(
            link.__traceback__
        )
        for link in links
    ]
    for outer, inner in itertools.pairwise(stand_ins):
        outer.__cause__ = inner
    return stand_ins[0]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    if isinstance(exc, RedactedError):
        return exc.type_name
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, RedactedError):
        return exc.message
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the error being reported
        return ""
