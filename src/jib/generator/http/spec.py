"""`HTTPSpec`: how messages become an HTTP request and a response becomes text.

A spec is data (pydantic models) that can be written as a dict, JSON, YAML or base64 of either.
It is treated as untrusted input: YAML is read with PyYAML's safe loader only, its size and
nesting are bounded, header names and values are checked, its templates and patterns are checked
for size and compiled once, in a sandbox, when the spec is validated (all of them within
`COMPILE_SECONDS`), and rendering a request or reading a response runs under a budget
(`RenderLimits`) that the spec cannot raise.

What a spec's errors say is stored with failed chats, so they carry no data (see `transforms`),
and the request's secrets (`RequestTransformContext.secrets`) are masked in them, in every
encoding `jib._secrets` knows. Response templates write what is stored, so they see neither
`api_key` nor the secret-named keys of `state` (`_exposure`).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from jib.errors import BudgetExceededError, ProcessingError
from jib.generator._parts import refused_part
from jib.generator.http._budget import RenderLimits, metered
from jib.generator.http._exposure import (
    hidden_api_key,
    hidden_from_responses,
    masked_errors,
    secrets_of,
)
from jib.generator.http._loading import check_spec_tree, load_spec_text
from jib.generator.http._regex import MAX_SPEC_REGEX_WEIGHT
from jib.generator.http.transforms import (
    CompiledJsonPath,
    CompiledRegex,
    NotJSONError,
    compile_jinja,
    compile_jsonpath,
    compile_regex,
    fill_json_template,
    json_reference,
    load_budgeted_json,
    match_text,
    parse_json_container,
    render_jinja,
    to_text,
)
from jib.messages import Message
from jib.params import GenerateParams
from jib.tools import ToolCall

__all__ = [
    "COMPILE_SECONDS",
    "Extract",
    "HTTPSpec",
    "PreparedRequest",
    "RequestSpec",
    "RequestTransform",
    "RequestTransformContext",
    "ResponseSpec",
    "ResponseTransform",
    "SessionSpec",
    "StepSpec",
]

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# Context variables taken from the params, `None` when not set: a JSON template entry that is
# just one of them is left out when it is `None`.
_OWN_VARIABLES = frozenset({"tools", "tool_choice", "response_format"})
_NO_MATCH = object()
# RFC 7230 `token`: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Line breaks (header injection), NUL and the other control characters HTTP/1.1 refuses.
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Set by the HTTP client from the request itself: a spec that sets them can only contradict it
# (a `Content-Length: 0` with a body), or reroute or hold the connection.
_CLIENT_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

COMPILE_SECONDS = 1.0
"""Seconds compiling all the templates and patterns of one spec may take (each one is also
bounded in size, so the last one started ends soon after)."""


@dataclass
class RequestTransformContext:
    """What request templates (and response Jinja templates, all but `api_key`) can refer to.

    Built by the generator for each request; build one yourself to try a spec. `messages` takes
    `Message`s or `{"role", "content"}` dicts, and when `content` and `all_content` are left
    empty they (and `role`) are taken from the messages:

    >>> context = RequestTransformContext(messages=[{"role": "user", "content": "hi"}])
    >>> context.content, context.role
    ('hi', 'user')

    Attributes:
        content: the content of the last message (its text).
        messages: the whole conversation, which templates see in the OpenAI shape: `$messages`
            is a list of `{"role", "content"}`, `content` a list of parts only for a message
            that has parts, plus `tool_calls` and `tool_call_id` where a message has them.
        api_key: the generator's api key (left undefined in templates when there is none).
        model: the generator's model name.
        state: the generator's mutable `state` dict (session ids, tokens).
        params: the generation params of this call, as a dict.
        all_content: the contents of all messages joined by newlines.
        role: the role of the last message.
        tools: the params' tool definitions, OpenAI-shaped (`None` when there are none).
        tool_choice: the params' `tool_choice` (`None` when not set).
        response_format: the params' `response_format` (`None` when not set).
        session_id: the conversation's server-side id (`session:` in the spec), seen by
            templates as `{{ session.id }}`; empty on the first turn.

    Raises:
        ProcessingError: a message is neither a `Message` nor a `{"role", "content"}` dict.
    """

    content: str = ""
    messages: list[Message] = field(default_factory=list)
    api_key: str | None = field(default=None, repr=False)
    model: str = ""
    state: dict[str, Any] = field(default_factory=dict, repr=False)
    params: dict[str, Any] = field(default_factory=dict)
    all_content: str = ""
    role: str = "user"
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    session_id: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if any(not isinstance(message, Message) for message in self.messages):
            self.messages = [_as_message(item, index) for index, item in enumerate(self.messages)]
        if self.messages and not self.content and not self.all_content:
            last = self.messages[-1]
            self.content, self.role = last.content, last.role
            self.all_content = "\n".join(message.content for message in self.messages)

    @classmethod
    def from_messages(
        cls,
        messages: Sequence[Message],
        *,
        api_key: str | None = None,
        model: str = "",
        state: dict[str, Any] | None = None,
        params: GenerateParams | None = None,
        session_id: str = "",
    ) -> RequestTransformContext:
        """The context for one conversation (`tools`, `tool_choice` and `response_format` taken
        from the params)."""
        last = messages[-1] if messages else None
        as_dict = params.to_dict() if params is not None else {}
        return cls(
            content=last.content if last else "",
            messages=list(messages),
            api_key=api_key,
            model=model,
            state=state if state is not None else {},
            params=as_dict,
            all_content="\n".join(message.content for message in messages),
            role=last.role if last else "user",
            tools=as_dict.get("tools"),
            tool_choice=as_dict.get("tool_choice"),
            response_format=as_dict.get("response_format"),
            session_id=session_id,
        )

    def to_variables(self) -> dict[str, Any]:
        """The template variables: every attribute, messages as dicts, `api_key` only if set."""
        variables: dict[str, Any] = {
            "content": self.content,
            "messages": [message.to_dict() for message in self.messages],
            "model": self.model,
            "state": self.state,
            "params": self.params,
            "all_content": self.all_content,
            "role": self.role,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "response_format": self.response_format,
            "session": {"id": self.session_id},
        }
        if self.api_key is not None:
            variables["api_key"] = self.api_key
        return variables

    def secrets(self) -> list[str]:
        """The values error messages must not show: the api key and the values of `state`'s
        secret-named keys (`jib._secrets.is_secret_name`), at any depth."""
        return secrets_of(self.api_key, self.state)


def _as_message(item: Any, index: int) -> Message:
    try:
        return Message.from_any(item)
    except (TypeError, ValueError) as exc:
        raise ProcessingError(f"RequestTransformContext.messages[{index}]: {exc}") from exc


@dataclass(frozen=True)
class PreparedRequest:
    """A request rendered from a spec, ready to send.

    Its repr shows the method, the URL's origin and the header names only: rendered URLs and
    header values often carry the api key or tokens from `state`.
    """

    method: str
    url: str
    headers: dict[str, str]
    content: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"PreparedRequest(method={self.method!r}, origin={origin_of(self.url)!r}, "
            f"headers={sorted(self.headers)!r})"
        )


def origin_of(url: str) -> str:
    """`scheme://host:port` of a URL, without credentials, path or query (safe to log)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme.lower()}://{host.lower()}"


