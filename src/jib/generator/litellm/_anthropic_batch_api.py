"""Anthropic's Message Batches API for `anthropic/…` models of the LiteLLM path.

The protocol, as Anthropic documents it:

1. `POST {api_base}/v1/messages/batches` `{"requests": [{"custom_id", "params": {...}}]}`, each
   `params` the Messages API body LiteLLM sends for the same request (jib asks LiteLLM's own
   Anthropic transformation for it, so the batch carries exactly what `jib run` without
   `--batch-api` would send);
2. `GET {api_base}/v1/messages/batches/{id}` until `processing_status` is `ended`;
3. `GET {results_url}`: one line a request, `{"custom_id", "result": {"type": "succeeded",
   "message"} | {"type": "errored", "error"} | {"type": "expired"} | {"type": "canceled"}}`,
   in any order.

A message is read by jib's OpenAI-shape reader (`read_chat`) after turning its content blocks
into OpenAI's shape, so usage (cache reads and writes included), stop reasons and tool calls mean
what they mean on every other path. The key (`x-api-key`) goes to `api_base`'s origin only: a
`results_url` on another origin is refused. Requests go over jib's wire (proxies from the
environment, the system's certificates).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jib._secrets import redact
from jib._wire import Wire, WireRequest, WireResponse, WireSettings
from jib._wire.models import origin_of
from jib.errors import (
    BadRequestError,
    InvalidGeneratorError,
    MalformedResponseError,
    ProcessingError,
    ProviderError,
    error_for_status,
)
from jib.generator._batch_api import (
    BatchClient,
    BatchItem,
    BatchState,
    ItemResult,
    Submitted,
    endpoint_without_credentials,
    result_object,
)
from jib.generator.litellm._runtime import import_litellm
from jib.generator.openai._protocol import (
    error_from_response,
    parse_json,
    read_chat,
    wire_messages,
)

if TYPE_CHECKING:
    from jib.generator.litellm._generator import LiteLLMGenerator

__all__ = ["ANTHROPIC_VERSION", "AnthropicBatchClient", "is_anthropic"]

DEFAULT_API_BASE = "https://api.anthropic.com"
KEY_VARIABLE = "ANTHROPIC_API_KEY"
ANTHROPIC_VERSION = "2023-06-01"
DOWNLOAD_BYTES = 1 << 30
"""The largest results line read (and half the largest results file): 1 GiB."""

_PREFIX = "anthropic/"
_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# LiteLLM's own arguments, never a Messages API field.
_NOT_PARAMS = frozenset({"timeout", "drop_params", "num_ctx", "custom_llm_provider"})


def is_anthropic(generator: LiteLLMGenerator) -> bool:
    """Whether the generator's model goes to Anthropic (`anthropic/…`)."""
    return generator.model.startswith(_PREFIX) or (
        generator.params.extra.get("custom_llm_provider") == "anthropic"
    )


