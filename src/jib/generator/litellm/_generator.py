"""The `LiteLLMGenerator` class; see the package docstring."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import Field, PrivateAttr

from jib._retry import retry_after_from
from jib.errors import MalformedResponseError, ProviderError
from jib.generator._requests import RequestGenerator
from jib.generator.litellm._errors import _chain, litellm_failure
from jib.generator.litellm._runtime import (
    fix_ollama_stop_reason,
    import_litellm,
    to_generated_message,
    to_generated_text,
    warn_if_truncated,
)
from jib.messages import GeneratedMessage, GeneratedText, Message, Usage, normalize_stop_reason
from jib.params import GenerateParams

if TYPE_CHECKING:
    from jib.generator.litellm._clients import BoundedClients

__all__ = ["LiteLLMGenerator"]

ResultT = TypeVar("ResultT")

_NO_HIDDEN_RETRIES = {"max_retries": 0, "num_retries": 0}
"""LiteLLM's own retries and the OpenAI client's under it, switched off: jib retries, and
counts every attempt."""


class LiteLLMGenerator(RequestGenerator):
    """A generator that sends each request through `litellm.acompletion` / `atext_completion`.

    Every `GenerateParams` field is passed to LiteLLM, `extra` entries included (they may also
    carry LiteLLM's own arguments, such as `num_ctx` for Ollama). Parameters a provider does not
    support are dropped rather than failing the call (`drop_params=True` on each call; set
    `extra={"drop_params": False}` to be told instead).

    Requests go through jib's request tier (`RequestGenerator`): at most `max_connections` in
    flight, `rpm`/`tpm` limits, and transient failures retried by jib (LiteLLM's and the OpenAI
    client's own hidden retries are switched off, so every attempt is counted). Failures come
    back as jib's `ProviderError` family, with LiteLLM's exception as the cause.

    Attributes:
        api_base: the server's base URL, for self-hosted and proxy endpoints.
        max_response_bytes: the most one request may read: a body or a whole stream, after
            decompression, each line counting 512 bytes more. A larger answer fails with
            `ProcessingError`. Which routes this holds on: docs/providers/litellm.md.
        (and the limits and retry settings of `RequestGenerator`)
    """

    api_base: str | None = None
    max_response_bytes: int = Field(default=16 * 1024 * 1024, gt=0)

    default_timeout: ClassVar[float | None] = 600.0

    _bounds: BoundedClients | None = PrivateAttr(default=None)

    def load(self) -> LiteLLMGenerator:
        """Import LiteLLM now rather than at the first request."""
        import_litellm()
        return self

    def before_batch(self) -> None:
        """A missing LiteLLM fails the whole batch, once, saying what to install."""
        import_litellm()

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

    async def _bounded_arguments(self, params: GenerateParams, text: bool) -> dict[str, Any]:
        """`_request_arguments` plus the `client=` that holds the answer to
        `max_response_bytes` (see `_clients`), when jib bounds LiteLLM's route."""
        from jib.generator.litellm._clients import BoundedClients

        arguments = self._request_arguments(params)
        bounds = self._bounds
        if bounds is None or bounds.limit != self.max_response_bytes:
            bounds = self._bounds = BoundedClients(self.max_response_bytes)
        client = await bounds.client_for(arguments, text)
        if client is not None:
            arguments.setdefault("client", client)
        return arguments

    async def _request(
        self,
        function: Callable[..., Awaitable[Any]],
        read: Callable[[Any], ResultT],
        **arguments: Any,
    ) -> ResultT:
        """One LiteLLM call, its response `read`; a failure becomes a jib error."""
        try:
            return read(await function(**arguments))
        except Exception as exc:
            failure = exc
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
        if _cut_body(exc):
            # LiteLLM reports a body it could not parse as a 500 of its own making.
            malformed = MalformedResponseError(
                f"the server's answer is not valid JSON: {error.message}"
                if isinstance(error, ProviderError)
                else str(error),
                provider=self.model,
            )
            malformed.__cause__ = error.__cause__
            malformed.__suppress_context__ = True
            error = malformed
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
            to_generated_message,
            messages=[message.to_dict() for message in messages],
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
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Usage | None = None
        extra: dict[str, Any] = {}
        try:
            response = await litellm.acompletion(
                messages=[message.to_dict() for message in messages], **arguments
            )
            async for chunk in response:
                chunk_usage = _usage_of(chunk)
                if chunk_usage is not None:
                    usage = chunk_usage
                if getattr(chunk, "id", None):
                    extra["response_id"] = chunk.id
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                choice = choices[0]
                if getattr(choice, "finish_reason", None):
                    finish_reason = choice.finish_reason
                delta = getattr(getattr(choice, "delta", None), "content", None)
                if delta:
                    parts.append(delta)
                    yield delta
        except Exception as exc:
            failure: Exception | None = exc
        else:
            failure = None
        if failure is not None:
            raise self._error(failure, arguments)
        if not parts and usage is None:
            # Nothing streamed and no usage: the server most likely ignored `stream` (LiteLLM
            # then makes up one empty chunk). Ask again without it; give the answer at once.
            yield await self.request_message(messages, params)
            return
        generated = GeneratedMessage(
            Message("assistant", "".join(parts)), normalize_stop_reason(finish_reason), usage, extra
        )
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, (m.content for m in messages), generated.usage)
        yield generated

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """Send one text to `litellm.atext_completion`."""
        litellm = import_litellm()
        generated = await self._request(
            litellm.atext_completion,
            to_generated_text,
            prompt=text,
            **await self._bounded_arguments(params, text=True),
        )
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, [text], generated.usage)
        return generated


def _usage_of(chunk: Any) -> Usage | None:
    usage = getattr(chunk, "usage", None)
    if usage is None:
        return None
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    total = int(getattr(usage, "total_tokens", 0) or prompt + completion)
    return Usage(prompt, completion, total)


def _cut_body(exc: BaseException) -> bool:
    """Whether the answer came back but could not be parsed as JSON (cut, or nested too deep)."""
    return any(isinstance(error, (json.JSONDecodeError, RecursionError)) for error in _chain(exc))


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
