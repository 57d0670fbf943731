"""The `LiteLLMGenerator` class; see the package docstring."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field, PrivateAttr

from jib._limits import REQUEST_LIMIT_OPTIONS
from jib._retry import retry_after_from
from jib._wire import DEFAULT_MAX_RESPONSE_BYTES
from jib.errors import JibError, MalformedResponseError, MissingDependencyError, ProviderError
from jib.generator._response_key import params_material
from jib.generator.litellm._carry import check_params, check_parts
from jib.generator.litellm._errors import _chain, litellm_failure
from jib.generator.litellm._prices import flat_rates
from jib.generator.litellm._runtime import (
    OLLAMA_PREFIXES,
    fix_ollama_stop_reason,
    import_litellm,
    warn_if_truncated,
)
from jib.generator.openai._protocol import (
    INERT_REQUEST_OPTIONS,
    StreamState,
    check_text_params,
    read_chat,
    read_text,
    wire_messages,
)
from jib.generator.remote import RequestGenerator, StreamNotHonoured
from jib.messages import GeneratedMessage, GeneratedText, Message, Usage
from jib.params import GenerateParams

if TYPE_CHECKING:
    from jib.generator._batch_api import BatchClient
    from jib.generator.litellm._clients import BoundedClients

__all__ = ["LiteLLMGenerator"]

ResultT = TypeVar("ResultT")

_NO_HIDDEN_RETRIES = {"max_retries": 0, "num_retries": 0}
"""LiteLLM's own retries and the OpenAI client's under it, switched off: jib retries, and
counts every attempt."""


class LiteLLMGenerator(RequestGenerator):
    """A generator that sends each request through `litellm.acompletion` / `atext_completion`.

    Every `GenerateParams` field is passed to LiteLLM, `extra` entries included (they may also
    carry LiteLLM's own arguments, such as `num_ctx` for Ollama), and every message in OpenAI's
    shape (content parts, tool calls and results, `cache_control`): LiteLLM writes each
    provider's own format. Sampling parameters a provider does not support are dropped rather
    than failing the call (`drop_params=True` on each call; set `extra={"drop_params": False}`
    to be told instead); a content part or a beyond-text parameter (`tools`, `response_format`,
    …) LiteLLM would leave out is refused before sending (`_carry`).

    Requests go through jib's request tier (`RequestGenerator`): at most `max_connections` in
    flight, `rpm`/`tpm` limits, and transient failures retried by jib (LiteLLM's and the OpenAI
    client's own hidden retries are switched off, so every attempt is counted). Failures come
    back as jib's `ProviderError` family, with LiteLLM's exception as the cause. Answers are
    read by the same reader as `openai!`'s (LiteLLM answers in OpenAI's shape for every
    provider), so usage, stop reasons, logprobs and malformed answers mean the same on both.

    Attributes:
        api_base: the server's base URL, for self-hosted and proxy endpoints.
        max_response_bytes: the most one request may read: a body or a whole stream, after
            decompression, each line counting 512 bytes more. A larger answer fails with
            `ProcessingError`. Which routes this holds on: docs/providers/litellm.md.
        (and the limits and retry settings of `RequestGenerator`)
    """

    api_base: str | None = None
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, gt=0)

    default_timeout: ClassVar[float | None] = 600.0

    _bounds: BoundedClients | None = PrivateAttr(default=None)

    def load(self) -> LiteLLMGenerator:
        """Import LiteLLM now rather than at the first request."""
        import_litellm()
        return self

    def before_batch(self) -> None:
        """A missing LiteLLM fails the whole batch, once, saying what to install."""
        import_litellm()

    # -- what a request may carry ----------------------------------------------------------------

    def check_request(self, item: Sequence[Message] | str, params: GenerateParams) -> None:
        """Refuse, before anything is sent, a part or a beyond-text param LiteLLM would leave
        out for this provider (see `_carry`); a text completion takes no tools or audio."""
        label = self._provider_label
        if isinstance(item, str):
            check_text_params(params, label)
            return
        route = self._route(params)
        if route is None:
            return  # LiteLLM does not know the provider: its call will say so
        provider, supported = route
        check_parts(item, provider, label)
        check_params(params, supported, label)

    def _route(self, params: GenerateParams) -> tuple[str, Sequence[str] | None] | None:
        """LiteLLM's provider for this model, and the OpenAI params it takes there; worked out
        once per model, `api_base` and `custom_llm_provider`."""
        custom = params.extra.get("custom_llm_provider")
        key = (self.model, self.api_base, custom)
        cache = self._runtime["_cache"]
        known: tuple[tuple[Any, ...], Any] | None = cache.get("route")
        if known is not None and known[0] == key:
            route: tuple[str, Sequence[str] | None] | None = known[1]
            return route
        litellm = import_litellm()
        try:
            _, provider, _, _ = litellm.get_llm_provider(
                model=self.model, custom_llm_provider=custom, api_base=self.api_base
            )
            supported = litellm.get_supported_openai_params(
                model=self.model, custom_llm_provider=provider
            )
        except Exception:  # LiteLLM's own error for a model it cannot route, raised in the call
            route = None
        else:
            route = (provider, supported)
        cache["route"] = (key, route)
        return route

    # -- requests ------------------------------------------------------------------------------

    def _request_arguments(self, params: GenerateParams) -> dict[str, Any]:
        arguments: dict[str, Any] = {"model": self.model, "drop_params": True}
        arguments.update(_NO_HIDDEN_RETRIES)
        api_key = self.get_api_key()
        if api_key is not None:
            arguments["api_key"] = api_key
        if self.api_base is not None:
            arguments["api_base"] = self.api_base
        arguments.update(params.to_dict())
        return arguments

    def response_cache_request(self, item: Sequence[Message] | str, params: GenerateParams) -> Any:
        """The arguments of this item's LiteLLM call (the key left out), for jib's response
        cache: the model, `api_base`, every param (`extra` included: `num_ctx` changes an
        Ollama answer), and the messages as sent."""
        arguments: dict[str, Any] = {"model": self.model, "api_base": self.api_base}
        arguments.update(params_material(params))
        if isinstance(item, str):
            arguments["prompt"] = item
        else:
            arguments["messages"] = wire_messages(item)
        return arguments

    async def _bounded_arguments(self, params: GenerateParams, text: bool) -> dict[str, Any]:
        """`_request_arguments` plus the `client=` that holds the answer to
        `max_response_bytes` (see `_clients`), when jib bounds LiteLLM's route."""
        from jib.generator.litellm._clients import BoundedClients

        arguments = self._request_arguments(params)
        bounds: BoundedClients | None = self._runtime["_bounds"]
        if bounds is None or bounds.limit != self.max_response_bytes:
            bounds = self._bounds = BoundedClients(self.max_response_bytes)
        client = await bounds.client_for(arguments, text)
        if client is not None:
            arguments.setdefault("client", client)
        return arguments

    async def _request(
        self,
        function: Callable[..., Awaitable[Any]],
        read: Callable[[Any, str], ResultT],
        **arguments: Any,
    ) -> ResultT:
        """One LiteLLM call, its response `read`; a failure becomes a jib error."""
        try:
            response = await function(**arguments)
        except Exception as exc:
            failure = exc
        else:
            return read(_plain(response), self._provider_label)
        raise self._error(failure, arguments)

    def _error(self, exc: Exception, arguments: dict[str, Any]) -> BaseException:
        """What to raise for an exception a LiteLLM call raised: jib's error, its cause a
        redacted stand-in of `exc` (raise it outside the `except`, so `exc` is not chained as
        `__context__`, key and all); `exc` itself when it is not LiteLLM's."""
        from jib.generator.litellm._bounds import overflow_in

        overflow = overflow_in(exc)
        if overflow is not None:
            return overflow
        error = litellm_failure(exc, provider=self.model, secrets=[arguments.get("api_key")])
        if error is exc:
            return exc
        # LiteLLM reports a body it could not parse, and a stream cut short, as a 500 of its own
        # making: they are what openai! calls them.
        replacement: ProviderError | None = None
        if _cut_body(exc):
            replacement = MalformedResponseError(
                f"the server's answer is not valid JSON: {error.message}"
                if isinstance(error, ProviderError)
                else str(error),
                provider=self.model,
            )
        elif _cut_stream(exc):
            replacement = StreamState(self._provider_label, 0).cut()
        if replacement is not None:
            replacement.__cause__ = error.__cause__
            replacement.__suppress_context__ = True
            error = replacement
        if isinstance(error, ProviderError) and error.retry_after is None:
            error.retry_after = _retry_after_in(exc)
        return error

    async def request_message(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        """Send one conversation to `litellm.acompletion`."""
        litellm = import_litellm()
        generated = await self._request(
            litellm.acompletion,
            read_chat,
            messages=wire_messages(messages),
            **await self._bounded_arguments(params, text=False),
        )
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, (m.content for m in messages), generated.usage)
        return generated

    async def request_message_stream(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """Stream one conversation through `litellm.acompletion(stream=True)`."""
        litellm = import_litellm()
        arguments = await self._bounded_arguments(params, text=False)
        arguments["stream"] = True
        arguments.setdefault("stream_options", {"include_usage": True})
        state = StreamState(self._provider_label, self.max_response_bytes)
        try:
            response = await litellm.acompletion(messages=wire_messages(messages), **arguments)
            async for chunk in response:
                delta = state.feed_chunk(_plain(chunk))
                if delta:
                    yield delta
        except JibError:
            raise
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
        if failure is not None:
            raise self._error(failure, arguments)
        if not state.said_anything:
            # Nothing streamed, not even usage: the server most likely ignored `stream`, and
            # LiteLLM made up one empty chunk in place of its answer. The request tier asks
            # again without streaming.
            raise StreamNotHonoured
        generated = state.message()
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, (m.content for m in messages), generated.usage)
        yield generated

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """Send one text to `litellm.atext_completion`."""
        litellm = import_litellm()
        generated = await self._request(
            litellm.atext_completion,
            read_text,
            prompt=text,
            **await self._bounded_arguments(params, text=True),
        )
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, [text], generated.usage)
        return generated

    def batch_api_client(self) -> BatchClient | None:
        """Anthropic's Message Batches API for `anthropic/…` models; OpenAI's batch API for
        `openai/…` models (at `api_base`, or OpenAI's); `None` for the others."""
        from jib.generator.litellm._anthropic_batch_api import AnthropicBatchClient, is_anthropic

        if is_anthropic(self):
            return AnthropicBatchClient(self)
        if self.model.startswith("openai/"):
            from jib.generator.openai import DEFAULT_API_BASE, OpenAIGenerator

            native = OpenAIGenerator(
                model=self.model.removeprefix("openai/"),
                api_key=self.api_key,
                api_base=self.api_base or DEFAULT_API_BASE,
            )
            return native.batch_api_client()
        return None

    # -- what this provider says about itself (see `Generator`) --------------------------------

    endpoint_field: ClassVar[str | None] = "api_base"
    # Hosted providers take keys and cloud credentials from the environment, even with api_key.
    ambient_credentials: ClassVar[bool] = True
    # LiteLLM's own `drop_params`, and Ollama's `num_ctx`, besides OpenAI's request fields.
    inert_options: ClassVar[frozenset[str]] = (
        REQUEST_LIMIT_OPTIONS | INERT_REQUEST_OPTIONS | {"extra.drop_params", "extra.num_ctx"}
    )

    def list_price(self, usage: Usage) -> float | None:
        """The cost LiteLLM's bundled price map gives (read from disk, never downloaded).

        Ollama's models are self-hosted and free: LiteLLM would ask an Ollama server for them
        (`/api/show`, blocking, at `OLLAMA_API_BASE` whatever `api_base` says), so it is not
        asked. A flat price is looked up once per model (`jib.generator.litellm._prices`).
        """
        if self.model.startswith(OLLAMA_PREFIXES):
            return 0.0
        try:
            litellm: Any = import_litellm()
        except MissingDependencyError:
            return None
        rates = flat_rates(litellm, self.model)
        if rates is not None:
            total = usage.input_tokens * rates[0] + usage.output_tokens * rates[1]
            return total if math.isfinite(total) and total >= 0 else None
        try:
            input_cost, output_cost = litellm.cost_per_token(
                model=self.model,
                prompt_tokens=usage.input_tokens,
                completion_tokens=usage.output_tokens,
            )
        except Exception:  # LiteLLM raises its own errors for a model its map does not price
            return None
        total = float(input_cost) + float(output_cost)
        return total if math.isfinite(total) and total >= 0 else None


def _plain(response: Any) -> Any:
    """LiteLLM's response object as the plain OpenAI-shaped dict it stands for."""
    dump = getattr(response, "model_dump", None)
    return dump() if callable(dump) else response


def _cut_body(exc: BaseException) -> bool:
    """Whether the answer came back but could not be parsed as JSON (cut, or nested too deep)."""
    return any(isinstance(error, (json.JSONDecodeError, RecursionError)) for error in _chain(exc))


def _cut_stream(exc: BaseException) -> bool:
    """Whether LiteLLM saw a stream end before it said it was over."""
    return any("Stream ended before a finish_reason" in str(error) for error in _chain(exc))


def _retry_after_in(exc: BaseException) -> float | None:
    """The `Retry-After` of the response behind a LiteLLM exception (or its causes), if any."""
    for error in _chain(exc):
        headers = getattr(error, "litellm_response_headers", None) or getattr(
            getattr(error, "response", None), "headers", None
        )
        wait = retry_after_from(headers) if headers is not None else None
        if wait is not None:
            return wait
    return None