class AnthropicBatchClient(BatchClient):
    """Anthropic's Message Batches API (see the module docstring) for one generator."""

    provider = "anthropic"
    envelope_bytes = len(b'{"requests":[]}')

    def __init__(self, generator: LiteLLMGenerator, download_bytes: int = DOWNLOAD_BYTES) -> None:
        self._generator = generator
        base = (generator.api_base or DEFAULT_API_BASE).rstrip("/")
        for tail in ("/v1/messages", "/v1"):
            if base.endswith(tail):
                base = base[: -len(tail)]
                break
        self._base = base
        self._model = generator.model.removeprefix(_PREFIX)
        self._wire = Wire(WireSettings(max_response_bytes=download_bytes))
        self._config: Any = None

    # -- Sender -------------------------------------------------------------------------------

    @property
    def wire_label(self) -> str:
        """The provider, as errors name it."""
        return self._generator.model

    def wire_secrets(self) -> Sequence[str | None]:
        """The key."""
        try:
            return [self._key()]
        except InvalidGeneratorError:
            return []

    @property
    def endpoint(self) -> str:
        """The API's base URL."""
        return endpoint_without_credentials(self._base)

    # -- the protocol -------------------------------------------------------------------------

    def line(self, item: BatchItem) -> bytes:
        """`{"custom_id", "params"}`, `params` LiteLLM's Messages API body for the request."""
        request = {"custom_id": item.custom_id, "params": self._params(item)}
        return json.dumps(request, separators=(",", ":")).encode()

    def _params(self, item: BatchItem) -> dict[str, Any]:
        config = self._config
        if config is None:
            import_litellm()
            from litellm.llms.anthropic.chat.transformation import AnthropicConfig

            config = self._config = AnthropicConfig()
        wanted = {k: v for k, v in item.params.to_dict().items() if k not in _NOT_PARAMS}
        try:
            optional = config.map_openai_params(wanted, {}, self._model, True)
            body: dict[str, Any] = config.transform_request(
                self._model, wire_messages(item.messages), optional, {}, {}
            )
        except Exception as exc:  # LiteLLM's own errors for what Anthropic cannot take
            reason = redact(str(exc), self.wire_secrets())[:500]
            failure = BadRequestError(
                f"LiteLLM cannot write this request for Anthropic: {reason}",
                provider=self.wire_label,
            )
        else:
            body.pop("stream", None)
            return body
        raise failure

    async def submit(self, lines: Sequence[bytes], *, label: str) -> Submitted:
        """`POST /v1/messages/batches` with every request."""
        body = (b'{"requests":[', b",".join(lines), b"]}")
        data = await self._json(
            WireRequest("POST", f"{self._base}/v1/messages/batches", self._headers(), body)
        )
        batch_id = data.get("id")
        if type(batch_id) is not str or not batch_id:
            raise error_for_status(502, "the answer has no batch id", provider=self.wire_label)
        return Submitted(batch_id)

    async def state(self, batch_id: str) -> BatchState:
        """`GET /v1/messages/batches/{id}`."""
        url = f"{self._base}/v1/messages/batches/{batch_id}"
        return _state(await self._json(WireRequest("GET", url, self._headers())))

    async def cancel(self, batch_id: str) -> BatchState:
        """`POST /v1/messages/batches/{id}/cancel`."""
        url = f"{self._base}/v1/messages/batches/{batch_id}/cancel"
        return _state(await self._json(WireRequest("POST", url, self._headers(), b"{}")))

    async def results(self, state: BatchState) -> AsyncGenerator[ItemResult, None]:
        """The lines at `results_url` (on the API's own origin only)."""
        url = state.results_url
        if not url:
            return
        if origin_of(url) != origin_of(self._base):
            raise ProcessingError(
                f"the batch's results_url is on {origin_of(url)!r}, not on the API's origin "
                f"{origin_of(self._base)!r}: the key is not sent there"
            )
        request = WireRequest("GET", url, self._headers())
        async with self._wire.stream(request, self) as response:
            if response.status >= 300:
                await self._wire.read(response, self)
                _answer(response, self.wire_label, self.wire_secrets())
            # Closed here, on this task, even when the reader stops early.
            async with contextlib.aclosing(self._wire.read_lines(response, self)) as lines:
                async for line in lines:
                    result = self._result(line) if line.strip() else None
                    if result is not None:
                        yield result

    async def aclose(self) -> None:
        """Close this client's connections."""
        await self._wire.aclose()

    # -- one request, one answer ----------------------------------------------------------------

    def _key(self) -> str | None:
        return self._generator.get_api_key() or os.environ.get(KEY_VARIABLE) or None

    def _headers(self) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "anthropic-version": ANTHROPIC_VERSION,
        }
        key = self._key()
        if key is not None:
            if not key.isprintable():
                raise InvalidGeneratorError(
                    "the api key holds a line break or another unprintable character; it "
                    "cannot be sent in a header"
                )
            headers["x-api-key"] = key
        return headers

    async def _json(self, request: WireRequest) -> dict[str, Any]:
        response = await self._wire.send(request, self)
        return _answer(response, self.wire_label, self.wire_secrets())

    def _result(self, line: bytes) -> ItemResult | None:
        """One result line, joined by its `custom_id` (`None`: unreadable, skipped)."""
        label = self.wire_label
        data = result_object(label, line)
        if data is None:
            return None
        custom_id: str = data["custom_id"]
        result = data.get("result")
        result = result if type(result) is dict else {}
        kind = result.get("type")
        if kind == "succeeded":
            try:
                return ItemResult(
                    custom_id, answer=read_chat(_openai_shape(result.get("message")), label)
                )
            except ProviderError as exc:
                return ItemResult(custom_id, error=exc)
        if kind in ("expired", "canceled"):
            return ItemResult(custom_id, expired=True)
        error = result.get("error")
        if isinstance(error, Mapping) and isinstance(error.get("error"), Mapping):
            error = error["error"]  # `{"type": "error", "error": {...}}`
        error = error if isinstance(error, Mapping) else {}
        status = _ERROR_STATUS.get(str(error.get("type")), 500)
        raw = json.dumps({"error": dict(error)}).encode()
        return ItemResult(
            custom_id, error=error_from_response(status, raw, {}, label, self.wire_secrets())
        )


def _answer(response: WireResponse, label: str, secrets: Sequence[str | None]) -> dict[str, Any]:
    if response.status >= 300:
        raise error_from_response(response.status, response.body, response.headers, label, secrets)
    data = parse_json(response.body, label, response.status)
    if type(data) is not dict:
        raise error_for_status(502, "the answer is not a JSON object", provider=label)
    return data


def _state(data: Mapping[str, Any]) -> BatchState:
    status = str(data.get("processing_status") or "")
    counts = data.get("request_counts")
    return BatchState(
        status=status,
        phase="ended" if status == "ended" else "in_progress",
        results_url=data.get("results_url") or None,
        counts={k: v for k, v in counts.items() if type(v) is int}
        if isinstance(counts, Mapping)
        else {},
    )


def _openai_shape(message: Any) -> Any:
    """An Anthropic message as the OpenAI chat completion `read_chat` reads (anything not a
    message is passed on, for the reader to say what is wrong)."""
    if not isinstance(message, Mapping):
        return message
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": json.dumps(block.get("input") or {}),
                    },
                }
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        reply["tool_calls"] = calls
    usage = message.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    read = _count(usage, "cache_read_input_tokens")
    written = _count(usage, "cache_creation_input_tokens")
    prompt = _count(usage, "input_tokens") + read + written
    completion = _count(usage, "output_tokens")
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if read:
        counts["cache_read_input_tokens"] = read
    if written:
        counts["cache_creation_input_tokens"] = written
    return {
        "id": message.get("id"),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": _STOP.get(str(message.get("stop_reason")), "unknown"),
            }
        ],
        "usage": counts,
    }


def _count(usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if type(value) is not int or value < 0:
        raise MalformedResponseError(f"the message's usage.{name} is not a count: {value!r:.40}")
    return value
