"""The `LiteLLMGenerator` class; see the package docstring."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import Field, PrivateAttr

from jib._concurrency import RequestLimiter
from jib.generator.base import Generator
from jib.generator.litellm._errors import litellm_failure
from jib.generator.litellm._runtime import (
    fix_ollama_stop_reason,
    import_litellm,
    to_generated_message,
    to_generated_text,
    warn_if_truncated,
)
from jib.messages import GeneratedMessage, GeneratedText, Message, check_batch
from jib.params import GenerateParams

__all__ = ["LiteLLMGenerator"]

ResultT = TypeVar("ResultT")


class LiteLLMGenerator(Generator):
    """A generator that sends each request through `litellm.acompletion` / `atext_completion`.

    Every `GenerateParams` field is passed to LiteLLM, `extra` entries included (they may also
    carry LiteLLM's own arguments, such as `max_retries` or `num_ctx` for Ollama). Parameters a
    provider does not support are dropped rather than failing the call (`drop_params=True` on
    each call; set `extra={"drop_params": False}` to be told instead).

    The items of one batch run concurrently, at most `max_connections` at a time, their starts
    spaced by `min_delay_between_requests` milliseconds. Wrappers (`wrap`) apply to each request.
    Failures come back as jib's `ProviderError` family, with LiteLLM's exception as the cause.

    Attributes:
        api_base: the server's base URL, for self-hosted and proxy endpoints.
        max_connections: the most requests in flight at once, per event loop.
        min_delay_between_requests: milliseconds between the starts of two requests.
    """

    api_base: str | None = None
    max_connections: int = Field(default=10, ge=1)
    min_delay_between_requests: float = Field(default=0.0, ge=0)

    _limiter: RequestLimiter | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        """Create the request limiter now, so copies made by `wrap()` share it."""
        self._request_limiter()

    def _request_limiter(self) -> RequestLimiter:
        self._limiter = RequestLimiter.matching(
            self._limiter, self.max_connections, self.min_delay_between_requests
        )
        return self._limiter

    def __getstate__(self) -> dict[Any, Any]:
        # The limiter holds per-event-loop state that cannot be pickled; a copy makes its own.
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {**private, "_limiter": None}
        return state

    def load(self) -> LiteLLMGenerator:
        """Import LiteLLM now rather than at the first request."""
        import_litellm()
        return self

    # -- requests ------------------------------------------------------------------------------

    def _request_arguments(self, params: GenerateParams) -> dict[str, Any]:
        arguments: dict[str, Any] = {"model": self.model, "drop_params": True}
        api_key = self.get_api_key()
        if api_key is not None:
            arguments["api_key"] = api_key
        if self.api_base is not None:
            arguments["api_base"] = self.api_base
        arguments.update(params.to_dict())
        return arguments

    async def _request(
        self,
        function: Callable[..., Awaitable[Any]],
        read: Callable[[Any], ResultT],
        **arguments: Any,
    ) -> ResultT:
        """One LiteLLM call in a limiter slot, its response `read`; a failure becomes a jib error.

        Mapping here, inside the `wrap()`ped call, lets a retry wrapper match jib's errors.
        """
        async with self._request_limiter().slot():
            try:
                return read(await function(**arguments))
            except Exception as exc:
                failure = exc
            # Raised outside the `except`, so the original (which may quote the key) is not
            # chained as `__context__`; `litellm_failure` chains a redacted stand-in instead.
            raise litellm_failure(failure, provider=self.model, secrets=[arguments.get("api_key")])

    async def _chat_one(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        litellm = import_litellm()
        generated = await self._request(
            litellm.acompletion,
            to_generated_message,
            messages=[message.to_dict() for message in messages],
            **self._request_arguments(params),
        )
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, (m.content for m in messages), generated.usage)
        return generated

    async def _text_one(self, text: str, params: GenerateParams) -> GeneratedText:
        litellm = import_litellm()
        generated = await self._request(
            litellm.atext_completion,
            to_generated_text,
            prompt=text,
            **self._request_arguments(params),
        )
        fix_ollama_stop_reason(self.model, generated, params.max_tokens)
        warn_if_truncated(self.model, [text], generated.usage)
        return generated

    async def _run_batch(
        self,
        one: Callable[[Any, GenerateParams], Awaitable[ResultT]],
        inputs: Sequence[Any],
        params: Sequence[GenerateParams],
    ) -> list[ResultT | BaseException]:
        """Run `one` (wrapped) on every item concurrently; each failure is that item's result.

        Provider failures are already jib errors; anything else (a wrapper's own exception, a
        bug) is left as it is, for the pipeline's `catch()` to judge. Cancellation propagates.
        """
        import_litellm()  # a missing package fails the whole batch, once, with what to install
        call = self.wrapped(one)
        results = await asyncio.gather(
            *(call(item, item_params) for item, item_params in zip(inputs, params, strict=True)),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        return results

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Send each conversation to `litellm.acompletion`, concurrently within the limits."""
        check_batch("generate_messages", messages, params)
        return await self._run_batch(self._chat_one, messages, params)

    async def generate_texts(
        self, texts: Sequence[str], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedText | BaseException]:
        """Send each text to `litellm.atext_completion`, concurrently within the limits."""
        check_batch("generate_texts", texts, params)
        return await self._run_batch(self._text_one, texts, params)
