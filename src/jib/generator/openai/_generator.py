"""The `OpenAIGenerator` class; see the package docstring."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from jib._limits import REQUEST_LIMIT_OPTIONS
from jib._wire import WireRequest, WireResponse
from jib._wire.models import Body
from jib.errors import InvalidGeneratorError, ProviderError
from jib.generator._response_key import SentRequest, keep_sent_body, kept_bodies, sent_body
from jib.generator._wired import WiredGenerator
from jib.generator.openai._bodies import EncodedBodies
from jib.generator.openai._protocol import (
    INERT_REQUEST_OPTIONS,
    StreamState,
    chat_body,
    check_text_params,
    error_from_response,
    parse_json,
    read_chat,
    read_text,
    sampling_fields,
    text_body,
)
from jib.messages import GeneratedMessage, GeneratedText, Message
from jib.params import GenerateParams

if TYPE_CHECKING:
    from jib.generator.openai._batch_api import OpenAIBatchClient

__all__ = ["DEFAULT_API_BASE", "KEY_VARIABLE", "OpenAIGenerator"]

DEFAULT_API_BASE = "https://api.openai.com/v1"
KEY_VARIABLE = "OPENAI_API_KEY"
"""Where the key comes from when `api_key` is not set."""

_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
_STREAM = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class OpenAIGenerator(WiredGenerator):
    """Any server speaking the OpenAI protocol, over jib's wire (pooled aiohttp, or httpx
    through a proxy).

    `openai!MODEL,api_base=http://host:8000/v1` for vLLM, llama.cpp, Ollama's `/v1`, LM Studio,
    SGLang or `transformers serve`; plain `openai!gpt-4o-mini` for OpenAI itself. Chat goes to
    `{api_base}/chat/completions`, text to `{api_base}/completions`. Messages go out in
    OpenAI's shape (content parts, tool calls, tool results; `cache_control` marks too, except
    to OpenAI's own API, which caches by itself and refuses them); every `GenerateParams` field
    but `timeout` goes into the request body (tools, tool_choice, response_format, …), and
    `extra` entries too, untouched (logprobs, a server's own options). Inline media is never
    JSON-escaped, and a retry resends the same body (`_bodies`). Limits, retries and attempts
    are the request tier's (`RequestGenerator`); proxies, TLS, redirects and size bounds the
    wire's (`WiredGenerator`).

    Attributes:
        api_base: the server's base URL, up to and including `/v1`.
        api_key: the key, sent as `Authorization: Bearer …`; when unset, `OPENAI_API_KEY` is
            read from the environment (and when that is unset too, no header is sent, as local
            servers expect).
        stream_usage: ask streaming servers for a final usage chunk
            (`stream_options.include_usage`); turn off for servers that refuse the option.
        (and `proxy`, `verify`, `max_response_bytes`, `max_redirects` of `WiredGenerator`, and
        the limits and retry settings of `RequestGenerator`)
    """

    api_base: str = DEFAULT_API_BASE
    stream_usage: bool = True

    default_timeout: ClassVar[float | None] = 600.0

    # -- requests ------------------------------------------------------------------------------

    async def request_message(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        """One chat completion."""
        sent = sent_body(messages, params, self._body_owner())
        if sent is not None:  # written for the response cache's key: sent as it was hashed
            return await self._chat(sent)
        body = chat_body(self.model, messages, params, cache_marks=self._sends_cache_marks())
        if not any(message.has_parts for message in messages):
            # Text only: encoding is cheap, and there is nothing worth keeping for a retry.
            return await self._chat(json.dumps(body).encode())
        with _Attempt(self._bodies()) as attempt:
            return await self._chat(attempt.encode(messages, params, body))

    async def _chat(self, data: Body) -> GeneratedMessage:
        response = await self.wire.send(self._post("/chat/completions", data, _JSON), self)
        label = self.wire_label
        return read_chat(self._answer(response, label), label, response.status)

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """One text completion."""
        body = sent_body(text, params, self._body_owner())
        if body is None:
            body = json.dumps(text_body(self.model, text, params)).encode()
        response = await self.wire.send(self._post("/completions", body, _JSON), self)
        label = self.wire_label
        return read_text(self._answer(response, label), label, response.status)

    def check_request(self, item: Sequence[Message] | str, params: GenerateParams) -> None:
        """A text completion cannot carry tools or audio params: refused before sending."""
        if isinstance(item, str):
            check_text_params(params, self.wire_label)

    async def request_message_stream(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """One chat completion as server-sent events: text deltas (tool calls put back together
        from theirs), then the whole answer.

        A server that ignores `stream` answers the whole completion at once; it is read from
        the same response.
        """
        body = chat_body(self.model, messages, params, cache_marks=self._sends_cache_marks())
        body["stream"] = True
        if self.stream_usage:
            body.setdefault("stream_options", {"include_usage": True})
        wire = self.wire
        state = StreamState(self.wire_label, self.max_response_bytes)
        with _Attempt(self._bodies()) as attempt:
            data = attempt.encode(messages, params, body)
            request = self._post("/chat/completions", data, _STREAM)
            async with wire.stream(request, self) as response:
                if response.status >= 300 or "text/event-stream" not in response.headers.get(
                    "Content-Type", ""
                ):
                    await wire.read(response, self)
                    label = self.wire_label
                    whole = read_chat(self._answer(response, label), label, response.status)
                    yield whole.message.content
                    yield whole
                    return
                async for line in wire.read_lines(response, self):
                    delta = state.feed(line)
                    if delta:
                        yield delta
                    if state.done:
                        break
            yield state.message()

    def response_cache_request(self, item: Sequence[Message] | str, params: GenerateParams) -> Any:
        """The request this item puts on the wire, for jib's response cache: the URL and the
        body (not streamed: a streamed answer is the same answer), never the key.

        A body of text only is written as it is sent (a `SentRequest`), and kept for the send
        that follows while the cache sends a batch (`_response_key.sending_bodies`); a body
        with content parts (whose media are written apart, `_bodies`) is `{"url", "body"}`."""
        if isinstance(item, str):
            url = self.api_base.rstrip("/") + "/completions"
            return self._sent_request(item, params, url, text_body(self.model, item, params))
        return self.response_cache_requests([item], [params])[0]

    def response_cache_requests(
        self, items: Sequence[Sequence[Message] | str], params: Sequence[GenerateParams]
    ) -> list[Any]:
        """`response_cache_request` of each item, the URL, the cache marks' setting and each
        distinct params object's part of the body worked out once for the batch."""
        model = self.model
        marks = self._sends_cache_marks()
        url = self.api_base.rstrip("/") + "/chat/completions"
        kept = kept_bodies()  # the bodies are kept for the sends (`_sent_request`), owned by
        owner = self._body_owner()  # this model and endpoint
        shared: dict[int, dict[str, Any]] = {}
        requests: list[Any] = []
        dumps = json.dumps
        for item, item_params in zip(items, params, strict=True):
            if isinstance(item, str):
                requests.append(self.response_cache_request(item, item_params))
                continue
            sampling = shared.get(id(item_params))
            if sampling is None:
                sampling = shared[id(item_params)] = sampling_fields(item_params)
            body = chat_body(model, item, item_params, cache_marks=marks, sampling=sampling)
            if any(message.has_parts for message in item):
                requests.append({"url": url, "body": body})
                continue
            data = dumps(body).encode()
            if kept is not None:
                kept[(id(item), id(item_params))] = (item, item_params, owner, data)
            requests.append(SentRequest(url, data))
        return requests

    def _sent_request(
        self, item: Sequence[Message] | str, params: GenerateParams, url: str, body: Any
    ) -> SentRequest:
        """A text-only body written as it is sent, and kept for the send that follows."""
        data = json.dumps(body).encode()
        keep_sent_body(item, params, self._body_owner(), data)
        return SentRequest(url, data)

    def _body_owner(self) -> tuple[str, str]:
        """What a body kept for sending was written for, besides its item and params."""
        return (self.model, self.api_base)

    # -- one request, one answer ---------------------------------------------------------------

    def _post(self, path: str, body: Body, headers: dict[str, str]) -> WireRequest:
        url = self.api_base.rstrip("/") + path
        return WireRequest("POST", url, self._headers(headers), body)

    def _bodies(self) -> EncodedBodies:
        cache = self._runtime["_cache"]
        bodies: EncodedBodies | None = cache.get("bodies")
        if bodies is None:
            bodies = cache["bodies"] = EncodedBodies()
        return bodies

    def _sends_cache_marks(self) -> bool:
        """Whether `cache_control` marks go out: not to OpenAI's own API, which caches by
        itself and refuses the field (LiteLLM's `openai/` route leaves them out there too)."""
        api_base = self.api_base
        cache = self._runtime["_cache"]
        known: tuple[str, bool] | None = cache.get("cache_marks")
        if known is not None and known[0] is api_base:
            return known[1]
        host = (urlsplit(api_base).hostname or "").lower()
        sends = not (host == "openai.com" or host.endswith(".openai.com"))
        cache["cache_marks"] = (api_base, sends)
        return sends

    def _answer(self, response: WireResponse, label: str) -> Any:
        """The answer's JSON, or the normalized error its status stands for."""
        if response.status >= 300:
            raise error_from_response(
                response.status, response.body, response.headers, label, self.wire_secrets()
            )
        return parse_json(response.body, label, response.status)

    # -- configuration -------------------------------------------------------------------------

    def _key(self) -> str | None:
        key = self.get_api_key()
        if key is None:
            key = os.environ.get(KEY_VARIABLE) or None
        return key

    def wire_secrets(self) -> Sequence[str | None]:
        """The key (given, or from `OPENAI_API_KEY`): kept out of errors and logs."""
        try:
            return [self._key()]
        except InvalidGeneratorError:
            return []

    def _headers(self, base: dict[str, str]) -> dict[str, str]:
        key = self._key()
        if key is None:
            return base
        # The same headers object while the key stays the same: the wire checks a request's
        # headers once, not per request.
        cache = self._runtime["_cache"]
        known: tuple[str, dict[str, str], dict[str, str]] | None = cache.get("headers")
        if known is not None and known[0] == key and known[1] is base:
            return known[2]
        if not key.isprintable():
            raise InvalidGeneratorError(
                "the api key holds a line break or another unprintable character (read from a "
                "file with its trailing newline?); it cannot be sent in a header"
            )
        headers = {**base, "Authorization": f"Bearer {key}"}
        cache["headers"] = (key, base, headers)
        return headers

    def batch_api_client(self) -> OpenAIBatchClient:
        """OpenAI's batch API (files + `/batches`) at `api_base`."""
        from jib.generator.openai._batch_api import OpenAIBatchClient

        return OpenAIBatchClient(self)

    # -- what this provider says about itself (see `Generator`) --------------------------------

    endpoint_field: ClassVar[str | None] = "api_base"
    ambient_credentials: ClassVar[bool] = True  # OPENAI_API_KEY, when no key is given
    inert_options: ClassVar[frozenset[str]] = (
        REQUEST_LIMIT_OPTIONS | INERT_REQUEST_OPTIONS | {"stream_usage"}
    )


class _Attempt:
    """One attempt's use of the encoded bodies: kept for the next attempt when this one fails
    in a way the request tier retries, forgotten otherwise."""

    __slots__ = ("bodies", "encode")

    def __init__(self, bodies: EncodedBodies) -> None:
        self.bodies = bodies
        self.encode = bodies.encode

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, traceback: Any) -> None:
        if not (isinstance(error, ProviderError) and error.retryable):
            self.bodies.done()
