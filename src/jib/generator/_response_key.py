"""The response cache's key: what decides an answer, written out and hashed.

A key has two parts. The generator's identity (`Generator.response_cache_identity`, once per
batch): its provider, model, and every attribute that is not a secret, runtime state or a
setting of how requests travel — so an `http!` spec's response transforms, which decide the
answer's text, are in it. And each item's request (`Generator.response_cache_request`): for the
providers that put a request on jib's wire (`openai!`, `http!`) that request — the URL and the
body they send, and for `http!` the headers too — for LiteLLM the arguments of its call, and
for a provider without a request of its own (local models, the test generators, a user's
subclass) the params and the messages with their parts, tools and response format. What only
shapes how a request is sent (limits, retries, `timeout`, the proxy, TLS settings) is left out:
it does not change the answer.

Secrets never go into the key: no api key, no header a secret name marks (`Authorization`,
`X-Api-Key`, …), and any secret value still found in the written material (a key a template
put into a body) is replaced by `***` before hashing. A key rotation therefore keeps the cache.

`request_key` writes the material as canonical JSON (keys sorted) and hashes it with BLAKE2b
(128 bits), personalised with the key format's version; a body a provider has already written as
it goes on the wire (`SentRequest`: `openai!`'s JSON bodies) is hashed as those very bytes, and
the same bytes are then sent (`keep_sent_body`, `sent_body`), so a request that misses is not
written twice. A new format of the key is a new version: a new format starts a new cache rather
than reading answers under keys that meant something else. What every request of a generator
shares (the kind of request and the generator's identity) is written and hashed once
(`key_prefix`); each request then only writes and hashes its own part, after it. The sample
index is not in the hash: it is a column of its own beside it (`--repeat 3` keeps three answers
under one key).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson

from jib._secrets import REDACTED, is_secret_name

if TYPE_CHECKING:
    from jib.generator.base import Generator
    from jib.messages import Message
    from jib.params import GenerateParams

__all__ = [
    "KEY_VERSION",
    "KeyPrefix",
    "SentRequest",
    "answering_attributes",
    "generator_identity",
    "generic_request",
    "keep_sent_body",
    "kept_bodies",
    "key_prefix",
    "params_material",
    "request_key",
    "safe_headers",
    "sending_bodies",
    "sent_body",
]

KEY_VERSION = 3
"""The version of the key format, mixed into every hash."""

_PERSON = f"jib-rc-{KEY_VERSION}".encode()
_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_NOT_ANSWERING = frozenset({"timeout"})
"""Params that bound how long a request may take, not what it answers."""
_REDACTED = REDACTED.encode()


class KeyPrefix:
    """What every request of one generator shares, already hashed: the kind of request and
    the generator's identity (`key_prefix`), and the secret values to blank in each request's
    material."""

    __slots__ = ("_hash", "_secrets", "_urls")

    def __init__(self, shared: Any, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = _secret_bytes(secrets)
        self._hash = hashlib.blake2b(self.written(shared), digest_size=16, person=_PERSON)
        self._urls: dict[str, Any] = {}
        """The hash after the prefix and a `SentRequest`'s URL, by URL (a generator has one
        or two)."""

    def written(self, material: Any) -> bytes:
        """`material` as canonical JSON, every secret value blanked."""
        try:
            data = orjson.dumps(material, option=orjson.OPT_SORT_KEYS, default=_plain)
        except TypeError:  # keys that are not strings (allowing them slows every dict down)
            data = orjson.dumps(material, option=_OPTIONS, default=_plain)
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, _REDACTED)
        return data

    def sent_keys(self, url: str, bodies: Sequence[bytes]) -> list[str]:
        """The keys of `SentRequest(url, body)` for each of `bodies` (`key`, for a batch)."""
        after_url = self._urls.get(url)
        if after_url is None:
            if len(self._urls) > 16:
                self._urls.clear()
            after_url = self._urls[url] = self._hash.copy()
            after_url.update(orjson.dumps(url))
        secrets = self._secrets
        keys: list[str] = []
        for body in bodies:
            for secret in secrets:
                if secret in body:
                    body = body.replace(secret, _REDACTED)
            digest = after_url.copy()
            digest.update(body)
            keys.append(digest.hexdigest())
        return keys

    def key(self, material: Any) -> str:
        """The key of one request's `material` (JSON-able, or a `SentRequest`) after this
        prefix: 32 hex digits."""
        if type(material) is SentRequest:
            return self.sent_keys(material.url, (material.body,))[0]
        digest = self._hash.copy()
        digest.update(self.written(material))
        return digest.hexdigest()


def key_prefix(kind: str, identity: Any, secrets: Iterable[str | None] = ()) -> KeyPrefix:
    """The part of every key a generator's requests of `kind` (`"chat"`, `"text"`) share:
    its `identity` (`Generator.response_cache_identity()`), written and hashed once."""
    return KeyPrefix({"kind": kind, "generator": identity}, secrets)


def request_key(material: Any, secrets: Iterable[str | None] = ()) -> str:
    """The key of `material` (JSON-able) with no shared part before it (a prefix of `null`):
    32 hex digits, with every secret value blanked."""
    return KeyPrefix(None, secrets).key(material)


class SentRequest:
    """A request as a provider puts it on the wire: its URL and its body, already written
    (JSON bytes). Its key hashes the URL (as a JSON string) and then those very bytes, not the
    body read and written again; in a material of its own it is written as
    `{"body": <the bytes>, "url": …}`."""

    __slots__ = ("body", "url")

    def __init__(self, url: str, body: bytes) -> None:
        self.url = url
        self.body = body

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SentRequest) and (other.url, other.body) == (self.url, self.body)

    def __hash__(self) -> int:
        return hash((self.url, self.body))

    def __repr__(self) -> str:
        return f"SentRequest({self.url!r}, {self.body!r})"


_SENT: ContextVar[dict[tuple[int, int], tuple[Any, Any, Any, bytes]] | None] = ContextVar(
    "jib_response_cache_sent_bodies", default=None
)
"""The bodies written for the keys of the batch the response cache is sending (see
`sending_bodies`), by the identity of each item and its params."""


def sending_bodies() -> _SendingBodies:
    """While the block runs (one batch through the response cache: its keys, then the send of
    what missed), bodies a provider wrote for the keys (`keep_sent_body`) are kept for its sends
    to reuse (`sent_body`); the requests it makes in tasks of their own see them too."""
    return _SendingBodies()


class _SendingBodies:
    """`sending_bodies`' block (a class: entered once per batch, cheaper than a generator's)."""

    __slots__ = ("_token",)

    def __enter__(self) -> None:
        self._token = _SENT.set({})

    def __exit__(self, *_exc: object) -> None:
        _SENT.reset(self._token)


def kept_bodies() -> dict[tuple[int, int], tuple[Any, Any, Any, bytes]] | None:
    """Where `keep_sent_body` keeps bodies, for a provider keeping a batch's at once (`None`
    outside `sending_bodies`): `[(id(item), id(params))] = (item, params, owner, data)`."""
    return _SENT.get()


def keep_sent_body(item: Any, params: Any, owner: Any, data: bytes) -> None:
    """Keep `data`, the body `item` is sent as with `params` by the generator `owner` names
    (what else decides the body: `openai!`'s model and endpoint), for the send that follows
    the lookup; nothing is kept outside `sending_bodies`."""
    known = _SENT.get()
    if known is not None:
        known[(id(item), id(params))] = (item, params, owner, data)


def sent_body(item: Any, params: Any, owner: Any) -> bytes | None:
    """The body kept for these very `item` and `params` objects and an equal `owner`
    (`keep_sent_body`), or `None`: the caller writes it."""
    known = _SENT.get()
    if not known:
        return None
    # The entry holds `item` and `params`, so no other object has their ids while it is kept.
    entry = known.get((id(item), id(params)))
    if entry is None or entry[2] != owner:
        return None
    return entry[3]


def _secret_bytes(secrets: Iterable[str | None]) -> tuple[bytes, ...]:
    """The secret values worth blanking, as bytes (very short values would blank at random)."""
    return tuple(secret.encode() for secret in secrets if secret and len(secret) >= 4)


def _plain(value: Any) -> Any:
    """What orjson cannot write itself: a body already written (as it is), pydantic models,
    sets, other objects by their repr."""
    if type(value) is SentRequest:
        return {"body": orjson.Fragment(value.body), "url": value.url}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, (set, frozenset)):
        return sorted(map(repr, value))
    if isinstance(value, bytes):
        return hashlib.blake2b(value, digest_size=16).hexdigest()
    return repr(value)


def params_material(params: GenerateParams) -> dict[str, Any]:
    """The params that reach a provider (`timeout` left out), as a plain dict."""
    data = params.to_dict()
    for name in _NOT_ANSWERING:
        data.pop(name, None)
    return data


def safe_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` without those a secret name marks (`Authorization`, `X-Api-Key`, cookies)."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if not is_secret_name(name) and name.lower() not in ("cookie", "content-length")
    }


def generic_request(item: Sequence[Message] | str, params: GenerateParams) -> dict[str, Any]:
    """What decides an answer beside the generator when a provider has no request of its own
    to show: the params and the messages with their parts (or the text)."""
    return {
        "params": params_material(params),
        "input": item if isinstance(item, str) else [message.to_dict() for message in item],
    }


def generator_identity(generator: Generator) -> dict[str, Any]:
    """What decides every answer of `generator`: its provider, model and answering attributes
    (worked out once per batch)."""
    from jib.registry import provider_name_for

    cls = type(generator)
    provider = provider_name_for(cls) or f"{cls.__module__}.{cls.__qualname__}"
    return {
        "provider": provider,
        "model": generator.model,
        "attributes": answering_attributes(generator),
    }


def answering_attributes(generator: Generator) -> dict[str, Any]:
    """The generator's attributes that may change an answer: none that is a secret, runtime
    state (`Field(exclude=True)`), or only a setting of how requests are sent."""
    from jib._limits import REQUEST_LIMIT_OPTIONS

    cls = type(generator)
    attributes: dict[str, Any] = {}
    for name, info in cls.model_fields.items():
        if name in ("model", "params", "api_key") or info.exclude or is_secret_name(name):
            continue
        if name in REQUEST_LIMIT_OPTIONS or name in _SENDING_SETTINGS:
            continue
        value = getattr(generator, name)
        if value == info.get_default(call_default_factory=True):
            continue
        attributes[name] = value
    return attributes


_SENDING_SETTINGS = frozenset(
    {"proxy", "verify", "max_response_bytes", "max_redirects", "stream_usage"}
)
"""Wire settings: how a request travels, not what it asks."""
