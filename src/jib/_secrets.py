"""Secrets in one place: which names hold one, the `***` marker, and taking secrets out of text.

Every layer asks this module: identifiers (which keys to mask and leave out), the HTTP generator
(which headers and `state` keys are credentials), providers (their error messages and the
exceptions chained under them), storage (stored error messages) and the CLI (error lines).

A *secret name* is a key, header or field name whose value is a credential: `api_key`,
`X-Api-Key`, `Authorization`, `access_token`, `Set-Cookie`, `password`... Names are split into
words (`_`, `-`, `.`, spaces and camelCase), so `max_tokens` and `tokenizer` are not secret names.
For error text only, near misses count too (`api-key`, `apikye`, `bearer`, `tokn`): a mistyped
secret key still holds a secret.

`redact(text, secrets)` masks, in this order: the known secret values in every form a server
or a template is likely to echo them (see `encoded_forms`), any word holding a long prefix or
suffix of one (servers echo a key "partly masked"), bearer/basic credentials, and the values of
secret-named `name=value`, `name: value` and `"name": "value"` pairs (those two in the first
`PATTERN_WINDOW` characters, so a huge body costs little). `env:NAME` references are not secrets
(they name where a key is read from) and stay.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import itertools
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

__all__ = [
    "ENV_REFERENCE_PREFIX",
    "PATTERN_WINDOW",
    "REDACTED",
    "RedactedError",
    "encoded_forms",
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
# Encoded forms shorter than this are not masked: they would match ordinary text.
_SHORTEST_ENCODED = 8
_WORD_BREAKS = frozenset(" \t\r\n'\",;:=&?#/<>()[]{}")

# "Bearer …" and "Basic …" anywhere; "Token …" and "Digest …" are common words, so only after
# a secret name (`Authorization: Token …`, see `_COLON_PAIR`).
_CREDENTIAL_SCHEME = re.compile(r"\b(Bearer|Basic)(\s+)(?!\*\*\*)[^\s'\",;)\]}>]+", re.IGNORECASE)
# Pairs whose value is masked when the name is a secret one: `name=value` (query strings,
# identifiers, kwargs reprs), `"name": "value"` (JSON) and `name: value` (headers, prose such as
# "Incorrect API key: sk-..."). The scan is driven by the separators, found at C speed, and reads
# each name backwards from its separator (in the reversed text), so ordinary text and large bodies
# cost little and no character is rescanned per position.
PATTERN_WINDOW = 64 * 1024
"""How much of a text `redact` searches for secret-named pairs and bearer credentials."""
_SEPARATOR = re.compile(r"[=:]")
_STEM = re.compile(r"key|kye|tok|tkn|sec|scr|pas|pwd|psw|aut|bea|coo|ses|cre|api", re.IGNORECASE)
_MAX_NAME = 100
_NAME_REVERSED = re.compile(rf"[ \t]*(\"?)([A-Za-z0-9_.\-]{{1,{_MAX_NAME + 1}}})")
_ASSIGNED_VALUE = re.compile(r"[ \t]*([^\s,&'\"\]\)}]+)")
_COLON_VALUE = re.compile(
    r"[ \t]*((?:(?:Bearer|Basic|Token|Digest)[ \t]+)?)([^\s'\",;)\]}>]+)", re.IGNORECASE
)
_JSON_VALUE = re.compile(r"[ \t]*\"((?:[^\"\\]|\\.)*)\"")
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


@functools.lru_cache(maxsize=4096)
def looks_like_secret_name(name: str) -> bool:
    """`is_secret_name`, or a near miss of one (`api-key`, `apikye`, `tokn`): for error text.

    >>> [looks_like_secret_name(n) for n in ("api_kye", "bearer", "temperature")]
    [True, True, False]
    """
    if is_secret_name(name):
        return True
    words = _words(name)
    return any(
        len(candidate) >= 4 and candidate not in _NOT_SECRET_WORDS and _near_miss(candidate)
        for candidate in (*words, "".join(words))
    )


def _bigrams(text: str) -> frozenset[str]:
    return frozenset(text[i : i + 2] for i in range(len(text) - 1))


_NEAR = tuple((term, _bigrams(term)) for term in _NEAR_TERMS)


def _near_miss(candidate: str) -> bool:
    """Whether `candidate` is within `_NEAR_CUTOFF` of a secret term (difflib's ratio).

    Two cheap necessary conditions (close lengths, two shared letter pairs) come first, so text
    full of ordinary words rarely reaches difflib.
    """
    grams = _bigrams(candidate)
    for term, term_grams in _NEAR:
        if 2 * min(len(candidate), len(term)) < _NEAR_CUTOFF * (len(candidate) + len(term)):
            continue
        if len(grams & term_grams) < 2:
            continue
        if difflib.SequenceMatcher(None, candidate, term).ratio() >= _NEAR_CUTOFF:
            return True
    return False


# -- text ---------------------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with secrets masked as `***` (see the module docstring for what counts).

    Args:
        text: any text: an error message, a log line, a response body.
        secrets: values known to be secret (an api key, a token); shorter than 4 characters
            they are ignored, as masking them would mask ordinary text.

    Known secrets are masked everywhere; the name-based rules look at the first
    `PATTERN_WINDOW` characters only, which bounds the work on a huge response body (messages
    are cut far shorter before anyone sees them).

    >>> redact("bad key sk-live-0123456789 (Bearer abc), api_key=xyz", ["sk-live-0123456789"])
    'bad key *** (Bearer ***), api_key=***'
    """
    text = mask_values(text, secrets)
    head, tail = text[:PATTERN_WINDOW], text[PATTERN_WINDOW:]
    head = _CREDENTIAL_SCHEME.sub(rf"\g<1>\g<2>{REDACTED}", head)
    return _mask_pairs(head) + tail


def mask_values(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with only the known `secrets` masked (in any of their `encoded_forms`, or a long
    prefix or suffix of one), for text whose `name=value` pairs must stay readable (a rendered
    request)."""
    plain: set[str] = set()
    encoded: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= _SHORTEST_SECRET:
            plain.update(_written_forms(secret))
            encoded.update(form for form in encoded_forms(secret) if len(form) >= _SHORTEST_ENCODED)
    for form in sorted(plain | encoded, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    # Fragments only of the forms a server echoes "partly masked": an encoded form's start or
    # end is too short a string to mask every word holding it.
    for secret in plain:
        if len(secret) >= 2 * _FRAGMENT:
            for fragment in {secret[:_FRAGMENT], secret[-_FRAGMENT:]}:
                text = _mask_words_holding(text, fragment)
    return text


def _written_forms(secret: str) -> set[str]:
    """A secret as written, percent-encoded (in a URL) and JSON-escaped (in a body)."""
    return {
        secret,
        quote(secret, safe=""),
        secret.replace("\\", "\\\\").replace('"', '\\"'),
    }


@functools.lru_cache(maxsize=256)
def encoded_forms(secret: str) -> frozenset[str]:
    """The encoded forms of `secret` that `redact` masks, besides the plain ones.

    - base64, standard and URL-safe alphabets, with and without `=` padding; and the part of
      the encoding that is the same wherever the secret starts inside a longer encoded text
      (`base64("user:" + key)` holds the key's characters at a shifted alignment);
    - hex, lower and upper case;
    - percent-encoded: `quote` (`/` kept), `quote_plus` (spaces as `+`), and every byte as
      `%XX` (upper and lower case hex).

    >>> sorted(encoded_forms("sk-1"))[:3]
    ['%73%6B%2D%31', '%73%6b%2d%31', '736B2D31']
    """
    data = secret.encode("utf-8", "surrogatepass")
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        if offset == 0:
            forms.update((encoded, encoded.rstrip("=")))
        # Characters holding any bit of the padding bytes before, or of the unknown bytes
        # after, differ by context; the ones between depend on the secret alone.
        start = -(-offset * 8 // 6)
        end = (offset + len(data)) * 8 // 6
        forms.add(encoded[start:end])
    forms.update([form.replace("+", "-").replace("/", "_") for form in forms])
    hexed = binascii.hexlify(data).decode("ascii")
    forms.update((hexed, hexed.upper()))
    forms.update((quote(secret), quote_plus(secret, safe="")))
    every_byte = "".join(f"%{byte:02X}" for byte in data)
    forms.update((every_byte, every_byte.lower()))
    forms.discard(secret)
    forms.discard("")
    return frozenset(forms)


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


def _mask_pairs(text: str) -> str:
    """Mask the values of secret-named `name=value`, `name: value` and `"name": "value"`."""
    if _SEPARATOR.search(text) is None:
        return text
    reversed_text = text[::-1]
    pieces: list[str] = []
    done = 0  # text[:done] is in `pieces`
    for separator in _SEPARATOR.finditer(text):
        at = separator.start()
        if at < done:
            continue
        found = _pair_value(text, reversed_text, at)
        if found is not None:
            pieces += [text[done : found[0]], REDACTED]
            done = found[1]
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _pair_value(text: str, reversed_text: str, at: int) -> tuple[int, int] | None:
    """Where the value to mask is, for the pair whose separator is at `at`, or None."""
    named = _NAME_REVERSED.match(reversed_text, len(text) - at)
    if named is None or len(named.group(2)) > _MAX_NAME:
        return None  # no name, or one longer than any real one
    name = named.group(2)[::-1]
    name_start = len(text) - named.end()
    quoted = named.group(1) == '"'
    if quoted and (text[at] != ":" or name_start == 0 or text[name_start - 1] != '"'):
        return None
    if not name[0].isalpha():
        return None
    if text[at] == ":" and not quoted:
        name = name.rsplit(".", 1)[-1]  # "example.com:443" names no secret; "x.key: v" does
    if name.lower() == "key" or not _STEM.search(name) or not looks_like_secret_name(name):
        return None  # a bare "key" is too common in prose ("expected 'key=value'")
    pattern = _JSON_VALUE if quoted else _ASSIGNED_VALUE if text[at] == "=" else _COLON_VALUE
    value = pattern.match(text, at + 1)
    if value is None:
        return None
    group = value.lastindex or 1
    content = value.group(group)
    if not content or content.startswith((ENV_REFERENCE_PREFIX, REDACTED)):
        return None
    return value.start(group), value.end(group)


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
