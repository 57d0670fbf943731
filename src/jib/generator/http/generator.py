"""`HTTPGenerator` (`http!`): any HTTP endpoint as a generator, described by an `HTTPSpec`.

The endpoint is an unreliable peer, so every request has a timeout, transient failures (connection
errors, 429, 502/503/504) are retried with exponential backoff and jitter (honouring
`Retry-After`) up to `max_retries`, bodies are read up to `max_response_bytes`, and credentials
are not forwarded when a redirect leaves the origin. httpx is imported on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field, PrivateAttr, field_validator

from jib._concurrency import RequestLimiter
from jib._secrets import is_secret_name, redact
from jib.errors import (
    JibError,
    MissingDependencyError,
    ProcessingError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_for_status,
)
from jib.generator.base import Generator
from jib.generator.http._pool import LoopClients
from jib.generator.http._retry import HookResult, RetryPolicy, run_hook
from jib.generator.http._transport import safe_headers, send
from jib.generator.http.factories import json_endpoint_spec, one_body, text_endpoint_spec
from jib.generator.http.spec import HTTPSpec, PreparedRequest, RequestTransformContext, origin_of
from jib.generator.http.transforms import truncate
from jib.messages import GeneratedMessage, GeneratedText, Message, check_batch
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


class HTTPGenerator(Generator):
    """Wraps any HTTP endpoint: `spec` says how to build the request and read the response.

    Attributes:
        spec: the `HTTPSpec`; assign a model, dict, JSON, YAML or base64 of JSON/YAML.
        state: mutable runtime data visible to templates as `state` (session ids, tokens).
            Not written to identifiers and not part of equality.
        hook: `async hook(generator, response) -> "retry" | "continue" | "raise" | None`, called
            after every response; "retry" sends the request again (rendered anew, so a
            refreshed `state` applies). Not written to identifiers.
        max_connections: requests in flight at once.
        min_delay_between_requests: milliseconds between request starts.
        max_retries: retries per request, for transient failures and hook retries together.
        retry_backoff: seconds of the first backoff delay; it doubles per retry, with jitter.
        max_retry_wait: the longest single wait; a `Retry-After` beyond it fails at once.
        max_response_bytes: larger response bodies fail with `ProcessingError`.
        max_redirects: redirects followed per request.
    """

    spec: HTTPSpec | None = None
    state: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)
    # Typed loosely so the model builds without importing httpx; see `Hook` for the signature.
    hook: Callable[..., Any] | None = Field(default=None, repr=False, exclude=True)
    max_connections: int = Field(default=10, ge=1)
    min_delay_between_requests: float = Field(default=0.0, ge=0)
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_backoff: float = Field(default=0.5, ge=0)
    max_retry_wait: float = Field(default=60.0, gt=0)
    max_response_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_redirects: int = Field(default=5, ge=0, le=30)

    _clients: LoopClients | None = PrivateAttr(default=None)
    _locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] | None = PrivateAttr(
        default=None
    )
    _limiter: RequestLimiter | None = PrivateAttr(default=None)

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

    # -- generation ----------------------------------------------------------------------------

    async def generate_messages(
        self,
        messages: Sequence[Sequence[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Send one request per conversation; the parsed response is the assistant message."""
        check_batch("generate_messages", messages, params)

        async def one(conversation: Sequence[Message], item: GenerateParams) -> GeneratedMessage:
            context = self._context(conversation, item)
            text, extra = await self._call(context, item)
            return GeneratedMessage(Message("assistant", text), extra=extra)

        return await self._gather(one(*pair) for pair in zip(messages, params, strict=True))

    async def generate_texts(
        self,
        texts: Sequence[str],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedText | BaseException]:
        """Send one request per text (as a single user message); the parsed response is the text."""
        check_batch("generate_texts", texts, params)

        async def one(text: str, item: GenerateParams) -> GeneratedText:
            context = self._context([Message("user", text)], item)
            answer, extra = await self._call(context, item)
            return GeneratedText(answer, extra=extra)

        return await self._gather(one(*pair) for pair in zip(texts, params, strict=True))

    async def _gather(self, calls: Iterator[Awaitable[Any]]) -> list[Any]:
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result
        return list(results)

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
        spec = self.spec
        if spec is None:
            raise ProcessingError(
                "this HTTPGenerator has no spec: assign .spec or use "
                "HTTPGenerator.for_json_endpoint()/for_text_endpoint()"
            )
        timeout = params.timeout or spec.request.timeout or DEFAULT_TIMEOUT
        response = await self.wrapped(self._request)(spec, context, timeout)
        text = response.text
        if spec.needs_worker_thread:
            answer = await asyncio.to_thread(spec.parse_response_body, text, context)
        else:
            answer = spec.parse_response_body(text, context)
        extra = {"status_code": response.status_code, "headers": safe_headers(response.headers)}
        return answer, extra

    # -- one request, with retries -------------------------------------------------------------

    async def _request(
        self, spec: HTTPSpec, context: RequestTransformContext, timeout: float
    ) -> httpx.Response:
        """Send the request until it succeeds or fails for good; return the valid response."""
        _require_httpx()
        import httpx

        policy = RetryPolicy(self.max_retries, self.retry_backoff, self.max_retry_wait)
        attempt = 0
        while True:
            # Rendered per attempt, so a hook that refreshed `state` changes the retry.
            prepared = spec.build_request(context)
            origin = origin_of(prepared.url)
            try:
                response = await self._send(prepared, timeout)
            except (httpx.TransportError, OSError) as exc:
                if isinstance(exc, (httpx.UnsupportedProtocol, httpx.ProxyError)):
                    raise ProviderConnectionError(
                        self._redact(f"cannot send to {origin}: {exc}"), provider=self._provider
                    ) from exc
                if not policy.can_retry(attempt):
                    raise ProviderConnectionError(
                        self._redact(
                            f"could not reach {origin} after {attempt + 1} attempts: "
                            f"{type(exc).__name__}: {exc}"
                        ),
                        provider=self._provider,
                    ) from exc
                attempt += 1
                delay = policy.backoff_delay(attempt)
                logger.info(
                    "HTTP %s: %s; retry %d/%d in %.2fs",
                    origin,
                    type(exc).__name__,
                    attempt,
                    self.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
                continue

            decision = await run_hook(self.hook, self, response, self._redact)
            valid = response.status_code in spec.response.valid_status_codes
            if decision == "retry":
                if policy.can_retry(attempt):
                    attempt += 1
                    logger.info("HTTP %s: hook asked for a retry", origin)
                    continue
                if valid:
                    raise ProcessingError(
                        f"the hook asked to retry after {attempt + 1} attempts; "
                        f"max_retries={self.max_retries} is reached"
                    )
            if decision == "raise":
                raise self._status_error(spec, response)
            if valid:
                return response
            if not policy.can_retry(attempt):
                raise self._status_error(spec, response)
            wait = policy.status_delay(response, attempt + 1)
            if wait is None:
                raise self._status_error(spec, response, policy.refusal_note(response))
            attempt += 1
            logger.info(
                "HTTP %s: status %d; retry %d/%d in %.2fs",
                origin,
                response.status_code,
                attempt,
                self.max_retries,
                wait,
            )
            await asyncio.sleep(wait)

    async def _send(self, prepared: PreparedRequest, timeout: float) -> httpx.Response:
        """One attempt (redirects included), holding a request slot, bounded by `timeout`.

        Raises:
            ProviderTimeoutError: no complete answer within `timeout` seconds.
            ProcessingError: the URL is not one httpx can send, or the body is too large.
            httpx.TransportError, OSError: the connection failed (the caller may retry).
        """
        import httpx

        try:
            async with self._request_limiter().slot():
                sending = send(
                    await self._connections().get(),
                    prepared,
                    timeout=timeout,
                    max_redirects=self.max_redirects,
                    max_bytes=self.max_response_bytes,
                    redact=self._redact,
                )
                return await asyncio.wait_for(sending, timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException) as exc:
            raise ProviderTimeoutError(
                f"no complete answer from {origin_of(prepared.url)} within {timeout}s",
                provider=self._provider,
            ) from exc
        except httpx.InvalidURL as exc:
            raise ProcessingError(
                self._redact(f"request.url rendered a URL httpx cannot send: {exc}")
            ) from exc

    def _status_error(
        self, spec: HTTPSpec, response: httpx.Response, note: str = ""
    ) -> ProviderError:
        body = response.text
        message = spec.extract_error(body) or body.strip() or "(empty body)"
        # Redact before truncating: a cut could leave part of a secret that no longer matches.
        return error_for_status(
            response.status_code, truncate(self._redact(message)) + note, provider=self._provider
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
        if clients is None or clients.max_connections != self.max_connections:
            # Clients made for an older `max_connections` close with their loops.
            clients = self._clients = LoopClients(self.max_connections)
        return clients

    def _request_limiter(self) -> RequestLimiter:
        self._limiter = RequestLimiter.matching(
            self._limiter, self.max_connections, self.min_delay_between_requests
        )
        return self._limiter

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

    def _redact(self, text: str) -> str:
        secrets: list[str | None] = []
        with contextlib.suppress(JibError):  # an unset env: key has nothing to leak
            secrets.append(self.get_api_key())
        secrets.extend(
            value
            for name, value in self.state.items()
            if isinstance(value, str) and len(value) >= 8 and is_secret_name(str(name))
        )
        return redact(text, secrets)

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

    __hash__ = None


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - httpx is a core dependency
        raise MissingDependencyError("httpx", "http", "The HTTP generator") from exc
