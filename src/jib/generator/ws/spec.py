"""`WSSpec`: the `http!` spec for a WebSocket target, with what only a WebSocket needs.

The shape is `HTTPSpec`'s, and so is everything behind it: the sandboxed templates compiled once,
the checked headers, the JSONPath and regex steps, the budgets and the masked errors (this module
subclasses the HTTP spec's models instead of copying them). A WebSocket adds:

    request:
      url: wss://bot.example.com/chat      # ws:// or wss:// (a Jinja template, as for http!)
      headers: {Authorization: 'Bearer {{ api_key }}'}   # sent with the handshake
      message: {type: message, text: $content}            # the frame to send: a JSON template
                                                           # object, or a Jinja template string
      connection: chat                     # a connection per answer (or: session)
    response:
      transforms: [{type: jsonpath, pattern: $.text}]     # read from each frame of the answer
      skip: {jsonpath: $.type, equals: typing}            # frames that are not the answer
      done: {jsonpath: $.type, equals: end}               # the frame that ends it
      idle_timeout: 2                      # or: the answer ends after this many quiet seconds

A *condition* (`skip`, `done`) is one of `{jsonpath: …, equals: …}` (the path finds the value;
without `equals`, finds anything), `{regex: …}` (matches somewhere in the frame) or
`{marker: …}` (the frame holds this text). How frames become the answer: frames matching `skip`
are dropped; each other frame goes through `response.transforms` (none: the frame's text) and
the pieces are joined; the answer ends at the frame matching `done`, or when `idle_timeout`
seconds pass without a frame once the answer has begun. The `done` frame adds what the
transforms find in it (nothing, when they find nothing or there are none); with a `marker`, the
text before the marker.

`connection: session` keeps the connection open after an answer, for the next turn of the same
conversation (its messages so far, answer included, pick it): the server keeps the history, so
the message template usually sends only `{{ content }}`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from jib._wire.websocket import WS_SCHEMES
from jib.errors import BudgetExceededError, ProcessingError
from jib.generator.http._budget import RenderLimits, metered
from jib.generator.http._exposure import masked_errors
from jib.generator.http._loading import load_spec_text
from jib.generator.http.spec import (
    _OWN_VARIABLES,
    COMPILE_SECONDS,
    HTTPSpec,
    PreparedRequest,
    RequestSpec,
    RequestTransformContext,
    ResponseSpec,
    _SpecModel,
    _walk_strings,
)
from jib.generator.http.transforms import (
    CompiledJsonPath,
    CompiledRegex,
    NotJSONError,
    fill_json_template,
    json_reference,
    to_text,
)

__all__ = ["Condition", "FrameVerdict", "WSRequestSpec", "WSResponseSpec", "WSSpec"]

_CONDITION_KEYS = ("jsonpath", "regex", "marker")
_CONDITION_SHAPE = "{jsonpath: …, equals: …}, {regex: …} or {marker: …}"
# What a WebSocket spec may set; keys the HTTP spec gains later are refused until ws! does them.
_WS_SPEC_KEYS = frozenset({"request", "response"})
_WS_REQUEST_KEYS = frozenset({"url", "headers", "timeout", "message", "connection"})
_WS_RESPONSE_KEYS = frozenset({"transforms", "skip", "done", "idle_timeout"})


class Condition(_SpecModel):
    """What a frame must hold to match: one of `{jsonpath: …, equals: …}`, `{regex: …}` or
    `{marker: …}` (see the module)."""

    jsonpath: str | None = None
    equals: Any = None
    regex: str | None = None
    marker: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"a condition is {_CONDITION_SHAPE}, not {type(data).__name__}")
        kinds = [key for key in _CONDITION_KEYS if key in data]
        unknown = sorted(str(key) for key in data if key not in (*_CONDITION_KEYS, "equals"))
        if unknown or len(kinds) != 1:
            got = ", ".join(sorted(map(str, data))) or "no key"
            raise ValueError(f"a condition is {_CONDITION_SHAPE}; it has {got}")
        if "equals" in data and kinds != ["jsonpath"]:
            raise ValueError("'equals' goes with 'jsonpath' only: {jsonpath: …, equals: …}")
        for key in kinds:
            if not isinstance(data[key], str):
                raise ValueError(f"a condition's {key!r} must be a string")
        return data

    @property
    def kind(self) -> str:
        """`jsonpath`, `regex` or `marker`."""
        return next(key for key in _CONDITION_KEYS if getattr(self, key) is not None)

    @property
    def pattern(self) -> str:
        """The condition's JSONPath, regex or marker."""
        value: str = getattr(self, self.kind)
        return value


