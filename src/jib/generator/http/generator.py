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
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr, field_validator

from jib._conversation import SESSION_KEY, ConversationSession, current_session
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
from jib.generator.http._flows import Flow, cookies_set_by
from jib.generator.http._hooks import HookResult, run_hook
from jib.generator.http._streams import StreamReader
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
    _flow: Flow = PrivateAttr(default_factory=Flow)
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

    @classmethod
    def from_raw_request(
        cls,
        text: str,
        *,
        marker: str = "{PROMPT}",
        scheme: str | None = None,
        response: dict[str, Any] | str | None = None,
        valid_status_codes: Sequence[int] | None = None,
        cookies: bool = True,
        from_state: Sequence[str] = (),
        model: str = "http",
        **kwargs: Any,
    ) -> HTTPGenerator:
        """A generator sending a raw HTTP request copied from Burp, ZAP or dev tools, with
        `marker` where the prompt goes (see `jib.generator.http.copied`).

        The secrets of the copy (`Authorization`, `Cookie`, key headers) are taken out of the
        spec into `api_key` and `state`, which the generator holds (never its identifier).

        Args:
            text: the copied request (request line or HTTP/2 pseudo-headers, headers, body).
            marker: the text standing for the prompt.
            scheme: `http` or `https`, when the copy does not say (default `https`).
            response: where the answer is: a JSONPath, or `{"content_path", "error_path",
                "tool_calls_path"}`; by default the whole body.
            valid_status_codes: the statuses that are answers (`[200]`).
            cookies: keep the copied `Cookie` header (`False`: the server's own cookies, or a
                login step's, are sent instead).
            from_state: headers or fields a step fetches fresh (a CSRF token): `NAME` or
                `NAME=KEY`, read from `state` instead of the copied value.
            model, **kwargs: generator attributes (`api_key=` replaces the copied secret).

        Raises:
            InvalidGeneratorError: the copy is malformed or holds no marker (the message says
                where).
        """
        from jib.generator.http.copied import import_raw_request

        imported = import_raw_request(
            text,
            marker=marker,
            scheme=scheme,
            response=response,
            valid_status_codes=valid_status_codes,
            cookies=cookies,
            from_state=from_state,
        )
        return imported.generator(model=model, **kwargs)

    @classmethod
    def from_curl(
        cls,
        command: str,
        *,
        marker: str = "{PROMPT}",
        response: dict[str, Any] | str | None = None,
        valid_status_codes: Sequence[int] | None = None,
        cookies: bool = True,
        from_state: Sequence[str] = (),
        model: str = "http",
        **kwargs: Any,
    ) -> HTTPGenerator:
        """A generator sending a `curl` command (a browser's "Copy as cURL", an API's docs),
        with `marker` where the prompt goes; as `from_raw_request`. Options such as `-k`,
        `--cacert`, `--cert`/`--key`, `-x` and `--max-redirs` become the generator's `verify`,
        `cert`/`cert_keyfile`, `proxy` and `max_redirects`.

        Raises:
            InvalidGeneratorError: not a curl command, an option a spec cannot carry (reading a
                file, a shell variable), or no marker.
        """
        from jib.generator.http.copied import import_curl

        imported = import_curl(
            command,
            marker=marker,
            response=response,
            valid_status_codes=valid_status_codes,
            cookies=cookies,
            from_state=from_state,
        )
        return imported.generator(model=model, **kwargs)

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
        text, calls, extra = await self._call(messages, params)
        message = Message("assistant", text, tool_calls=calls)
        if calls:
            return GeneratedMessage(message, "tool_calls", extra=extra)
        return GeneratedMessage(message, extra=extra)

    async def request_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """Send one text (as a single user message); the parsed response is the text."""
        answer, _calls, extra = await self._call([Message("user", text)], params)
        return GeneratedText(answer, extra=extra)

    async def request_message_stream(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> AsyncIterator[str | GeneratedMessage]:
        """With `response.stream` (`sse` or `ndjson`), the answer's text deltas as they come,
        then the whole message; without it, the whole answer at once.

        A server that answers a streaming spec with one JSON body (`Content-Type:
        application/json`, to an `sse` spec) is read as a whole answer, by the response's
        transforms.
        """
        spec = self._spec()
        if spec.response.stream is None:
            yield await self.request_message(messages, params)
            return
        call = self._prepare(spec, messages, params)
        await self._start(call)
        retried = False
        while True:
            request = self._wire_request(call)
            async with self._stream(call, request) as response:
                if self._reruns(call, response.status) and not retried:
                    await self.wire.read(response, self)
                    await self._rerun(call, response.status)
                    retried = True
                    continue
                whole = (
                    not self._streams(spec, response)
                    or response.status not in spec.response.valid_status_codes
                    or self.hook is not None  # a hook is handed the whole response
                )
                if whole:
                    await self.wire.read(response, self)
                    text, calls, extra = await self._finish(call, response, {})
                    if text:
                        yield text
                    message = Message("assistant", text, tool_calls=calls)
                    yield GeneratedMessage(
                        message, "tool_calls" if calls else "unknown", extra=extra
                    )
                    return
                reader = self._reader(call, response)
                async for line in self.wire.read_lines(response, self):
                    for delta in reader.feed(line):
                        yield delta
                    if reader.done:
                        break
                for delta in reader.flush():
                    yield delta
                extra = self._extra(call, response, reader.watched, {})
                yield GeneratedMessage(Message("assistant", reader.answer), extra=extra)
                return

    # -- one call --------------------------------------------------------------------------------

    def _spec(self) -> HTTPSpec:
        if self.spec is None:
            raise ProcessingError(
                "this HTTPGenerator has no spec: assign .spec or use "
                "HTTPGenerator.for_json_endpoint()/for_text_endpoint()"
            )
        return self.spec

    def response_cache_request(self, item: Sequence[Message] | str, params: GenerateParams) -> Any:
        """The request this item would send, rendered, for jib's response cache: method, URL,
        body, and the headers but those a secret name marks (`Authorization`, `X-Api-Key`, …);
        the key's own value is blanked wherever a template put it."""
        spec = self.spec
        if spec is None:
            return None
        if spec.steps or spec.session is not None:
            # What steps put in `state` (a CSRF token, a session cookie) changes with each
            # login, not the answer: the spec (in the identity) and the messages decide it.
            from jib.generator._response_key import generic_request

            return generic_request(item, params)
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

    def response_cache_refusal(self) -> str | None:
        """Why this generator's answers cannot be cached: a server that keeps the conversation
        (`session.history: server`) answers from what it holds, not from the request."""
        spec = self.spec
        if spec is not None and spec.session is not None and spec.session.history == "server":
            return (
                "the server keeps the conversation (session.history: server), so its answers "
                "depend on more than the request and are never cached"
            )
        return super().response_cache_refusal()

    def _context(
        self, conversation: Sequence[Message], params: GenerateParams, session_id: str = ""
    ) -> RequestTransformContext:
        return RequestTransformContext.from_messages(
            conversation,
            api_key=self.get_api_key(),
            model=self.model,
            state=self.state,
            params=params,
            session_id=session_id,
        )

    def _prepare(
        self, spec: HTTPSpec, messages: Sequence[Message], params: GenerateParams
    ) -> _Call:
        """The call's context: the conversation's session when it has one for this origin (and
        then, with `history: server`, only the messages after the last answer)."""
        limits = self.render_limits.within(self.request_timeout(params))
        session = current_session() if spec.session is not None else None
        if session is not None:
            probe = spec.make_url(self._context(messages, params), limits)
            if origin_of(probe) != session.origin:
                logger.info(
                    "HTTP %s: the conversation's session came from another origin; not sent",
                    origin_of(probe),
                )
                session = None
        if session is not None and spec.session is not None and spec.session.history == "server":
            last_answer = max(
                (i for i, message in enumerate(messages) if message.role == "assistant"),
                default=-1,
            )
            messages = messages[last_answer + 1 :]
        context = self._context(messages, params, session.id if session is not None else "")
        spec.check_carries(context.messages, params)
        flow = self._flow if spec.steps else None
        return _Call(spec, context, limits, flow, session)

    async def _start(self, call: _Call) -> None:
        if call.flow is not None:
            call.round = await call.flow.before_first(self, call.spec, call.context, call.limits)

    def _wire_request(self, call: _Call) -> WireRequest:
        # Rendered per attempt, so a hook or a step that refreshed `state` changes the retry.
        prepared = call.spec.build_request(call.context, call.limits)
        body = None if prepared.content is None else prepared.content.encode()
        request = WireRequest(prepared.method, prepared.url, prepared.headers, body)
        if call.session is not None and origin_of(prepared.url) != call.session.origin:
            raise ProcessingError(
                "request.url rendered with the session id names another origin than the one "
                "the id came from; it is sent only to its own origin"
            )
        return request

    async def _send(self, call: _Call, request: WireRequest) -> tuple[WireResponse, dict[str, str]]:
        if call.flow is not None:
            return await call.flow.send(self, request)
        response = await self.wire.send(request, self)
        return response, {}

    def _stream(
        self, call: _Call, request: WireRequest
    ) -> contextlib.AbstractAsyncContextManager[WireResponse]:
        if call.flow is not None:
            return call.flow.stream(self, request)
        return self.wire.stream(request, self)

    def _reruns(self, call: _Call, status: int) -> bool:
        return call.flow is not None and call.flow.reruns_on(call.spec, status)

    async def _rerun(self, call: _Call, status: int) -> None:
        assert call.flow is not None
        await call.flow.rerun(self, call.spec, call.context, call.limits, call.round, status)
        call.round = call.flow.round

    async def _call(
        self, messages: Sequence[Message], params: GenerateParams
    ) -> tuple[str, list[ToolCall], dict[str, Any]]:
        """One attempt: check what the spec carries, run the steps when due, render, send, let
        the hook decide, check the status, parse the text and tool calls.

        Retries are the request tier's: failures raise the normalized errors (marked
        retryable or not), and a hook's "retry" raises `RetryRequested`. A status a step lists
        in `rerun_on` runs the steps again (once for all requests that got it) and sends the
        request once more, within this attempt.
        """
        spec = self._spec()
        call = self._prepare(spec, messages, params)
        await self._start(call)
        response, set_cookies = await self._send(call, self._wire_request(call))
        if self._reruns(call, response.status):
            await self._rerun(call, response.status)
            response, set_cookies = await self._send(call, self._wire_request(call))
        return await self._finish(call, response, set_cookies)

    async def _finish(
        self, call: _Call, response: WireResponse, set_cookies: dict[str, str]
    ) -> tuple[str, list[ToolCall], dict[str, Any]]:
        """The hook's decision, the status, then the answer of a whole (read) response."""
        spec, context, limits = call.spec, call.context, call.limits
        decision = None
        if self.hook is not None:
            decision = await run_hook(self.hook, self, _for_hook(response), self._redact)
        valid = response.status in spec.response.valid_status_codes
        if decision == "retry":
            logger.info("HTTP %s: the hook asked for a retry", origin_of(response.url))
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
        if spec.response.stream is not None and self._streams(spec, response):
            reader = self._reader(call, response)
            for line in response.body.splitlines():
                for _ in reader.feed(line):
                    pass
            for _ in reader.flush():
                pass
            return reader.answer, [], self._extra(call, response, reader.watched, set_cookies)
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
        if spec.session is not None and spec.needs_worker_thread:
            extra = await asyncio.to_thread(self._extra, call, response, None, set_cookies)
        else:
            extra = self._extra(call, response, None, set_cookies)
        return answer, calls, extra

    @staticmethod
    def _streams(spec: HTTPSpec, response: WireResponse) -> bool:
        """Whether to read `response` as the spec's stream: an `sse` spec's server may answer
        with one JSON body instead, read as a whole answer."""
        content_type = response.headers.get("Content-Type", "").lower()
        return not (spec.response.stream == "sse" and content_type.startswith("application/json"))

    def _reader(self, call: _Call, response: WireResponse) -> StreamReader:
        reader = StreamReader(call.spec, self.max_response_bytes, self.wire_label, call.limits)
        session = call.spec.session
        if session is not None and session.id.kind in ("jsonpath", "regex"):

            def watch(payload: str) -> str | None:
                return call.spec.extract_value(session.id, payload, {}, {}, call.limits)

            reader.watch = watch
        return reader

    def _extra(
        self,
        call: _Call,
        response: WireResponse,
        found: str | None,
        set_cookies: dict[str, str],
    ) -> dict[str, Any]:
        """The answer's `extra`: the status, safe headers, and the conversation's session."""
        extra: dict[str, Any] = {"status_code": response.status, "headers": _safe_headers(response)}
        session = call.spec.session
        if session is None:
            return extra
        if found is None and response.body:
            cookies = {
                **{k: v for k, v in cookies_set_by(response.header_pairs()).items() if v},
                **set_cookies,
            }
            found = call.spec.extract_value(
                session.id, response.text, dict(response.header_pairs()), cookies, call.limits
            )
        elif found is None and session.id.kind in ("header", "cookie"):
            cookies = {k: v for k, v in cookies_set_by(response.header_pairs()).items() if v}
            found = call.spec.extract_value(
                session.id, "", dict(response.header_pairs()), cookies, call.limits
            )
        if found is None and call.session is not None:
            found = call.session.id  # the server kept the conversation without saying so again
        if found:
            extra[SESSION_KEY] = {"id": found, "origin": origin_of(response.request.url)}
        return extra

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

    async def aclose(self) -> None:
        """Close the running event loop's connections (the steps' too; new ones open on next
        use)."""
        await super().aclose()
        await self._flow.aclose()

    def unload(self) -> HTTPGenerator:
        """Forget the connection pools (the steps' too); their connections close when their
        event loops shut down."""
        super().unload()
        self._flow.forget_wire()
        return self

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
        secrets.extend(value for value in self._flow.secrets() if len(value) >= 8)
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
        """The spec's URL and its steps' URLs (a template's output: its templates may hold
        the key), and the proxy."""
        destinations = super().secret_destinations()
        if self.spec is not None:
            steps = [
                (f"the spec's steps[{index}].request.url ({step.name})", step.request.url)
                for index, step in enumerate(self.spec.steps)
            ]
            destinations[0:0] = [("the spec's request.url", self.spec.request.url), *steps]
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


@dataclass
class _Call:
    """What one call works with: the spec, the context, the render budget, the steps' flow
    (`None` without steps), the round of steps it was sent in, and the conversation's session."""

    spec: HTTPSpec
    context: RequestTransformContext
    limits: RenderLimits
    flow: Flow | None
    session: ConversationSession | None
    round: int = 0
