"""`HTTPGenerator` (`http!`): any HTTP endpoint as a generator, described by an `HTTPSpec`.

The endpoint is an unreliable peer, so every request has a timeout (`DEFAULT_TIMEOUT` unless the
params or the spec say otherwise), bodies are read up to `max_response_bytes`, and credentials
are not forwarded when a redirect leaves the origin (the wire's rules, `jib._wire`). Limits and
retries (connection errors, timeouts, cut JSON bodies, 408/409/429/5xx, with `Retry-After`
honoured) are the request tier's (`RequestGenerator`); a hook's "retry" counts against the same
`max_retries`. httpx is imported only to hand hooks an `httpx.Response`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator

from jib._limits import REQUEST_LIMIT_OPTIONS
from jib._per_loop import LoopLocks
from jib._retry import retry_after_from
from jib._secrets import is_secret_name, redact
from jib._wire import WireRequest, WireResponse
from jib.errors import (
    InvalidGeneratorError,
    JibError,
    MalformedResponseError,
    ProcessingError,
    ProviderError,
    error_for_status,
)
from jib.generator._response_key import safe_headers
from jib.generator._wired import WiredGenerator
from jib.generator.http._budget import DEFAULT_RENDER_LIMITS, RenderLimits
from jib.generator.http._hooks import HookResult, run_hook
from jib.generator.http.factories import json_endpoint_spec, one_body, text_endpoint_spec
from jib.generator.http.spec import HTTPSpec, RequestTransformContext, origin_of
from jib.generator.http.transforms import NotJSONError, truncate
from jib.generator.remote import RetryRequested
from jib.messages import GeneratedMessage, GeneratedText, Message
from jib.params import GenerateParams
from jib.tools import ToolCall

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_TIMEOUT", "HTTPGenerator", "Hook", "HookResult"]

logger = logging.getLogger("jib.generator.http")

DEFAULT_TIMEOUT = 60.0
"""Seconds a request may take when neither the params nor the spec set a timeout."""

Hook = Callable[["HTTPGenerator", "httpx.Response"], Awaitable[HookResult] | HookResult]
"""`hook(generator, response)`, called after every response (async or plain)."""

_RUNTIME_FIELDS = frozenset({"state", "hook"})


class HTTPGenerator(WiredGenerator):
    """Wraps any HTTP endpoint: `spec` says how to build the request and read the response.

    Attributes:
        spec: the `HTTPSpec`; assign a model, dict, JSON, YAML or base64 of JSON/YAML.
        state: mutable runtime data visible to templates as `state` (session ids, tokens).
            Not written to identifiers and not part of equality.
        hook: `async hook(generator, response) -> "retry" | "continue" | "raise" | None`, called
            after every response; "retry" sends the request again (rendered anew, so a
            refreshed `state` applies), counted against `max_retries`. Not written to
            identifiers.
        render_limits: the budget (`RenderLimits`: seconds, size, steps) of rendering one
            request and of reading one response; a request's timeout lowers its seconds. Set in
            code only: it is not a field, so neither identifiers nor specs can raise it.
        (and `proxy`, `verify`, `max_response_bytes`, `max_redirects` of `WiredGenerator`:
        the wire keeps cookies for `http!`, per event loop; and the limits and retry settings
        of `RequestGenerator`: `max_connections`, `min_delay_between_requests`, `rpm`, `tpm`,
        `max_retries`, `retry_backoff`, `max_retry_wait`)
    """

    spec: HTTPSpec | None = None
    state: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)
    # Typed loosely so the model builds without importing httpx; see `Hook` for the signature.
    hook: Callable[..., Any] | None = Field(default=None, repr=False, exclude=True)

    default_timeout: ClassVar[float | None] = DEFAULT_TIMEOUT
    keeps_cookies: ClassVar[bool] = True

    _locks: LoopLocks = PrivateAttr(default_factory=LoopLocks)
    _render_limits: RenderLimits = PrivateAttr(default=DEFAULT_RENDER_LIMITS)

    @property
    def render_limits(self) -> RenderLimits:
        """The budget of rendering one request and of reading one response (see the class)."""
        return self._render_limits

    @render_limits.setter
    def render_limits(self, limits: RenderLimits) -> None:
        if not isinstance(limits, RenderLimits):
            raise InvalidGeneratorError(
                f"render_limits must be a RenderLimits, not {type(limits).__name__}"
            )
        self._render_limits = limits

    @field_validator("state", mode="before")
    @classmethod
    def _state_default(cls, value: Any) -> Any:
        return {} if value is None else value

    # -- factories -----------------------------------------------------------------------------

    @classmethod
    def for_json_endpoint(
        cls,
        url: str,
        request_body: Any = None,
        response: dict[str, Any] | str | None = None,
        *,
        request: Any = None,
        model: str = "http",
        api_key: str | None = None,
        auth: dict[str, str] | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        valid_status_codes: Sequence[int] | None = None,
        state: dict[str, Any] | None = None,
        hook: Hook | None = None,
        **kwargs: Any,
    ) -> HTTPGenerator:
        """A generator for an API that takes and returns JSON.

        Args:
            url: the endpoint (a Jinja template).
            request_body: the JSON template object (`"$messages"`, `"{{ model }}"`, …);
                `request=` is another name for it.
            response: `{"content_path": "$…", "error_path": "$.error.message",
                "tool_calls_path": "$.choices[0].message.tool_calls"}` (JSONPaths), or just the
                content path; without it the whole body is the answer.
            model: the model name, visible to templates as `model`.
            api_key: the key, visible to templates as `api_key`.
            auth: `{"header": "Authorization", "format": "Bearer {api_key}"}`; `format` takes
                `{api_key}` or Jinja and defaults to the bare key, `header` to `Authorization`.
            method, headers, timeout, valid_status_codes: as in `RequestSpec`/`ResponseSpec`.
            state, hook: see the class attributes.
            **kwargs: other generator attributes (`max_connections`, `max_retries`, …).

        Raises:
            InvalidGeneratorError: no body, or both `request_body` and `request`.
        """
        spec = json_endpoint_spec(
            url,
            body=one_body(request_body, request, "request_body", required=True),
            response=response,
            auth=auth,
            method=method,
            headers=headers,
            timeout=timeout,
            valid_status_codes=valid_status_codes,
        )
        return cls(model=model, api_key=api_key, spec=spec, state=state, hook=hook, **kwargs)

    @classmethod
    def for_text_endpoint(
        cls,
        url: str,
        request_template: str | None = None,
        response_pattern: str | None = None,
        *,
        request: str | None = None,
        model: str = "http",
        api_key: str | None = None,
        auth: dict[str, str] | None = None,
        method: str = "POST",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        valid_status_codes: Sequence[int] | None = None,
        state: dict[str, Any] | None = None,
        hook: Hook | None = None,
        **kwargs: Any,
    ) -> HTTPGenerator:
        """A generator for an API that takes a text body (one Jinja template).

        Args:
            url: the endpoint (a Jinja template).
            request_template: the body template; `request=` is another name for it. Defaults to
                `"{{ content }}"`, the last message.
            response_pattern: a regex; its first group (or whole match) is the answer. Without
                it the whole body is the answer.
            Other arguments: as for `for_json_endpoint`.

        Raises:
            InvalidGeneratorError: both `request_template` and `request` are given.
        """
        template = one_body(request_template, request, "request_template", required=False)
        spec = text_endpoint_spec(
            url,
            template="{{ content }}" if template is None else template,
            response_pattern=response_pattern,
            auth=auth,
            method=method,
            headers=headers,
            timeout=timeout,
            valid_status_codes=valid_status_codes,
        )
        return cls(model=model, api_key=api_key, spec=spec, state=state, hook=hook, **kwargs)

    # -- one request -------------------------------------------------------------------------

    def request_timeout(self, params: GenerateParams) -> float:
        """The params' `timeout`, else the spec's, else `DEFAULT_TIMEOUT` seconds."""
        spec_timeout = self.spec.request.timeout if self.spec is not None else None
        return params.timeout or spec_timeout or DEFAULT_TIMEOUT

    async def request_message(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        """Send one conversation; the parsed response is the assistant message, with the tool
        calls `response.tool_calls` finds (`stop_reason="tool_calls"` when there are some).

        Raises:
            ProcessingError: the spec's request cannot carry a part, a tool call or a param
                of this call (`HTTPSpec.check_carries`); nothing is sent.
        """
        text, calls, extra = await self._call(self._context(messages, params), params)
        message = Message("assistant", text, tool_calls=calls)
        if calls:
            return GeneratedMessage(message, "tool_calls", extra=extra)
        return GeneratedMessage(message, extra=extra)

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """Send one text (as a single user message); the parsed response is the text."""
        context = self._context([Message("user", text)], params)
        answer, _calls, extra = await self._call(context, params)
        return GeneratedText(answer, extra=extra)

    def response_cache_request(self, item: Sequence[Message] | str, params: GenerateParams) -> Any:
        """The request this item would send, rendered, for jib's response cache: method, URL,
        body, and the headers but those a secret name marks (`Authorization`, `X-Api-Key`, …);
        the key's own value is blanked wherever a template put it."""
        spec = self.spec
        if spec is None:
            return None
        conversation = [Message("user", item)] if isinstance(item, str) else item
        context = self._context(conversation, params)
        spec.check_carries(context.messages, params)
        prepared = spec.build_request(
            context, self.render_limits.within(self.request_timeout(params))
        )
        return {
            "method": prepared.method,
            "url": prepared.url,
            "headers": safe_headers(prepared.headers),
            "body": prepared.content,
        }

    def _context(
        self, conversation: Sequence[Message], params: GenerateParams
    ) -> RequestTransformContext:
        return RequestTransformContext.from_messages(
            conversation,
            api_key=self.get_api_key(),
            model=self.model,
            state=self.state,
            params=params,
        )

    async def _call(
        self, context: RequestTransformContext, params: GenerateParams
    ) -> tuple[str, list[ToolCall], dict[str, Any]]:
        """One attempt: check what the spec carries, render, send, let the hook decide, check
        the status, parse the text and tool calls.

        Retries are the request tier's: failures raise the normalized errors (marked
        retryable or not), and a hook's "retry" raises `RetryRequested`.
        """
        spec = self.spec
        if spec is None:
            raise ProcessingError(
                "this HTTPGenerator has no spec: assign .spec or use "
                "HTTPGenerator.for_json_endpoint()/for_text_endpoint()"
            )
        spec.check_carries(context.messages, params)
        limits = self.render_limits.within(self.request_timeout(params))
        # Rendered per attempt, so a hook that refreshed `state` changes the retry.
        prepared = spec.build_request(context, limits)
        body = None if prepared.content is None else prepared.content.encode()
        request = WireRequest(prepared.method, prepared.url, prepared.headers, body)
        response = await self.wire.send(request, self)
        decision = None
        if self.hook is not None:
            decision = await run_hook(self.hook, self, _for_hook(response), self._redact)
        valid = response.status in spec.response.valid_status_codes
        if decision == "retry":
            logger.info("HTTP %s: the hook asked for a retry", origin_of(prepared.url))
            final: JibError = (
                ProcessingError(
                    f"the hook asked to retry, but max_retries={self.max_retries} is reached"
                )
                if valid
                else self._status_error(spec, response)
            )
            raise RetryRequested(final)
        if decision == "raise" or not valid:
            raise self._status_error(spec, response)
        text = response.text
        try:
            if spec.needs_worker_thread:
                answer, calls = await asyncio.to_thread(spec.parse_response, text, context, limits)
            else:
                answer, calls = spec.parse_response(text, context, limits)
        except NotJSONError as exc:
            # The first step reads JSON and the body is not JSON: a cut or garbled answer,
            # retried like one. The message says where the JSON broke, not what it holds.
            raise MalformedResponseError(
                f"the response is not the JSON the spec expects ({exc})",
                status_code=response.status,
                provider=self.wire_label,
            ) from exc
        extra = {"status_code": response.status, "headers": _safe_headers(response)}
        return answer, calls, extra

    def _status_error(self, spec: HTTPSpec, response: WireResponse) -> ProviderError:
        body = response.text
        message = spec.extract_error(body) or body.strip() or "(empty body)"
        # Redact before truncating: a cut could leave part of a secret that no longer matches.
        return error_for_status(
            response.status,
            truncate(self._redact(message)),
            provider=self.wire_label,
            retry_after=retry_after_from(response.headers),
        )

    # -- runtime resources ---------------------------------------------------------------------

    @property
    def hook_lock(self) -> asyncio.Lock:
        """A lock for this generator on the running event loop, for single-flight refreshes.

        A hook that refreshes a token takes it, checks whether another request already
        refreshed (compare `response.request.headers` with `state`), refreshes if not, and
        returns "retry". Copies of the generator share it.
        """
        return self._locks.get()

    # -- identifiers, secrets, equality --------------------------------------------------------

    def identifier_value(self, name: str, value: Any) -> str:
        """The spec is written as base64 of its YAML; other attributes as usual."""
        if name == "spec" and isinstance(value, HTTPSpec):
            return value.to_base64()
        if name in _RUNTIME_FIELDS:
            return ""  # dropped by `_identifier_attributes`
        return super().identifier_value(name, value)

    def _identifier_attributes(self, include_secrets: bool) -> Iterator[tuple[str, str]]:
        # `state` and `hook` are runtime data: tokens and code never go into identifiers.
        for name, value in super()._identifier_attributes(include_secrets):
            if name not in _RUNTIME_FIELDS:
                yield name, value

    def wire_secrets(self) -> list[str | None]:
        """The key and the secret-named `state` values (tokens, cookies): kept out of errors
        and logs."""
        secrets = list(super().wire_secrets())
        secrets.extend(
            value
            for name, value in self.state.items()
            if isinstance(value, str) and len(value) >= 8 and is_secret_name(str(name))
        )
        return secrets

    def _redact(self, text: str) -> str:
        return redact(text, self.wire_secrets())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, HTTPGenerator)
        mine = {k: v for k, v in self.__dict__.items() if k not in _RUNTIME_FIELDS}
        theirs = {k: v for k, v in other.__dict__.items() if k not in _RUNTIME_FIELDS}
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]

    # -- what this provider says about itself (see `Generator`) --------------------------------

    endpoint_field: ClassVar[str | None] = "spec"
    inert_options: ClassVar[frozenset[str]] = REQUEST_LIMIT_OPTIONS | {"max_redirects"}

    def secret_destinations(self) -> list[tuple[str, str]]:
        """The spec's URL (a template's output: its templates may hold the key) and the proxy."""
        destinations = super().secret_destinations()
        if self.spec is not None:
            destinations.insert(0, ("the spec's request.url", self.spec.request.url))
        return destinations


def _for_hook(response: WireResponse) -> httpx.Response:
    """The response as hooks receive it: an `httpx.Response`, body read, request attached."""
    import httpx

    sent = response.request
    request = httpx.Request(sent.method, sent.url, headers=dict(sent.headers), content=sent.body)
    kept = [
        (name, value)
        for name, value in response.header_pairs()
        if name.lower() not in _BODY_FRAMING_HEADERS
    ]
    return httpx.Response(response.status, headers=kept, content=response.body, request=request)


# Dropped from the response handed to hooks: the body is already decoded and measured.
_BODY_FRAMING_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _safe_headers(response: WireResponse) -> dict[str, str]:
    """Response headers without credentials (`Set-Cookie`, `Authorization`, tokens, keys…)."""
    headers: Mapping[str, str] = response.headers
    return {name: value for name, value in headers.items() if not is_secret_name(name)}
