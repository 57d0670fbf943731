"""`HTTPGenerator` (`http!`): any HTTP endpoint as a generator, described by an `HTTPSpec`.

The endpoint is an unreliable peer, so every request has a timeout, bodies are read up to
`max_response_bytes`, and credentials are not forwarded when a redirect leaves the origin.
Limits and retries (connection errors, timeouts, cut JSON bodies, 408/409/429/5xx, with
`Retry-After` honoured) are the request tier's (`RequestGenerator`); a hook's "retry" counts
against the same `max_retries`. httpx is imported on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator

from jib._limits import REQUEST_LIMIT_OPTIONS
from jib._retry import retry_after_from
from jib._secrets import is_secret_name, redact, redacted_chain
from jib.errors import (
    InvalidGeneratorError,
    JibError,
    MalformedResponseError,
    MissingDependencyError,
    ProcessingError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_for_status,
)
from jib.generator._requests import RequestGenerator, RetryRequested
from jib.generator.http._budget import DEFAULT_RENDER_LIMITS, RenderLimits
from jib.generator.http._hooks import HookResult, run_hook
from jib.generator.http._pool import LoopClients, ProxyURL, Verify
from jib.generator.http._transport import safe_headers, send
from jib.generator.http.factories import json_endpoint_spec, one_body, text_endpoint_spec
from jib.generator.http.spec import HTTPSpec, PreparedRequest, RequestTransformContext, origin_of
from jib.generator.http.transforms import truncate
from jib.messages import GeneratedMessage, GeneratedText, Message
from jib.params import GenerateParams

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_TIMEOUT", "HTTPGenerator", "Hook", "HookResult"]

logger = logging.getLogger("jib.generator.http")

DEFAULT_TIMEOUT = 60.0
"""Seconds a request may take when neither the params nor the spec set a timeout."""

Hook = Callable[["HTTPGenerator", "httpx.Response"], Awaitable[HookResult] | HookResult]
"""`hook(generator, response)`, called after every response (async or plain)."""

_RUNTIME_FIELDS = frozenset({"state", "hook"})
# Private attributes bound to event loops, reset in pickled and deep-copied generators.
_FRESH_RUNTIME: dict[str, Any] = {"_clients": None, "_limiter": None, "_locks": None}


class HTTPGenerator(RequestGenerator):
    """Wraps any HTTP endpoint: `spec` says how to build the request and read the response.

    Attributes:
        spec: the `HTTPSpec`; assign a model, dict, JSON, YAML or base64 of JSON/YAML.
        state: mutable runtime data visible to templates as `state` (session ids, tokens).
            Not written to identifiers and not part of equality.
        hook: `async hook(generator, response) -> "retry" | "continue" | "raise" | None`, called
            after every response; "retry" sends the request again (rendered anew, so a
            refreshed `state` applies), counted against `max_retries`. Not written to
            identifiers.
        max_response_bytes: larger response bodies fail with `ProcessingError`.
        max_redirects: redirects followed per request.
        proxy: send every request through this proxy (`http://127.0.0.1:8080` for Burp or
            mitmproxy), instead of the environment's `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`.
            Credentials belong in the environment, not here (they would be stored).
        verify: verify TLS certificates (`True`), don't (`False`), or trust the CA bundle at
            this path (an interception proxy's certificate).
        render_limits: the budget (`RenderLimits`: seconds, size, steps) of rendering one
            request and of reading one response; a request's timeout lowers its seconds. Set in
            code only: it is not a field, so neither identifiers nor specs can raise it.
        (and the limits and retry settings of `RequestGenerator`: `max_connections`,
        `min_delay_between_requests`, `rpm`, `tpm`, `max_retries`, `retry_backoff`,
        `max_retry_wait`)
    """

    spec: HTTPSpec | None = None
    state: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)
    # Typed loosely so the model builds without importing httpx; see `Hook` for the signature.
    hook: Callable[..., Any] | None = Field(default=None, repr=False, exclude=True)
    max_response_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=30)
    proxy: ProxyURL = None
    verify: Verify = True

    _clients: LoopClients | None = PrivateAttr(default=None)
    _locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] | None = PrivateAttr(
        default=None
    )
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
            response: `{"content_path": "$…", "error_path": "$.error.message"}` (JSONPaths), or
                just the content path; without it the whole body is the answer.
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
        """Send one conversation; the parsed response is the assistant message."""
        text, extra = await self._call(self._context(messages, params), params)
        return GeneratedMessage(Message("assistant", text), extra=extra)

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """Send one text (as a single user message); the parsed response is the text."""
        answer, extra = await self._call(self._context([Message("user", text)], params), params)
        return GeneratedText(answer, extra=extra)

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
    ) -> tuple[str, dict[str, Any]]:
        """One attempt: render, send, let the hook decide, check the status, parse.

        Retries are the request tier's: failures raise the normalized errors (marked
        retryable or not), and a hook's "retry" raises `RetryRequested`.
        """
        spec = self.spec
        if spec is None:
            raise ProcessingError(
                "this HTTPGenerator has no spec: assign .spec or use "
                "HTTPGenerator.for_json_endpoint()/for_text_endpoint()"
            )
        timeout = self.request_timeout(params)
        limits = self.render_limits.within(timeout)
        # Rendered per attempt, so a hook that refreshed `state` changes the retry.
        prepared = spec.build_request(context, limits)
        response = await self._send(prepared, timeout)
        decision = await run_hook(self.hook, self, response, self._redact)
        valid = response.status_code in spec.response.valid_status_codes
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
                answer = await asyncio.to_thread(spec.parse_response_body, text, context, limits)
            else:
                answer = spec.parse_response_body(text, context, limits)
        except ProcessingError as exc:
            if _cut_json(spec, text):
                raise MalformedResponseError(
                    f"the response is not the JSON the spec expects: {truncate(text, 200)!r}",
                    status_code=response.status_code,
                    provider=self._provider,
                ) from exc
            raise
        extra = {"status_code": response.status_code, "headers": safe_headers(response.headers)}
        return answer, extra

    async def _send(self, prepared: PreparedRequest, timeout: float) -> httpx.Response:
        """Send once (redirects included), bounded by `timeout`.

        Raises:
            ProviderTimeoutError: no complete answer within `timeout` seconds.
            ProviderConnectionError: the connection failed (retryable) or the URL cannot be
                sent to (not retryable).
            ProcessingError: the URL cannot be sent, or the body is too large.
        """
        _require_httpx()
        import aiohttp
        import httpx

        try:
            sending = send(
                await self._connections().get(),
                prepared,
                timeout=timeout,
                max_redirects=self.max_redirects,
                max_bytes=self.max_response_bytes,
                redact=self._redact,
            )
            return await asyncio.wait_for(sending, timeout)
        except (
            asyncio.TimeoutError,
            OSError,
            httpx.TransportError,
            httpx.InvalidURL,
            aiohttp.ClientError,
        ) as exc:
            failure: Exception = exc
        # Raised outside the `except`: the transport's exception (its URL may hold the key) is
        # chained only as a redacted stand-in.
        error = self._transport_error(failure, origin_of(prepared.url), timeout)
        raise error from redacted_chain(failure, self._secrets())

    def _transport_error(self, exc: Exception, origin: str, timeout: float) -> JibError:
        """The jib error for what aiohttp or httpx raised while sending."""
        import aiohttp
        import httpx

        if isinstance(exc, (asyncio.TimeoutError, httpx.TimeoutException)):
            return ProviderTimeoutError(
                f"no complete answer from {origin} within {timeout}s", provider=self._provider
            )
        if isinstance(exc, (httpx.InvalidURL, aiohttp.InvalidURL)):
            return ProcessingError(
                self._redact(f"request.url rendered a URL that cannot be sent: {exc}")
            )
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.ProxyError)):
            return ProviderConnectionError(
                self._redact(f"cannot send to {origin}: {exc}"),
                provider=self._provider,
                retryable=False,
            )
        return ProviderConnectionError(
            self._redact(f"could not reach {origin}: {type(exc).__name__}: {exc}"),
            provider=self._provider,
        )

    def _status_error(
        self, spec: HTTPSpec, response: httpx.Response, note: str = ""
    ) -> ProviderError:
        body = response.text
        message = spec.extract_error(body) or body.strip() or "(empty body)"
        # Redact before truncating: a cut could leave part of a secret that no longer matches.
        return error_for_status(
            response.status_code,
            truncate(self._redact(message)) + note,
            provider=self._provider,
            retry_after=retry_after_from(response.headers),
        )

    # -- runtime resources ---------------------------------------------------------------------

    @property
    def hook_lock(self) -> asyncio.Lock:
        """A lock for this generator on the running event loop, for single-flight refreshes.

        A hook that refreshes a token takes it, checks whether another request already
        refreshed (compare `response.request.headers` with `state`), refreshes if not, and
        returns "retry".
        """
        loop = asyncio.get_running_loop()
        if self._locks is None:
            self._locks = weakref.WeakKeyDictionary()
        lock = self._locks.get(loop)
        if lock is None:
            # A lock that was waited on references its loop, which would keep the weak key
            # alive: drop the locks of closed loops.
            for closed in [other for other in self._locks if other.is_closed()]:
                del self._locks[closed]
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def _connections(self) -> LoopClients:
        clients = self._clients
        settings = (self.max_connections, self.proxy, self.verify)
        if clients is None or clients.settings != settings:
            # Clients made for older settings close with their loops.
            clients = self._clients = LoopClients(*settings)
        return clients

    async def aclose(self) -> None:
        """Close the connection pool of the running event loop (a new one opens on next use).

        Optional: pools also close when their event loop shuts down (as `asyncio.run` does).
        """
        if self._clients is not None:
            await self._clients.aclose()

    def unload(self) -> HTTPGenerator:
        """Forget connection pools; their connections close when their event loops shut down."""
        self._clients = None
        return self

    # -- identifiers, secrets, equality --------------------------------------------------------

    @property
    def _provider(self) -> str:
        return f"http!{self.model}"

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

    def _secrets(self) -> list[str | None]:
        secrets: list[str | None] = []
        with contextlib.suppress(JibError):  # an unset env: key has nothing to leak
            secrets.append(self.get_api_key())
        secrets.extend(
            value
            for name, value in self.state.items()
            if isinstance(value, str) and len(value) >= 8 and is_secret_name(str(name))
        )
        return secrets

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets())

    def __getstate__(self) -> dict[Any, Any]:
        # Pools, locks and limiters hold per-event-loop state that cannot be pickled; a copy
        # makes its own.
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private:
            state["__pydantic_private__"] = {**private, **_FRESH_RUNTIME}
        return state

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> HTTPGenerator:
        copied = self.model_copy()
        object.__setattr__(copied, "__dict__", copy.deepcopy(self.__dict__, memo))
        private = self.__pydantic_private__ or {}
        object.__setattr__(copied, "__pydantic_private__", {**private, **_FRESH_RUNTIME})
        return copied

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
        destinations = []
        if self.spec is not None:
            destinations.append(("the spec's request.url", self.spec.request.url))
        if self.proxy is not None:
            destinations.append(("proxy", str(self.proxy)))
        return destinations


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - httpx is a core dependency
        raise MissingDependencyError("httpx", "http", "The HTTP generator") from exc


def _cut_json(spec: HTTPSpec, body: str) -> bool:
    """Whether `body` should have been JSON for the spec's first step, and is not."""
    steps = spec.response.transforms
    if not steps or steps[0].type != "jsonpath":
        return False
    try:
        json.loads(body)
    except ValueError:
        return True
    except RecursionError:  # whole but too deep: the jsonpath step said so already
        return False
    return False
