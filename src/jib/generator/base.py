"""`Generator`: the one interface every model sits behind."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from jib._secrets import ENV_REFERENCE_PREFIX, REDACTED, is_secret_name
from jib._syntax import escape, format_identifier
from jib._values import encode_value, field_kinds, optional_fields
from jib.errors import InvalidGeneratorError
from jib.messages import GeneratedMessage, GeneratedText, Message, MessageInput, Usage
from jib.params import GenerateParams
from jib.registry import DEFAULT_PROVIDER, provider_name_for

if TYPE_CHECKING:
    from jib.generator._batch_api import BatchClient
    from jib.pipeline.chat import ChatPipeline
    from jib.pipeline.completion import CompletionPipeline

__all__ = ["Generator", "Wrapper"]

T = TypeVar("T")
Wrapper = Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]
"""Wraps an async callable, returning another: `backoff.on_exception(...)` is one."""

_BASE_FIELDS = frozenset({"model", "api_key", "params"})


@functools.lru_cache(maxsize=256)
def _identifier_fields(cls: type[BaseModel]) -> tuple[tuple[str, Any, bool, bool], ...]:
    """What an identifier needs of each field of a generator class, worked out once per class:
    `(name, default, secret by its name, written as "name=" when None)`. Fields excluded from
    serialization (`Field(exclude=True)`) are runtime state, and `model`/`params` are written
    apart, so neither is listed. The defaults are kept to compare with, never handed out."""
    optional = optional_fields(cls)
    found = []
    for name, info in cls.model_fields.items():
        if name in ("model", "params") or info.exclude:
            continue
        default = info.get_default(call_default_factory=True)
        secret = name == "api_key" or is_secret_name(name)
        found.append((name, default, secret, default is not None and name in optional))
    return tuple(found)


class Generator(BaseModel):
    """Base class of every generator: a model behind two async batch methods.

    Subclass it and implement `generate_messages` (chat), `generate_texts` (completion) or both;
    a method left out raises `NotImplementedError`. Extra pydantic fields on a subclass become
    attributes settable from identifiers (`custom!foo,custom_field=True`); a field declared with
    `Field(exclude=True)` is runtime state (a callback, a cache) and is left out of identifiers.

    Attributes:
        model: the model name the provider understands.
        api_key: the key, if the provider needs one. `env:NAME` reads environment variable
            `NAME` when the key is used. Never shown in reprs or identifiers.
        params: default generation params, merged under the params of each call.

    A generator may be used from many tasks and reused across event loops (`asyncio.run` after
    `asyncio.run`), but it is not thread-safe: do not share one between threads that each run
    their own loop, and do not change its attributes while a batch is running.

    A provider describes itself, so that trust checks (`jib.trust`), prices (`jib.cost`) and the
    command line ask it instead of guessing from field names. A subclass sets, in one block at
    the end of its class body:

    - `endpoint_field`: the attribute naming where requests go (`api_base`); its default is the
      provider's own host. Data may set it, subject to the host rule of `jib.trust`.
    - `ambient_credentials`: whether requests may carry credentials of the user's own taken
      from the environment even when no key is given (a key variable, cloud credentials).
    - `offline`: whether it never reaches the network (the test generators of `jib.testing`).
    - `fetches_urls`: whether a content part's URL may be fetched from this machine (an
      in-process model, LiteLLM for some providers) rather than passed on for the provider's
      servers to fetch; a URL read from data is then the user's to allow.
    - `inert_options`: what data may set besides the model, the sampling params and the
      endpoint: attribute names, and `extra.NAME` for `params.extra` keys (`extra.*` for a
      provider that ignores `extra`). Everything else read from data is refused unless the user
      allows it (`TrustPolicy(allow_options=...)`).

    and may override `secret_destinations()` (where secrets go besides the provider's own host)
    and `list_price()` (what a call costs at the provider's published prices).
    """

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        arbitrary_types_allowed=True,
        protected_namespaces=(),
        defer_build=True,
        allow_inf_nan=False,  # a `nan` wait or timeout never ends, or never starts
    )

    model: str
    api_key: SecretStr | None = Field(default=None, repr=False)
    params: GenerateParams = Field(default_factory=GenerateParams)

    _wrappers: tuple[Wrapper, ...] = PrivateAttr(default=())
    _response_cache: Any = PrivateAttr(default=None)

    _chat_pipeline_factory: ClassVar[Callable[..., Any] | None] = None
    _completion_pipeline_factory: ClassVar[Callable[..., Any] | None] = None

    # -- what a provider says about itself (see the class docstring) ---------------------------

    endpoint_field: ClassVar[str | None] = None
    """The attribute naming where requests go; its default is the provider's own host."""
    ambient_credentials: ClassVar[bool] = False
    """Whether requests may carry the user's credentials from the environment unasked."""
    offline: ClassVar[bool] = False
    """Whether this generator never reaches the network."""
    fetches_urls: ClassVar[bool] = True
    """Whether a content part's URL may be fetched from this machine (not only by the
    provider's servers)."""
    inert_options: ClassVar[frozenset[str]] = frozenset()
    """What data may set besides the model, sampling params and endpoint (`extra.NAME`: a
    `params.extra` key)."""
    response_cacheable: ClassVar[bool] = True
    """Whether jib's response cache may keep and reuse this generator's answers (`False` for
    generators whose answers are decided by something a request does not show, like `fail!`)."""

    def response_cache_identity(self) -> Any:
        """What decides every answer of this generator, for jib's response cache (JSON-able,
        no secret): its provider, model and attributes, secrets, runtime state and send
        settings left out. Worked out once per batch. See `jib.generator._response_key`."""
        from jib.generator._response_key import generator_identity

        return generator_identity(self)

    def response_cache_request(self, item: Sequence[Message] | str, params: GenerateParams) -> Any:
        """What decides the answer to one item beside `response_cache_identity()`, for jib's
        response cache (JSON-able, no secret).

        By default the params and the messages with their parts; a provider with a request of
        its own returns that request (`openai!`: its URL and body).
        """
        from jib.generator._response_key import generic_request

        return generic_request(item, params)

    def response_cache_requests(
        self, items: Sequence[Sequence[Message] | str], params: Sequence[GenerateParams]
    ) -> list[Any]:
        """`response_cache_request` of each item of a batch, in order: what the response cache
        asks for (a provider may override it to work out once what the batch's requests share,
        such as the params most items share).

        Raises:
            JibError, ValueError, TypeError: an item's request cannot be worked out (the cache
                then asks item by item, and sends the item that fails uncached).
        """
        return [
            self.response_cache_request(item, item_params)
            for item, item_params in zip(items, params, strict=True)
        ]

    def response_cache_refusal(self) -> str | None:
        """Why this generator's answers cannot be cached, or `None` when they can."""
        if not type(self).response_cacheable:
            return (
                f"{type(self).__name__} answers are decided by more than its requests (it is "
                "marked response_cacheable = False), so they are never cached"
            )
        return None

    def secret_destinations(self) -> list[tuple[str, str]]:
        """Where this generator sends the key, beyond its provider's own host: (what, URL) pairs.

        The default: the endpoint field's value, unless it is unset or its default (the
        provider's own host; `jib.trust` also counts any URL on that host as the provider's).
        """
        name = type(self).endpoint_field
        value = getattr(self, name) if name is not None else None
        if name is None or not isinstance(value, str) or not value:
            return []
        if value == type(self).model_fields[name].get_default(call_default_factory=True):
            return []
        return [(name, value)]

    def list_price(self, usage: Usage) -> float | None:
        """What a call with `usage` costs at the provider's published prices, in US dollars.

        `None` (the default) when the provider publishes none that jib knows: never a guess.
        """
        return None

    def batch_api_client(self) -> BatchClient | None:
        """A client for this provider's batch API (half price, answered within hours; see
        `jib.batch_api`), or `None` (the default) when it has none jib speaks."""
        return None

    # -- what subclasses implement -------------------------------------------------------------

    async def generate_messages(
        self,
        messages: Sequence[Sequence[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Generate the next message for each conversation of a batch.

        Args:
            messages: one conversation (a sequence of messages) per item.
            params: one `GenerateParams` per item, already merged with `self.params`.

        Returns:
            One result per item, in order: the generated message, or the exception that item
            failed with (one failing item does not fail the batch).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not support chat: it does not implement "
            "generate_messages(). Use a generator that does, or .complete() if it supports text."
        )

    async def generate_texts(
        self,
        texts: Sequence[str],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedText | BaseException]:
        """Complete each text of a batch; same contract as `generate_messages`."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support text completion: it does not implement "
            "generate_texts(). Use a generator that does, or .chat() if it supports chat."
        )

    async def stream_messages(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """Generate the next message of one conversation, yielding text as it is generated.

        Yields text deltas (`str`), then the finished `GeneratedMessage` last. This default,
        for generators that cannot stream, runs a batch of one and yields only the finished
        message; request-based generators stream when their provider can.

        Raises:
            The exception the item failed with.
        """
        (result,) = await self.generate_messages([messages], [params])
        if isinstance(result, BaseException):
            raise result
        yield result

    @classmethod
    def supports_chat(cls) -> bool:
        """Whether this class implements chat (`generate_messages`)."""
        return cls.generate_messages is not Generator.generate_messages

    @classmethod
    def supports_text(cls) -> bool:
        """Whether this class implements text completion (`generate_texts`)."""
        return cls.generate_texts is not Generator.generate_texts

    def load(self) -> Generator:
        """Load local resources (a model in memory). Remote generators have nothing to load."""
        return self

    def unload(self) -> Generator:
        """Free what `load` took. Safe to call when nothing is loaded."""
        return self

    # -- composition ---------------------------------------------------------------------------

    def wrap(self, wrapper: Wrapper) -> Generator:
        """A copy of this generator whose underlying calls go through `wrapper`.

        `wrapper` takes an async callable and returns one, so decorators such as
        `backoff.on_exception(backoff.expo, jib.errors.RETRYABLE_ERRORS)` fit. This generator is
        left unchanged (the copy has its own `params`); the copy shares its loaded model and
        connection limits.
        """
        copy = self.model_copy(update={"params": self.params.model_copy(deep=True)})
        copy._wrappers = (*self._wrappers, wrapper)
        return copy

    def with_response_cache(self, cache: Any) -> Generator:
        """A copy of this generator whose answers go through jib's response cache `cache`
        (a `jib.storage.ResponseCache`; `None` for none): a pipeline of the copy asks the cache
        before sending and keeps each successful answer in it.

        This is jib's own cache of answers, not the provider's prompt cache
        (`ChatPipeline.cache("latest")`).

        Raises:
            InvalidGeneratorError: this generator's answers cannot be cached (`fail!`).
        """
        if cache is not None:
            refusal = self.response_cache_refusal()
            if refusal is not None:
                raise InvalidGeneratorError(refusal)
        copy = self.model_copy(update={"params": self.params.model_copy(deep=True)})
        copy._response_cache = cache
        return copy

    def wrapped(self, call: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """`call` with this generator's wrappers applied (innermost first).

        Providers call this around each underlying request so a retry wrapper retries one
        request, not a whole batch.
        """
        for wrapper in self._runtime["_wrappers"]:
            call = wrapper(call)
        return call

    def chat(
        self,
        messages: MessageInput | Sequence[MessageInput] | None = None,
        params: GenerateParams | None = None,
    ) -> ChatPipeline:
        """Start a `ChatPipeline` with these messages (strings are user messages).

        Raises:
            NotImplementedError: this generator's class does not implement `generate_messages`.
        """
        if not self.supports_chat():
            raise NotImplementedError(
                f"{type(self).__name__} does not support chat: it does not implement "
                "generate_messages(). Use .complete() if it supports text."
            )
        pipeline: ChatPipeline = _pipeline_factories()[0](self, messages or [], params)
        return pipeline

    def complete(self, text: str, params: GenerateParams | None = None) -> CompletionPipeline:
        """Start a `CompletionPipeline` for this text.

        Raises:
            NotImplementedError: this generator's class does not implement `generate_texts`.
        """
        if not self.supports_text():
            raise NotImplementedError(
                f"{type(self).__name__} does not support text completion: it does not implement "
                "generate_texts(). Use .chat() if it supports chat."
            )
        pipeline: CompletionPipeline = _pipeline_factories()[1](self, text, params)
        return pipeline

    # -- secrets -------------------------------------------------------------------------------

    def get_api_key(self) -> str | None:
        """The api key to send: the value, or the environment variable an `env:` key names.

        Raises:
            InvalidGeneratorError: an `env:NAME` key names a variable that is not set.
        """
        return resolve_secret(self.api_key, "api_key")

    # -- identifiers ---------------------------------------------------------------------------

    def to_identifier(
        self,
        params: GenerateParams | None = None,
        *,
        short: bool = False,
        include_secrets: bool = False,
    ) -> str:
        """This generator as an identifier string that `get_generator` turns back into it.

        Args:
            params: params to merge over `self.params` in the identifier.
            short: only `provider!model`, no attributes or params.
            include_secrets: write secret values (the api key) too. Off by default: secrets are
                left out, and `env:NAME` references are written back as they are.

        Raises:
            InvalidGeneratorError: this class is not registered under a provider name.
        """
        provider = provider_name_for(type(self))
        if provider is None:
            raise InvalidGeneratorError(
                f"{type(self).__name__} is not registered, so it has no identifier; call "
                f"jib.register_generator('name', {type(self).__name__}) first"
            )
        shown_provider = None if provider == DEFAULT_PROVIDER else provider
        if short:
            return format_identifier(shown_provider, self.model, [])
        items = list(self._identifier_attributes(include_secrets))
        merged = self.params if params is None or params is self.params else None
        if merged is None:
            merged = self.params.merge_with(params)
        for name, kind in field_kinds(GenerateParams).items():
            value = getattr(merged, name)
            if value is None or (name == "extra" and not value):
                continue
            items.append((name, encode_value(value, kind)))
        return format_identifier(shown_provider, self.model, items)

    def _identifier_attributes(self, include_secrets: bool) -> Iterator[tuple[str, str]]:
        for name, default, secret_name, unset_needed in _identifier_fields(type(self)):
            value = getattr(self, name)
            if value is None:
                # `key=` unsets an optional field; only needed when its default is not None.
                if unset_needed:
                    yield name, ""
                continue
            if secret_name or isinstance(value, SecretStr):
                raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
                if include_secrets or raw.startswith(ENV_REFERENCE_PREFIX):
                    yield name, escape(raw)
                continue
            if value == default:
                continue
            yield name, self.identifier_value(name, value)

    def identifier_value(self, name: str, value: Any) -> str:
        """Write attribute `name` for an identifier; override to encode a field specially."""
        return encode_value(value, field_kinds(type(self))[name])

    @property
    def _runtime(self) -> dict[str, Any]:
        """The private attributes, for code that reads them per request: `self._name` goes
        through pydantic's `__getattr__` after a failed lookup, which costs microseconds."""
        private = self.__pydantic_private__
        assert private is not None  # set at construction (and by unpickling)
        return private

    # -- python protocol -----------------------------------------------------------------------

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name is not None and name != "api_key" and is_secret_name(name):
                yield name, REDACTED
            elif name == "params" and isinstance(value, GenerateParams) and value.is_empty():
                continue
            else:
                yield name, value

    def __eq__(self, other: object) -> bool:
        # Runtime state (loaded models, connection pools, wrappers) is not part of equality.
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in type(self).model_fields)

    __hash__ = None  # type: ignore[assignment]


def resolve_secret(value: SecretStr | str | None, name: str) -> str | None:
    """The secret's value, reading `env:NAME` references from the environment."""
    if value is None:
        return None
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not raw.startswith(ENV_REFERENCE_PREFIX):
        return raw
    variable = raw[len(ENV_REFERENCE_PREFIX) :]
    resolved = os.environ.get(variable)
    if resolved is None:
        raise InvalidGeneratorError(
            f"{name} refers to environment variable {variable!r}, which is not set"
        )
    return resolved


def _pipeline_factories() -> tuple[Callable[..., Any], Callable[..., Any]]:
    if Generator._chat_pipeline_factory is None or Generator._completion_pipeline_factory is None:
        # The pipelines sit a layer above and bind themselves when imported (bind_pipelines).
        # Naming the module, as the provider registry does, keeps the import graph one-way.
        importlib.import_module(_PIPELINE_MODULE)
    assert Generator._chat_pipeline_factory is not None
    assert Generator._completion_pipeline_factory is not None
    return Generator._chat_pipeline_factory, Generator._completion_pipeline_factory


_PIPELINE_MODULE = "jib.pipeline"


def bind_pipelines(
    chat_factory: Callable[..., ChatPipeline],
    completion_factory: Callable[..., CompletionPipeline],
) -> None:
    """Let `Generator.chat`/`complete` build pipelines without importing the layer above."""
    Generator._chat_pipeline_factory = chat_factory
    Generator._completion_pipeline_factory = completion_factory