class _Compiled(dict[tuple[str, str], Any]):
    """Compiled templates and patterns by (kind, source). Jinja templates can be neither pickled
    nor deep-copied, so a pickled or deep-copied spec starts with an empty cache and compiles
    again on first use."""

    def __reduce__(self) -> tuple[type[_Compiled], tuple[()]]:
        return (_Compiled, ())

    def __deepcopy__(self, memo: dict[int, Any]) -> _Compiled:
        return _Compiled()


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class RequestTransform(_SpecModel):
    """One request step: `json` (a template object) or `jinja` (a template string)."""

    type: Literal["json", "jinja"]
    pattern: Any

    @model_validator(mode="after")
    def _pattern_fits_type(self) -> RequestTransform:
        if self.type == "jinja" and not isinstance(self.pattern, str):
            raise ValueError("a 'jinja' transform's pattern must be a template string")
        return self


class ResponseTransform(_SpecModel):
    """One response step: `jsonpath`, `regex` (first group or whole match) or `jinja`."""

    type: Literal["jsonpath", "regex", "jinja"]
    pattern: str


class RequestSpec(_SpecModel):
    """How to build the request. `url` and header values are Jinja templates."""

    url: str = Field(min_length=1)
    method: str = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)
    transforms: list[RequestTransform] = Field(default_factory=list)

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(
                    f"header name {name!r} is not a valid HTTP header name (letters, digits and "
                    "!#$%&'*+-.^_`|~ only; no spaces or line breaks)"
                )
            lowered = name.lower()
            if lowered in _CLIENT_HEADERS:
                raise ValueError(
                    f"header {name!r} cannot be set by a spec: the HTTP client sets it from the "
                    "request (remove it from request.headers)"
                )
            if lowered in seen:
                raise ValueError(f"header {name!r} is given twice (names are case-insensitive)")
            seen.add(lowered)
            # A template may span lines inside its tags; what it renders is checked per request.
            if "{{" not in value and "{%" not in value and _HEADER_VALUE_BAD.search(value):
                raise ValueError(
                    f"the value of header {name!r} holds a line break or control character"
                )
        return headers

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        method = value.upper()
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}, not {value!r}")
        return method