class WSRequestSpec(RequestSpec):
    """The handshake (`url`, `headers`) and the frame to send (`message`)."""

    message: Any = None
    """The frame: a Jinja template string, or a JSON template object (as a `json` transform's
    pattern: `"$content"`, `"$messages"`, Jinja in other strings) sent as JSON text."""
    connection: Literal["chat", "session"] = "chat"
    """`chat`: a connection per answer; `session`: one per conversation, kept open between its
    turns."""

    @model_validator(mode="before")
    @classmethod
    def _websocket_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "message" not in data or data["message"] is None:
            raise ValueError(
                "ws! needs request.message, the template of the frame to send: a Jinja string "
                "such as '{{ content }}', or a JSON template such as {text: $content}"
            )
        if data.get("transforms"):
            raise ValueError(
                "ws! sends request.message; request.transforms is http!'s request body "
                "(move the template into request.message)"
            )
        for key in data:
            if key not in _WS_REQUEST_KEYS:
                raise ValueError(
                    f"ws! does not use request.{key} (it takes: "
                    f"{', '.join(sorted(_WS_REQUEST_KEYS))})"
                )
        return data

    @field_validator("url")
    @classmethod
    def _websocket_url(cls, url: str) -> str:
        stripped = url.strip()
        templated = "{{" in stripped or "{%" in stripped
        if not stripped.lower().startswith(WS_SCHEMES) and not (
            templated and not stripped.lower().startswith(("http://", "https://"))
        ):
            raise ValueError(
                "request.url must be a WebSocket URL starting with ws:// or wss:// (for an "
                "http(s) endpoint use http!)"
            )
        return url

    @field_validator("message")
    @classmethod
    def _message_shape(cls, message: Any) -> Any:
        if not isinstance(message, (str, dict, list)):
            raise ValueError(
                "request.message must be a template string or a JSON template object, not "
                f"{type(message).__name__}"
            )
        return message


class WSResponseSpec(ResponseSpec):
    """How frames become the answer: `transforms` per frame, `skip`, `done`, `idle_timeout`."""

    skip: Condition | None = None
    """Frames that are not part of the answer (typing indicators, acks)."""
    done: Condition | None = None
    """The frame that ends the answer."""
    idle_timeout: float | None = Field(default=None, gt=0, le=3600)
    """Seconds without a frame, once the answer has begun, after which it is complete."""

    @model_validator(mode="before")
    @classmethod
    def _websocket_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key in data:
            if key not in _WS_RESPONSE_KEYS:
                raise ValueError(
                    f"ws! does not use response.{key} (it takes: "
                    f"{', '.join(sorted(_WS_RESPONSE_KEYS))})"
                )
        if data.get("done") is None and data.get("idle_timeout") is None:
            raise ValueError(
                "ws! needs to know when an answer is complete: set response.done (a condition: "
                f"{_CONDITION_SHAPE}) or response.idle_timeout (seconds), or both"
            )
        return data


@dataclass(frozen=True, slots=True)
class FrameVerdict:
    """What one frame is to the answer: skipped, a piece of it (maybe empty), and whether it is
    the last."""

    skipped: bool = False
    piece: str = ""
    done: bool = False


