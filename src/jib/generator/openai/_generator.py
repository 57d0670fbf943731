"""The `OpenAIGenerator` class; see the package docstring."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr

from jib._bodies import read_limited
from jib._limits import REQUEST_LIMIT_OPTIONS
from jib._per_loop import PerLoop
from jib._secrets import redact, redacted_chain
from jib.errors import (
    InvalidGeneratorError,
    MissingDependencyError,
    ProviderConnectionError,
    ProviderTimeoutError,
)
from jib.generator._requests import RequestGenerator
from jib.generator.openai._protocol import (
    StreamState,
    chat_body,
    error_from_response,
    parse_json,
    read_chat,
    read_text,
    text_body,
)
from jib.messages import GeneratedMessage, GeneratedText, Message
from jib.params import GenerateParams

if TYPE_CHECKING:
    import aiohttp

__all__ = ["DEFAULT_API_BASE", "KEY_VARIABLE", "OpenAIGenerator"]

DEFAULT_API_BASE = "https://api.openai.com/v1"
KEY_VARIABLE = "OPENAI_API_KEY"
"""Where the key comes from when `api_key` is not set."""

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_STREAM = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class OpenAIGenerator(RequestGenerator):
    """Any server speaking the OpenAI protocol, over one pooled aiohttp session per event loop.

    `openai!MODEL,api_base=http://host:8000/v1` for vLLM, llama.cpp, Ollama's `/v1`, LM Studio,
    SGLang or `transformers serve`; plain `openai!gpt-4o-mini` for OpenAI itself. Chat goes to
    `{api_base}/chat/completions`, text to `{api_base}/completions`. Every `GenerateParams`
    field but `timeout` goes into the request body, and `extra` entries too, untouched (tools,
    response_format, logprobs, a server's own options). Limits, retries and attempts are the
    request tier's (`RequestGenerator`).

    Attributes:
        api_base: the server's base URL, up to and including `/v1`.
        api_key: the key, sent as `Authorization: Bearer …`; when unset, `OPENAI_API_KEY` is
            read from the environment (and when that is unset too, no header is sent, as local
            servers expect).
        stream_usage: ask streaming servers for a final usage chunk
            (`stream_options.include_usage`); turn off for servers that refuse the option.
        max_response_bytes: larger answers fail with `ProcessingError`.
    """

    api_base: str = DEFAULT_API_BASE
    stream_usage: bool = True
    max_response_bytes: int = Field(default=64 * 1024 * 1024, gt=0)

    default_timeout: ClassVar[float | None] = 600.0

    _sessions: PerLoop[aiohttp.ClientSession] | None = PrivateAttr(default=None)

    def before_batch(self) -> None:
        """A missing aiohttp fails the whole batch, once, saying what to install."""
        _import_aiohttp()

    # -- requests ------------------------------------------------------------------------------

    async def request_message(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        """One chat completion."""
        body = chat_body(self.model, messages, params)
        status, data = await self._post("/chat/completions", body, params)
        return read_chat(data, self._provider, status)

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """One text completion."""
        body = text_body(self.model, text, params)
        status, data = await self._post("/completions", body, params)
        return read_text(data, self._provider, status)

    async def request_message_stream(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """One chat completion as server-sent events: text deltas, then the whole answer."""
        aiohttp = _import_aiohttp()
        body = chat_body(self.model, messages, params)
        body["stream"] = True
        if self.stream_usage:
            body.setdefault("stream_options", {"include_usage": True})
        state = StreamState(self._provider)
        session = await self._session()
        try:
            async with session.post(
                self._url("/chat/completions"),
                data=json.dumps(body).encode(),
                headers=self._headers(_STREAM),
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    raise await self._failure(response)
                if "text/event-stream" not in response.headers.get("Content-Type", ""):
                    # A server that ignores `stream` answers the whole completion at once.
                    raw = await self._read(response)
                    whole = read_chat(parse_json(raw, self._provider, 200), self._provider)
                    yield whole.message.content
                    yield whole
                    return
                async for line in response.content:
                    delta = state.feed(line)
                    if delta:
                        yield delta
                    if state.done:
                        break
        except aiohttp.ClientError as exc:
            failure: Exception | None = exc
        else:
            failure = None
        if failure is not None:
            raise self._connection_error(failure) from redacted_chain(failure, self._secrets())
        if not state.done and state.finish_reason is None:
            raise ProviderConnectionError(
                "the stream ended before the answer was finished", provider=self._provider
            )
        yield state.message()

    # -- one POST ------------------------------------------------------------------------------

    async def _post(
        self, path: str, body: dict[str, Any], params: GenerateParams
    ) -> tuple[int, Any]:
        aiohttp = _import_aiohttp()
        session = await self._session()
        try:
            async with session.post(
                self._url(path),
                data=json.dumps(body).encode(),
                headers=self._headers(_JSON),
                allow_redirects=False,
            ) as response:
                if response.status >= 300:
                    raise await self._failure(response)
                raw = await self._read(response)
                return response.status, parse_json(raw, self._provider, response.status)
        except aiohttp.ClientError as exc:
            failure: Exception = exc
        except asyncio.TimeoutError as exc:  # aiohttp's socket timeouts
            failure = exc
        # Raised outside the `except`: what aiohttp raised is chained only as a redacted
        # stand-in (see jib._secrets.redacted_chain).
        if isinstance(failure, asyncio.TimeoutError):
            error: Exception = ProviderTimeoutError(
                f"no answer from {self._origin}", provider=self._provider
            )
        else:
            error = self._connection_error(failure)
        raise error from redacted_chain(failure, self._secrets())

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        encoded = "Content-Encoding" in response.headers
        declared = None if encoded else response.headers.get("Content-Length")
        return await read_limited(response.content.iter_any(), declared, self.max_response_bytes)

    async def _failure(self, response: aiohttp.ClientResponse) -> Exception:
        raw = await response.content.read(64 * 1024)
        if 300 <= response.status < 400:
            return ProviderConnectionError(
                f"the server answered a redirect ({response.status}) to "
                f"{response.headers.get('Location', '?')!r}; jib does not follow redirects "
                "with a key: set api_base to the final URL",
                status_code=response.status,
                provider=self._provider,
                retryable=False,
            )
        return error_from_response(
            response.status, raw, response.headers, self._provider, self._secrets()
        )

    def _connection_error(self, exc: Exception) -> ProviderConnectionError:
        import aiohttp

        retryable = not isinstance(exc, aiohttp.InvalidURL)
        kind = type(exc).__name__
        return ProviderConnectionError(
            redact(f"could not reach {self._origin}: {kind}: {exc}", self._secrets()),
            provider=self._provider,
            retryable=retryable,
        )

    # -- configuration -------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return self.api_base.rstrip("/") + path

    @property
    def _origin(self) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(self.api_base)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"

    @property
    def _provider(self) -> str:
        return f"openai!{self.model}"

    def _key(self) -> str | None:
        key = self.get_api_key()
        if key is None:
            key = os.environ.get(KEY_VARIABLE) or None
        return key

    def _secrets(self) -> list[str]:
        try:
            key = self._key()
        except InvalidGeneratorError:
            return []
        return [key] if key else []

    def _headers(self, base: dict[str, str]) -> dict[str, str]:
        key = self._key()
        if key is None:
            return base
        return {**base, "Authorization": f"Bearer {key}"}

    async def _session(self) -> aiohttp.ClientSession:
        sessions = self._sessions
        if sessions is None:
            sessions = self._sessions = PerLoop(_open_session, _close_session, _is_closed)
        return await sessions.get()

    async def aclose(self) -> None:
        """Close the running loop's session (a new one opens on next use).

        Optional: sessions also close when their event loop shuts down (as `asyncio.run` does).
        """
        if self._sessions is not None:
            await self._sessions.aclose()

    def __getstate__(self) -> dict[Any, Any]:
        # Sessions belong to event loops and cannot be pickled; a copy opens its own.
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {**private, "_sessions": None}
        return state

    # -- what this provider says about itself (see `Generator`) --------------------------------

    endpoint_field: ClassVar[str | None] = "api_base"
    ambient_credentials: ClassVar[bool] = True  # OPENAI_API_KEY, when no key is given
    inert_options: ClassVar[frozenset[str]] = REQUEST_LIMIT_OPTIONS | {
        "stream_usage",
        *(
            f"extra.{name}"
            for name in (
                "logit_bias",
                "logprobs",
                "min_p",
                "parallel_tool_calls",
                "reasoning_effort",
                "repetition_penalty",
                "response_format",
                "tool_choice",
                "tools",
                "top_logprobs",
            )
        ),
    }


def _import_aiohttp() -> Any:
    try:
        import aiohttp
    except ImportError as exc:
        raise MissingDependencyError("aiohttp", "openai", "OpenAIGenerator") from exc
    return aiohttp


def _open_session() -> aiohttp.ClientSession:
    _import_aiohttp()
    import aiohttp

    # The tier bounds requests in flight; the connector only pools (limit=0: no second cap).
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        cookie_jar=aiohttp.DummyCookieJar(),
    )


async def _close_session(session: aiohttp.ClientSession) -> None:
    await session.close()
    # Closing a transport finishes on the loop's next turn; `asyncio.run` closes the loop right
    # after this, which would leave the sockets open ("unclosed transport").
    await asyncio.sleep(0)


def _is_closed(session: aiohttp.ClientSession) -> bool:
    return bool(session.closed)