class ResponseSpec(_SpecModel):
    """How to read the response: which statuses are valid and how to extract the text."""

    valid_status_codes: list[int] = Field(default_factory=lambda: [200])
    transforms: list[ResponseTransform] = Field(default_factory=list)
    error_path: str | None = None
    """JSONPath to the error message in an invalid response (else a truncated body is used)."""
    tool_calls: str | None = None
    """JSONPath to the tool calls in a response: an OpenAI-shaped list
    (`$.choices[0].message.tool_calls`) or its items; matching nothing, or `null`, is no call."""
    stream: Literal["sse", "ndjson"] | None = None
    """Read the answer as it comes: server-sent events (`sse`: each `data:` line one piece,
    `[DONE]` the end) or newline-delimited JSON (`ndjson`: each line one piece)."""
    delta_path: str | None = None
    """JSONPath to the text of each streamed piece (`$.choices[0].delta.content`); without it,
    a piece that is a JSON string is the text, and another piece's whole text is."""

    @model_validator(mode="after")
    def _delta_path_needs_stream(self) -> ResponseSpec:
        if self.delta_path is not None and self.stream is None:
            raise ValueError("delta_path reads streamed pieces: set stream (sse or ndjson) too")
        return self


class Extract(_SpecModel):
    """Where a value comes back in a response: exactly one of `regex` (its first group, or the
    whole match, in the body), `jsonpath` (in a JSON body), `header` (a response header) or
    `cookie` (a cookie the response sets)."""

    regex: str | None = None
    jsonpath: str | None = None
    header: str | None = None
    cookie: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Extract:
        given = [name for name in ("regex", "jsonpath", "header", "cookie") if getattr(self, name)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of regex, jsonpath, header or cookie"
                + (f" (it gives {', '.join(given)})" if given else "")
            )
        if self.header is not None and not _HEADER_NAME.fullmatch(self.header):
            raise ValueError(f"header {self.header!r} is not a valid HTTP header name")
        if self.cookie is not None and not _HEADER_NAME.fullmatch(self.cookie):
            raise ValueError(f"cookie {self.cookie!r} is not a valid cookie name")
        return self

    @property
    def kind(self) -> str:
        """Which of `regex`, `jsonpath`, `header` or `cookie` this is."""
        for name in ("regex", "jsonpath", "header", "cookie"):
            if getattr(self, name) is not None:
                return name
        raise AssertionError("validated: one is set")

    @property
    def source(self) -> str:
        """The pattern, path or name."""
        return str(getattr(self, self.kind))


_STATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class StepSpec(_SpecModel):
    """A request run before the first request, and again when the target answers a status in
    `rerun_on` (a login, fetching a CSRF token): its `request` is shaped like the spec's main
    `request`, and `extract` puts values of its response into `state`, by name."""

    name: str = Field(min_length=1, max_length=100)
    request: RequestSpec
    extract: dict[str, Extract] = Field(default_factory=dict)
    rerun_on: list[int] = Field(default_factory=list)

    @field_validator("extract")
    @classmethod
    def _state_names(cls, extract: dict[str, Extract]) -> dict[str, Extract]:
        for name in extract:
            if not _STATE_NAME.fullmatch(name):
                raise ValueError(
                    f"extract name {name!r} must be a template name (letters, digits and _, "
                    "not starting with a digit): templates read it as state.NAME"
                )
        return extract

    @field_validator("rerun_on")
    @classmethod
    def _statuses(cls, statuses: list[int]) -> list[int]:
        for status in statuses:
            if not 100 <= status <= 599:
                raise ValueError(f"rerun_on: {status} is not an HTTP status (100-599)")
        return statuses


class SessionSpec(_SpecModel):
    """A conversation the server keeps: where its id comes back (`id`), and whether the server
    keeps the history (`history: server`: each turn sends only the new messages) or the client
    sends it all every turn (`client`, the default). Templates see `{{ session.id }}`."""

    id: Extract
    history: Literal["server", "client"] = "client"