class WSSpec(HTTPSpec):
    """The spec of a WebSocket target (see the module). Accepts a dict, JSON, YAML or base64 of
    either, like `HTTPSpec`:

    >>> spec = WSSpec.model_validate(
    ...     "request: {url: 'ws://127.0.0.1:8766/chat', message: '{{ content }}'}\\n"
    ...     "response: {done: {marker: '[END]'}}"
    ... )
    >>> spec.read_frame("Hello[END]")
    FrameVerdict(skipped=False, piece='Hello', done=True)
    """

    url_schemes: ClassVar[tuple[str, ...]] = WS_SCHEMES
    url_kind: ClassVar[tuple[str, str]] = ("a ws:// or wss:// URL", "either")

    request: WSRequestSpec
    response: WSResponseSpec

    @model_validator(mode="before")
    @classmethod
    def _websocket_spec_keys(cls, data: Any) -> Any:
        if isinstance(data, (str, bytes)):
            data = load_spec_text(data)
        if isinstance(data, dict):
            for key in data:
                if key not in _WS_SPEC_KEYS:
                    raise ValueError(
                        f"ws! does not use the spec key {key!r} (it takes request and response)"
                    )
            if "response" not in data:
                raise ValueError(
                    "ws! needs a response: at least response.done (a condition) or "
                    "response.idle_timeout (seconds), to know when an answer is complete"
                )
        return data

    @model_validator(mode="after")
    def _compile_websocket_parts(self) -> WSSpec:
        # `HTTPSpec._compile_all` compiled the URL, headers and response transforms; the frame
        # template and the conditions are compiled here, under the same kind of deadline.
        self._compile_deadline = time.monotonic() + COMPILE_SECONDS
        where = "request.message"
        try:
            reads: set[str] = set()

            def read(text: str) -> None:
                name = json_reference(text)
                if name is not None:
                    reads.add(name)
                elif "{{" in text or "{%" in text:
                    reads.update(self._get("jinja", text).read_names)

            message = self.request.message
            if isinstance(message, str):
                reads.update(self._get("jinja", message).read_names)
            else:
                _walk_strings(message, read)
            for name in ("skip", "done"):
                condition: Condition | None = getattr(self.response, name)
                where = f"response.{name}"
                if condition is not None and condition.kind != "marker":
                    self._get(condition.kind, condition.pattern)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        finally:
            self._compile_deadline = None
        self._reads = self._reads | reads
        return self

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, defaults left out (but an explicit `equals: null` kept)."""
        data = super().to_dict()
        for name in ("skip", "done"):
            condition: Condition | None = getattr(self.response, name)
            if condition is not None and "equals" in condition.model_fields_set:
                data["response"][name]["equals"] = condition.equals
        return data

    # -- sending -------------------------------------------------------------------------------

    def make_message(
        self, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> str:
        """Render the frame to send: the template string's text, or the JSON template's object
        as compact JSON.

        Raises:
            ProcessingError: a template fails.
            BudgetExceededError: rendering ran out of time, steps or size.
        """
        with metered(limits):
            return masked_errors(context.secrets, lambda: self._message(context))

    def _message(self, context: RequestTransformContext) -> str:
        variables = context.to_variables()
        message = self.request.message
        where = "request.message"
        if isinstance(message, str):
            return self._render(message, variables, where)
        filled = fill_json_template(
            message,
            variables,
            lambda text: self._render(text, variables, where),
            optional=_OWN_VARIABLES,
        )
        return to_text(filled)

    def build_request(
        self, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> PreparedRequest:
        """The handshake (`GET`, URL, headers) with the frame to send as its `content`, all
        within one budget (what `jib spec render` shows).

        Raises:
            ProcessingError: a template fails or renders something that cannot be sent.
            BudgetExceededError: rendering ran out of time, steps or size.
        """
        with metered(limits):
            headers = self.make_headers(context)
            message = self.make_message(context)
            url = self.make_url(context)
        return PreparedRequest("GET", url, headers, message)

    def build_handshake(
        self, context: RequestTransformContext, limits: RenderLimits | None = None
    ) -> tuple[PreparedRequest, str]:
        """The handshake (`GET`, URL, headers, no body) and the frame to send.

        Raises:
            as `build_request`.
        """
        request = self.build_request(context, limits)
        handshake = PreparedRequest(request.method, request.url, request.headers)
        return handshake, request.content or ""

    # -- reading -------------------------------------------------------------------------------

    @property
    def needs_worker_thread(self) -> bool:
        """True when reading a frame runs regexes or JSONPaths (see `HTTPSpec`)."""
        return super().needs_worker_thread or any(
            condition is not None and condition.kind != "marker"
            for condition in (self.response.skip, self.response.done)
        )

    def read_frame(
        self,
        frame: str,
        context: RequestTransformContext | None = None,
        limits: RenderLimits | None = None,
    ) -> FrameVerdict:
        """What `frame` is to the answer (see the module), all within one budget.

        Raises:
            ProcessingError: a frame that is neither skipped nor the last does not hold what
                the transforms expect (the message says to set `response.skip`).
            BudgetExceededError: a condition or a transform ran out of the budget.
        """
        with metered(limits):
            if context is None:
                return self._read(frame, None)
            return masked_errors(context.secrets, lambda: self._read(frame, context))

    def _read(self, frame: str, context: RequestTransformContext | None) -> FrameVerdict:
        response = self.response
        if response.skip is not None and self._matches(response.skip, frame) is not None:
            return FrameVerdict(skipped=True)
        done = response.done is not None and (at := self._matches(response.done, frame)) is not None
        if done and response.done is not None and response.done.kind == "marker":
            frame = frame[:at]
            if not frame.strip():
                return FrameVerdict(done=True)
        elif done and not response.transforms:
            return FrameVerdict(done=True)  # an end-of-answer frame, not a piece of it
        try:
            piece = self._parse(frame, context)
        except BudgetExceededError:
            raise
        except ProcessingError as exc:
            if done:
                return FrameVerdict(done=True)
            raise ProcessingError(
                f"a frame of the answer does not hold what response.transforms read: {exc}; "
                "if such frames are not the answer (typing indicators, acks), set response.skip"
            ) from None
        return FrameVerdict(piece=piece, done=done)

    def _matches(self, condition: Condition, frame: str) -> int | None:
        """Where `condition` matches in `frame` (for a marker, where it starts), or `None`."""
        kind = condition.kind
        if kind == "marker":
            found = frame.find(condition.pattern)
            return None if found < 0 else found
        if kind == "regex":
            regex: CompiledRegex = self._get("regex", condition.pattern)
            match = regex.search(frame)
            return None if match is None else int(match.start())
        path: CompiledJsonPath = self._get("jsonpath", condition.pattern)
        try:
            values = path.find_in(frame)
        except NotJSONError:
            return None
        if "equals" in condition.model_fields_set:
            return 0 if any(value == condition.equals for value in values) else None
        return 0 if values else None