class HTTPSpec(_SpecModel):
    """The request and response description of an HTTP endpoint.

    Accepts a dict, a JSON or YAML string, or base64 of JSON/YAML wherever a spec is expected:

    >>> spec = HTTPSpec.model_validate("request: {url: 'http://127.0.0.1:8000/{{ model }}'}")
    >>> spec.make_url(RequestTransformContext(content="hi", model="m"))
    'http://127.0.0.1:8000/m'
    """

    url_schemes: ClassVar[tuple[str, ...]] = ("http://", "https://")
    """The schemes a rendered URL may have."""
    url_kind: ClassVar[tuple[str, str]] = ("an http(s) URL", "http:// or https://")
    """How errors name such a URL, and its schemes."""

    request: RequestSpec
    response: ResponseSpec = Field(default_factory=ResponseSpec)
    steps: list[StepSpec] = Field(default_factory=list, max_length=20)
    session: SessionSpec | None = None

    _compiled: _Compiled = PrivateAttr(default_factory=_Compiled)
    _compile_deadline: float | None = PrivateAttr(default=None)
    _regex_weight: int = PrivateAttr(default=0)
    _reads: frozenset[str] = PrivateAttr(default=frozenset())

    def __eq__(self, other: object) -> bool:
        # Compiled templates are a cache, not part of the spec's value.
        if not isinstance(other, HTTPSpec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    # -- parsing -------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _parse_text(cls, data: Any) -> Any:
        if isinstance(data, (str, bytes)):
            return load_spec_text(data)
        if isinstance(data, Mapping):
            check_spec_tree(data)  # a dict from code or from decoded JSON: the same bounds
        return data

    @model_validator(mode="after")
    def _compile_all(self) -> HTTPSpec:
        # Compile every template and pattern now: syntax errors surface at assignment, and
        # requests reuse the compiled forms.
        self._compiled = _Compiled()
        self._compile_deadline = time.monotonic() + COMPILE_SECONDS
        self._regex_weight = 0
        where = "request"
        try:
            requests = [("request", self.request)]
            requests += [(f"steps[{i}].request", s.request) for i, s in enumerate(self.steps)]
            for prefix, request in requests:
                where = f"{prefix}.url"
                self._get("jinja", request.url)
                for name, value in request.headers.items():
                    where = f"{prefix}.headers[{name!r}]"
                    self._get("jinja", value)
                for index, step in enumerate(request.transforms):
                    where = f"{prefix}.transforms[{index}]"
                    if step.type == "jinja":
                        self._get("jinja", step.pattern)
                    else:
                        _walk_strings(step.pattern, self._precompile_string)
            names: set[str] = set()
            for index, flow_step in enumerate(self.steps):
                where = f"steps[{index}]"
                if flow_step.name in names:
                    raise ValueError(f"the step name {flow_step.name!r} is used twice")
                names.add(flow_step.name)
                for name, extract in flow_step.extract.items():
                    where = f"steps[{index}].extract[{name!r}]"
                    self._compile_extract(extract)
            if self.session is not None:
                where = "session.id"
                self._compile_extract(self.session.id)
            if self.response.delta_path is not None:
                where = "response.delta_path"
                self._get("jsonpath", self.response.delta_path)
            for index, response_step in enumerate(self.response.transforms):
                where = f"response.transforms[{index}]"
                self._get(response_step.type, response_step.pattern)
            if self.response.error_path is not None:
                where = "response.error_path"
                self._get("jsonpath", self.response.error_path)
            if self.response.tool_calls is not None:
                where = "response.tool_calls"
                self._get("jsonpath", self.response.tool_calls)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        finally:
            self._compile_deadline = None
        self._reads = self._request_reads()
        return self

    def _request_reads(self) -> frozenset[str]:
        """The context variables the request's templates and `$` references read."""
        reads: set[str] = set()

        def read(text: str) -> None:
            name = json_reference(text)
            if name is not None:
                reads.add(name)
            elif "{{" in text or "{%" in text:
                reads.update(self._get("jinja", text).read_names)

        read(self.request.url)
        for value in self.request.headers.values():
            read(value)
        for step in self.request.transforms:
            if step.type == "jinja":
                reads.update(self._get("jinja", step.pattern).read_names)
            else:
                _walk_strings(step.pattern, read)
        return frozenset(reads)

    def _compile_extract(self, extract: Extract) -> None:
        if extract.kind in ("regex", "jsonpath"):
            self._get(extract.kind, extract.source)

    def _precompile_string(self, text: str) -> None:
        if "{{" in text or "{%" in text:
            self._get("jinja", text)

    def _get(self, kind: str, source: str) -> Any:
        key = (kind, source)
        compiled = self._compiled.get(key)
        if compiled is None:
            deadline = self._compile_deadline
            if deadline is not None and time.monotonic() > deadline:
                raise ValueError(
                    f"compiling the spec's templates and patterns took longer than "
                    f"{COMPILE_SECONDS:g}s; the spec is too large"
                )
            if kind == "jinja":
                compiled = compile_jinja(source)
            elif kind == "jsonpath":
                compiled = compile_jsonpath(source)
                self._count_regex_weight(sum(regex.weight for regex in compiled.regexes))
            else:
                compiled = compile_regex(source)
                self._count_regex_weight(compiled.weight)
            self._compiled[key] = compiled
        return compiled

    def _count_regex_weight(self, weight: int) -> None:
        # Compiled patterns stay in memory with the spec, so their total is bounded too (when
        # the spec is validated; a copy compiling again on first use holds the same patterns).
        if self._compile_deadline is None:
            return
        self._regex_weight += weight
        if self._regex_weight > MAX_SPEC_REGEX_WEIGHT:
            raise ValueError(
                f"the spec's regexes hold {self._regex_weight:,} items once their counted "
                f"repeats are unrolled; the limit for a spec is {MAX_SPEC_REGEX_WEIGHT:,}"
            )

    def _render(self, source: str, variables: Mapping[str, Any], where: str) -> str:
        return render_jinja(self._get("jinja", source), variables, where)

    # -- writing -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, defaults left out."""
        return self.model_dump(mode="json", exclude_defaults=True)

    def to_json(self) -> str:
        """The spec as compact JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    def to_yaml(self, *, allow_unicode: bool = True) -> str:
        """The spec as YAML (`allow_unicode=False` escapes every non-ASCII character)."""
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=allow_unicode))

    def to_base64(self) -> str:
        """Base64 (URL-safe, unpadded) of the YAML form; what identifiers carry."""
        # Escaped YAML: raw U+0085 and similar would be read back as line breaks.
        yaml_text = self.to_yaml(allow_unicode=False)
        encoded = base64.urlsafe_b64encode(yaml_text.encode("utf-8"))
        return encoded.decode("ascii").rstrip("=")

    # -- requests ------------------------------------------------------------------------------

    @property
    def needs_worker_thread(self) -> bool:
        """True when parsing responses runs regexes or JSONPaths: they may work up to their
        budget's time (a JSONPath on a large body, a slow match), which is best spent off the
        event loop."""
        return self.response.tool_calls is not None or any(
            step.type in ("regex", "jsonpath") for step in self.response.transforms
        )

    @property
    def request_reads(self) -> frozenset[str]:
        """The context variables the request's templates and `$` references read (`content`,
        `messages`, `tools`, …): what a request built from this spec can carry."""
        return self._reads

    def check_carries(self, messages: Sequence[Message], params: GenerateParams) -> None:
        """Refuse a conversation or params the request would drop: parts, tool calls and tool
        results travel only in `messages`; `tools`, `tool_choice`, `response_format` in their
        own variables or in `params`; `parallel_tool_calls`, `modalities` and `audio` in
        `params`.

        Raises:
            ProcessingError: naming what would be dropped, and what the spec reads instead.
        """
        reads = self._reads
        if "messages" not in reads:
            refused = refused_part(messages, lambda part: "")
            if refused is not None:
                raise self._uncarried(refused.removesuffix(": "), "messages")
            for number, message in enumerate(messages, 1):
                if message.tool_calls:
                    raise self._uncarried(
                        f"message {number} ({message.role}) holds tool calls", "messages"
                    )
                if message.tool_call_id is not None:
                    raise self._uncarried(
                        f"message {number} ({message.role}) answers a tool call (its tool_call_id)",
                        "messages",
                    )
        if "params" in reads:
            return
        for name, value in (
            ("tools", params.tools),
            ("tool_choice", params.tool_choice),
            ("response_format", params.response_format),
            ("parallel_tool_calls", params.parallel_tool_calls),
            ("modalities", params.modalities),
            ("audio", params.audio),
        ):
            if value is not None and name not in reads:
                where = f"{name} or params" if name in _OWN_VARIABLES else "params"
                raise self._uncarried(f"the params set {name}", where)

    def _uncarried(self, what: str, needed: str) -> ProcessingError:
        read = ", ".join(sorted(self._reads)) or "no variable"
        return ProcessingError(
            f"http! cannot carry this request: {what}, which travels only in {needed}, but the "
            f"spec's request never reads {needed} (it reads {read}), so it would be dropped. "
            "Send it in the spec's request ($messages, $tools, $response_format, "
            "{{ params }}) or leave it out"
        )

    def make_url(self, context: RequestTransformContext, limits: RenderLimits | None = None) -> str:
        """Render the URL template (within `limits`, the defaults when `None`).

        Raises:
            ProcessingError: a template fails, or the result is not an http(s) URL.
            BudgetExceededError: rendering ran out of time, steps or size.
        """
        with metered(limits):
            return masked_errors(context.secrets, lambda: self._url(context))

    def _url(
        self,
        context: RequestTransformContext,
        request: RequestSpec | None = None,
        prefix: str = "request",
    ) -> str:
        request = self.request if request is None else request
        url = self._render(request.url, context.to_variables(), f"{prefix}.url").strip()
        if not url.lower().startswith(self.url_schemes):
            # What it rendered is not shown: a URL template can render the key.
            kind, schemes = self.url_kind
            raise ProcessingError(
                f"{prefix}.url must render to {kind}; it rendered a "
                f"{len(url):,}-character text that does not start with {schemes}"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError when the port is out of range
        except ValueError:
            valid = False
        else:
            valid = True
        if not valid:
            raise ProcessingError(
                f"{prefix}.url rendered an invalid URL (its port is not a number from 0 to "
                "65535, or its IPv6 address is malformed)"
            )
        if not parts.hostname:
            raise ProcessingError(f"{prefix}.url rendered a URL without a host")
        return url

    def make_headers(
        self, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> dict[str, str]:
        """Render the header templates (within `limits`, the defaults when `None`).

        Raises:
            ProcessingError: a template fails, renders a line break (header injection) or
                characters that are not ASCII (the value itself is not shown: it may be a key).
            BudgetExceededError: rendering ran out of time, steps or size.
        """
        with metered(limits):
            return masked_errors(context.secrets, lambda: self._headers(context))

    def _headers(
        self,
        context: RequestTransformContext,
        request: RequestSpec | None = None,
        prefix: str = "request",
    ) -> dict[str, str]:
        request = self.request if request is None else request
        variables = context.to_variables()
        headers: dict[str, str] = {}
        for name, template in request.headers.items():
            value = self._render(template, variables, f"{prefix}.headers[{name!r}]")
            if _HEADER_VALUE_BAD.search(value):
                raise ProcessingError(
                    f"{prefix}.headers[{name!r}] rendered a line break or control character"
                )
            if not value.isascii():
                raise ProcessingError(
                    f"{prefix}.headers[{name!r}] rendered characters that are not ASCII; "
                    "header values must be ASCII"
                )
            headers[name] = value
        return headers

    def make_request_body(
        self, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> str | None:
        """Run the request transforms; `None` when there are none (no body is sent).

        Each step sees the previous step's output as `result`, `data` and `output`. A `json` step
        gives an object, written as JSON text. All steps share one budget from `limits` (the
        defaults when `None`).

        Raises:
            ProcessingError: a template fails.
            BudgetExceededError: rendering ran out of time, steps or size.
        """
        with metered(limits):
            body = masked_errors(context.secrets, lambda: self._body(context))
        return None if body is None else to_text(body)

    def _body(
        self,
        context: RequestTransformContext,
        request: RequestSpec | None = None,
        prefix: str = "request",
    ) -> Any:
        request = self.request if request is None else request
        variables = context.to_variables()
        output: Any = None
        for index, step in enumerate(request.transforms):
            where = f"{prefix}.transforms[{index}] ({step.type})"
            step_variables = {**variables, "result": output, "data": output, "output": output}
            if step.type == "jinja":
                output = self._render(step.pattern, step_variables, where)
            else:

                def render(
                    text: str, step_variables: dict[str, Any] = step_variables, where: str = where
                ) -> str:
                    return self._render(text, step_variables, where)

                output = fill_json_template(
                    step.pattern, step_variables, render, optional=_OWN_VARIABLES
                )
        return output

    def build_request(
        self, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> PreparedRequest:
        """The whole request: method, URL, headers and body.

        A body made by a `json` step gets `Content-Type: application/json` unless the spec's
        headers set a content type. All templates share one budget from `limits` (the defaults
        when `None`; a generator passes its `render_limits` lowered to the request timeout).

        Raises:
            ProcessingError: a template fails or renders something a request cannot carry.
            BudgetExceededError: rendering ran out of time, steps or size.
        """
        return self._build(context, limits, self.request, "request")

    def build_step_request(
        self, index: int, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> PreparedRequest:
        """The request of `steps[index]`, rendered as `build_request` renders the main one.

        Raises:
            IndexError: there is no such step.
            ProcessingError, BudgetExceededError: as `build_request`.
        """
        return self._build(context, limits, self.steps[index].request, f"steps[{index}].request")

    def _build(
        self,
        context: RequestTransformContext,
        limits: RenderLimits | None,
        request: RequestSpec,
        prefix: str,
    ) -> PreparedRequest:
        secrets = context.secrets
        with metered(limits):
            headers = masked_errors(secrets, lambda: self._headers(context, request, prefix))
            body = masked_errors(secrets, lambda: self._body(context, request, prefix))
            content = None if body is None else to_text(body)
            url = masked_errors(secrets, lambda: self._url(context, request, prefix))
        if content is not None and not any(name.lower() == "content-type" for name in headers):
            last = request.transforms[-1].type if request.transforms else "jinja"
            headers["Content-Type"] = (
                "application/json" if last == "json" else "text/plain; charset=utf-8"
            )
        return PreparedRequest(request.method, url, headers, content)

    # -- responses -----------------------------------------------------------------------------

    def parse_response_body(
        self,
        body: str,
        context: RequestTransformContext | None = None,
        limits: RenderLimits | None = None,
    ) -> str:
        """Run the response transforms over `body`; with none, the body is the answer.

        Each step sees the previous output as `result`, `data` and `output` (Jinja steps also see
        the request context). A Jinja step sees it parsed, as the seed's system does: after a
        `jsonpath` step, the value it matched (a list for several matches, so
        `{{ result | join('') }}` joins them); after the body or another step, a JSON object or
        array is parsed (`{{ result.reply }}`) and other text stays text. All steps share one
        budget from `limits` (the defaults when `None`): regexes match with the time left in it.

        Raises:
            NotJSONError: the first step is a `jsonpath` step and the body is not JSON.
            ProcessingError: the body is not what a step expects, or a pattern matches nothing
                (the error names it).
            BudgetExceededError: a regex ran too long, or a step ran out of its budget.
        """
        with metered(limits):
            if context is None:
                return self._parse(body, None)
            return masked_errors(context.secrets, lambda: self._parse(body, context))

    def parse_response(
        self,
        body: str,
        context: RequestTransformContext | None = None,
        limits: RenderLimits | None = None,
    ) -> tuple[str, list[ToolCall]]:
        """The answer's text and its tool calls (`response.tool_calls`), all within one budget.

        When the response holds tool calls, a content step that matches nothing or `null` (an
        OpenAI answer that only calls tools) gives an empty text instead of failing.

        Raises:
            NotJSONError: the body is not JSON and the spec reads it as JSON.
            ProcessingError: as `parse_response_body`, or a tool call that is not one.
            BudgetExceededError: a step ran out of the budget.
        """
        with metered(limits):
            calls = self.parse_tool_calls(body)
            if context is None:
                return self._parse(body, None, lenient=bool(calls)), calls
            text = masked_errors(
                context.secrets, lambda: self._parse(body, context, lenient=bool(calls))
            )
            return text, calls

    def parse_tool_calls(self, body: str, limits: RenderLimits | None = None) -> list[ToolCall]:
        """The tool calls `response.tool_calls` finds in a JSON body (none without that key).

        Each match is an OpenAI-shaped call (`{"id", "type": "function", "function": {"name",
        "arguments"}}`), a list of them, or a flat `{"name", "arguments"}`; arguments given as
        an object are written as JSON text.

        Raises:
            NotJSONError: the body is not JSON.
            ProcessingError: a match is not a tool call (the error says which, not what).
            BudgetExceededError: the path ran out of the budget.
        """
        if self.response.tool_calls is None:
            return []
        path: CompiledJsonPath = self._get("jsonpath", self.response.tool_calls)
        values = path.find_in(body, limits)
        items: list[Any] = []
        for value in values:
            if isinstance(value, list):
                items.extend(value)
            elif value is not None:
                items.append(value)
        return [_tool_call(item, number) for number, item in enumerate(items, 1)]

    def _parse(
        self, body: str, context: RequestTransformContext | None, *, lenient: bool = False
    ) -> str:
        output = body
        matched: Any = _NO_MATCH  # the value the previous (jsonpath) step matched
        variables = context.to_variables() if context is not None else {}
        # What response templates write is stored: they may not read the key or the secrets
        # in `state`.
        if "api_key" in variables:
            variables["api_key"] = hidden_api_key()
        if "state" in variables:
            variables["state"] = hidden_from_responses(variables["state"])
        for index, step in enumerate(self.response.transforms):
            previous, matched = matched, _NO_MATCH
            if step.type == "jsonpath":
                path: CompiledJsonPath = self._get("jsonpath", step.pattern)
                try:
                    matched = _extract(path, output, first=index == 0)
                except (NotJSONError, BudgetExceededError):
                    raise
                except ProcessingError:
                    if lenient:  # the answer is its tool calls
                        return ""
                    raise
                if matched is None and lenient:
                    return ""
                output = match_text(matched)
            elif step.type == "regex":
                pattern: CompiledRegex = self._get("regex", step.pattern)
                try:
                    output = pattern.apply(output)
                except BudgetExceededError:
                    raise
                except ProcessingError:
                    if lenient:
                        return ""
                    raise
            else:
                seen = parse_json_container(output) if previous is _NO_MATCH else previous
                step_variables = {**variables, "result": seen, "data": seen, "output": seen}
                output = self._render(
                    step.pattern, step_variables, f"response.transforms[{index}] (jinja)"
                )
        return output

    def extract_value(
        self,
        extract: Extract,
        body: str,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        limits: RenderLimits | None = None,
    ) -> str | None:
        """What `extract` finds in a response: its body (`regex`, `jsonpath`), `headers`
        (looked up ignoring case) or the `cookies` it set; `None` when it finds nothing (or a
        `jsonpath` reads a body that is not JSON). A match that is not a string is written as
        JSON text.

        Raises:
            BudgetExceededError: a pattern ran out of the budget (`limits`, the defaults when
                `None`).
        """
        kind, source = extract.kind, extract.source
        if kind == "header":
            wanted = source.lower()
            return next((v for k, v in headers.items() if k.lower() == wanted), None)
        if kind == "cookie":
            return cookies.get(source)
        with metered(limits):
            if kind == "regex":
                pattern: CompiledRegex = self._get("regex", source)
                found = pattern.search(body)
                if found is None:
                    return None
                value = found.group(1) if pattern.groups else found.group(0)
                return None if value is None else str(value)
            path: CompiledJsonPath = self._get("jsonpath", source)
            try:
                values = path.find_in(body)
            except NotJSONError:
                return None
        values = [value for value in values if value is not None]
        if not values:
            return None
        return match_text(values[0])

    def extract_error(self, body: str) -> str | None:
        """What `response.error_path` finds in an error body, or `None`."""
        if self.response.error_path is None:
            return None
        path: CompiledJsonPath = self._get("jsonpath", self.response.error_path)
        try:
            with metered(None):  # the default budget: this runs on the event loop
                values = path.find(load_budgeted_json(body, "the error response"))
        except (ValueError, ProcessingError):
            # Best effort: without it, the error shows the body (redacted by the generator).
            return None
        if not values:
            return None
        return to_text(values[0] if len(values) == 1 else values)


def _extract(path: CompiledJsonPath, text: str, *, first: bool) -> Any:
    """`path.extract(text)`; a `NotJSONError` only from the first step, whose text is the body
    (the generator treats a body that is not JSON as a cut answer, to retry)."""
    try:
        return path.extract(text)
    except NotJSONError as exc:
        if first:
            raise
        failure = ProcessingError(str(exc))
    raise failure


def _tool_call(value: Any, number: int) -> ToolCall:
    """A tool call from a response: OpenAI's shape, or a flat `{"name", "arguments"}`."""
    if isinstance(value, Mapping) and "function" not in value and "name" in value:
        value = {"id": value.get("id"), "function": value}
    try:
        if not isinstance(value, Mapping):
            raise ValueError("not an object")
        return ToolCall.from_dict(value)
    except ValueError:
        failure = ProcessingError(
            f"response.tool_calls: match {number} is not a tool call (an object with "
            '"function": {"name", "arguments"}, or with "name" and "arguments")'
        )
    raise failure


def _walk_strings(value: Any, visit: Any) -> None:
    if isinstance(value, str):
        visit(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _walk_strings(item, visit)
    elif isinstance(value, list):
        for item in value:
            _walk_strings(item, visit)
