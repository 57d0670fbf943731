"""How a `CopiedRequest` becomes a spec: the marker replaced by the prompt, escaped for where
it is, and the secrets taken out (see `jib.generator.http.copied` for the rules)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_plus

from pydantic import ValidationError

from jib._secrets import is_secret_name
from jib.errors import InvalidGeneratorError
from jib.generator.http._curl import MULTIPART_BOUNDARY
from jib.generator.http._marked import (
    Expression,
    Marked,
    Piece,
    escaped_json_string,
    split_marked,
    template,
)
from jib.generator.http._raw_request import CopiedRequest
from jib.generator.http.spec import _CLIENT_HEADERS, HTTPSpec

__all__ = ["BuiltSpec", "PulledSecret", "build_spec"]


# Set by the HTTP client from the request itself, or asking the server for a 304.
_DROPPED_HEADERS = _CLIENT_HEADERS | {
    "http2-settings",
    "expect",
    "accept-encoding",
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
}
_AUTHORIZATION = frozenset({"authorization", "proxy-authorization"})
_CSRF = re.compile(r"csrf|xsrf", re.IGNORECASE)
_SCHEME_AND_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)[ \t]+(\S.*)")
_BOUNDARY = re.compile(r"boundary=(?:\"([^\"]+)\"|([^;\s]+))", re.IGNORECASE)
_FIELD_NAME = re.compile(r"\bname=\"([^\"]*)\"", re.IGNORECASE)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# Ranks of where a secret was found: the first found in the lowest rank becomes `api_key`.
_RANK_AUTHORIZATION, _RANK_HEADER, _RANK_COOKIE, _RANK_QUERY, _RANK_BODY = range(5)


@dataclass(frozen=True)
class PulledSecret:
    """A secret taken out of a copied request.

    Attributes:
        where: where it was (`the Authorization header`, `the cookie header`, `body field
            "password"`).
        reference: what the spec reads instead: `api_key` or `state.NAME`.
        hint: what the value is, for whoever sets it (`the value after "Bearer "`).
    """

    where: str
    reference: str
    hint: str = ""


@dataclass(frozen=True)
class BuiltSpec:
    """A spec made from a copy, the secrets taken out of it, and the generator attributes the
    copy sets (see `ImportedRequest`)."""

    spec: HTTPSpec
    api_key: str | None = field(repr=False)
    state: dict[str, str] = field(repr=False)
    secrets: tuple[PulledSecret, ...]
    options: dict[str, Any]


def build_spec(
    request: CopiedRequest,
    marker: str,
    *,
    cookies: bool,
    response: Mapping[str, Any] | str | None,
    valid_status_codes: Sequence[int] | None,
    from_state: Sequence[str] = (),
) -> BuiltSpec:
    """The spec sending `request` with the prompt where `marker` is, and the headers or fields
    `from_state` names (`NAME` or `NAME=KEY`) read from `state`.

    Raises:
        InvalidGeneratorError: no marker, one where a prompt cannot go, or a `from_state` name
            the copy does not have.
    """
    builder = _Builder(request, marker, cookies=cookies, from_state=from_state)
    return builder.build(response, valid_status_codes)


@dataclass
class _Found:
    rank: int
    order: int
    where: str
    name: str  # what the `state` name is made from
    value: str
    hint: str
    readers: list[tuple[Expression, str]] = field(default_factory=list)  # (expression, suffix)


class _Builder:
    """Turns one `CopiedRequest` into a spec, collecting the secrets and counting markers."""

    def __init__(
        self, request: CopiedRequest, marker: str, *, cookies: bool, from_state: Sequence[str]
    ) -> None:
        if not marker or not marker.strip():
            raise InvalidGeneratorError("the prompt marker may not be empty")
        self.request = request
        self.marker = marker
        self.cookies = cookies
        self.markers = 0
        self.found: list[_Found] = []
        # What `from_state` names, by its normal form: (as given, the `state` key), and which
        # of them the copy has.
        self.stated: dict[str, tuple[str, str]] = {}
        for item in from_state:
            name, _, key = item.partition("=")
            if not name.strip():
                raise InvalidGeneratorError(f"from_state: {item!r} names no header or field")
            key = key.strip() or _snake(name)
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise InvalidGeneratorError(
                    f"from_state: {key!r} is not a state key (letters, digits and _)"
                )
            self.stated[_normal(name)] = (name.strip(), key)
        self.used: set[str] = set()

    def _from_state(self, name: str, suffix: str = "") -> Expression | None:
        """The expression reading `name` from `state`, if `from_state` names it."""
        entry = self.stated.get(_normal(name))
        if entry is None:
            return None
        self.used.add(_normal(name))
        return Expression(f"state.{entry[1]}{suffix}")

    # -- secrets ---------------------------------------------------------------------------------

    def _secret(
        self, rank: int, where: str, name: str, value: str, hint: str = "", *, suffix: str = ""
    ) -> Expression:
        """Note a secret; the expression reading it (then `suffix`, a filter) is filled in once
        every secret is known (the first becomes `api_key`)."""
        expression = Expression("")
        found = _Found(rank, len(self.found), where, name, value, hint, [(expression, suffix)])
        self.found.append(found)
        return expression

    def _assign(self) -> tuple[str | None, dict[str, str], tuple[PulledSecret, ...]]:
        api_key: str | None = None
        state: dict[str, str] = {}
        pulled = []
        for found in sorted(self.found, key=lambda item: (item.rank, item.order)):
            if api_key is None:
                api_key, reference = found.value, "api_key"
            else:
                name = _state_name(found.name, state)
                state[name] = found.value
                reference = f"state.{name}"
            for expression, suffix in found.readers:
                expression.source = f"{reference}{suffix}"
            pulled.append(PulledSecret(found.where, reference, found.hint))
        return api_key, state, tuple(pulled)

    # -- the spec --------------------------------------------------------------------------------

    def build(
        self, response: Mapping[str, Any] | str | None, valid_status_codes: Sequence[int] | None
    ) -> BuiltSpec:
        request = self.request
        headers = self._headers()
        url = self._url()
        transforms = self._body()
        api_key, state, pulled = self._assign()  # fills the secret expressions' references
        unused = [given for normal, (given, _) in self.stated.items() if normal not in self.used]
        if unused:
            raise InvalidGeneratorError(
                f"from_state names {', '.join(map(repr, unused))}, which the copied request has "
                "no header or field of"
            )
        if self.markers == 0:
            raise InvalidGeneratorError(
                f"there is no {self.marker} marker in the copied request: put {self.marker} "
                "where the prompt goes (in the body, the URL or a header), or name your own "
                "marker (marker=, --marker)"
            )
        spec_request: dict[str, Any] = {
            "url": template(url),
            "method": request.method,
            "headers": {name: template(value) for name, value in headers.items()},
            "transforms": [
                {"type": kind, "pattern": _rendered(pattern)} for kind, pattern in transforms
            ],
        }
        options = dict(request.options)
        if "timeout" in options:
            spec_request["timeout"] = options.pop("timeout")
        spec_response = _response(response)
        if valid_status_codes is not None:
            spec_response["valid_status_codes"] = list(valid_status_codes)
        try:
            spec = HTTPSpec.model_validate({"request": spec_request, "response": spec_response})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "spec"
            raise InvalidGeneratorError(
                f"the copied request does not make a valid spec: {where}: {first['msg']}"
            ) from None
        return BuiltSpec(spec, api_key, state, pulled, options)

    def _marked(self, text: str, expression: Expression) -> list[Piece]:
        self.markers += text.count(self.marker)
        return split_marked(text, self.marker, expression)

    def _headers(self) -> dict[str, list[Piece]]:
        request = self.request
        merged: dict[str, tuple[str, list[str]]] = {}
        for name, value in request.headers:
            lowered = name.lower()
            if lowered in _DROPPED_HEADERS or (lowered == "cookie" and not self.cookies):
                continue
            if lowered in merged:
                joiner = "; " if lowered == "cookie" else ", "
                shown, values = merged[lowered]
                values.append(value)
                merged[lowered] = (shown, [joiner.join(values)])
            else:
                merged[lowered] = (name, [value])
        headers: dict[str, list[Piece]] = {}
        if request.basic_auth is not None and "authorization" not in merged:
            encoded = base64.b64encode(request.basic_auth.encode("utf-8")).decode("ascii")
            user = request.basic_auth.split(":", 1)[0]
            secret = self._secret(
                _RANK_AUTHORIZATION,
                f"curl's -u (user {user!r})",
                "authorization",
                encoded,
                "the base64 of user:password (printf %s 'user:password' | base64)",
            )
            headers["Authorization"] = ["Basic ", secret]
        for lowered, (name, values) in merged.items():
            headers[name] = self._header(name, lowered, values[0])
        return headers

    def _header(self, name: str, lowered: str, value: str) -> list[Piece]:
        if self.marker in value:
            return self._marked(value, Expression("content"))
        stated = self._from_state(name)
        if stated is not None:
            return [stated]
        if lowered in _AUTHORIZATION:
            match = _SCHEME_AND_CREDENTIALS.fullmatch(value.strip())
            if match:
                scheme, credentials = match.groups()
                secret = self._secret(
                    _RANK_AUTHORIZATION,
                    f"the {name} header",
                    lowered,
                    credentials,
                    f'the value after "{scheme} "',
                )
                return [f"{scheme} ", secret]
            return [self._secret(_RANK_AUTHORIZATION, f"the {name} header", lowered, value)]
        if lowered == "cookie":
            names = [part.split("=", 1)[0].strip() for part in value.split(";") if "=" in part]
            hint = "the Cookie header's whole value" + (
                f": cookies {', '.join(names)}" if names else ""
            )
            return [self._secret(_RANK_COOKIE, "the Cookie header", "cookie", value, hint)]
        if is_secret_name(name) and not _CSRF.search(name) and value:
            return [self._secret(_RANK_HEADER, f"the {name} header", name, value)]
        return [value]

    def _url(self) -> list[Piece]:
        url = self.request.url
        base, question, query = url.partition("?")
        query, _, _fragment = query.partition("#")  # a fragment is never sent
        scheme, _, rest = base.partition("://")
        authority, slash, path = rest.partition("/")
        if self.marker in unquote(authority):
            raise InvalidGeneratorError(
                f"the {self.marker} marker is in the URL's host; put it in the path, the query, "
                "a header or the body"
            )
        pieces: list[Piece] = [f"{scheme}://{authority}{slash}"]
        if self.marker in unquote(path):
            for index, segment in enumerate(path.split("/")):
                if index:
                    pieces.append("/")
                decoded = unquote(segment)
                if self.marker in decoded:
                    safe = Expression("content | urlencode | replace('/', '%2F')")
                    pieces += _encoded(self._marked(decoded, safe))
                else:
                    pieces.append(segment)
        else:
            pieces.append(path)
        if question:
            pieces.append("?")
            pieces += self._form(query, _RANK_QUERY, "query parameter")
        return pieces

    def _form(self, text: str, rank: int, what: str) -> list[Piece]:
        """Form-encoded `name=value&…` with the marker and secrets replaced, the rest as is."""
        pieces: list[Piece] = []
        for index, pair in enumerate(text.split("&")):
            if index:
                pieces.append("&")
            raw_name, equals, raw_value = pair.partition("=")
            name, value = unquote_plus(raw_name), unquote_plus(raw_value)
            if self.marker in value:
                pieces.append(f"{raw_name}{equals}")
                pieces += _encoded(self._marked(value, Expression("content | urlencode")))
            elif (stated := self._from_state(name, " | urlencode")) is not None:
                pieces += [f"{raw_name}=", stated]
            elif self.marker in name:
                raise InvalidGeneratorError(
                    f"the {self.marker} marker is in the name of a {what} ({name!r}); put it in "
                    "a value"
                )
            elif equals and value and is_secret_name(name) and not _CSRF.search(name):
                pieces.append(f"{raw_name}=")
                pieces.append(
                    self._secret(rank, f"{what} {name!r}", name, value, suffix=" | urlencode")
                )
            else:
                pieces.append(pair)
        return pieces

    def _body(self) -> list[tuple[str, Any]]:
        """The request transforms: one `json` or `jinja` step, or none without a body."""
        request = self.request
        if request.form is not None:
            return [("jinja", Marked(tuple(self._multipart_fields(request.form))))]
        body = request.body
        if body is None or body == "":
            return []
        kind = (request.header("Content-Type") or "").split(";", 1)[0].strip().lower()
        if kind.startswith("multipart/"):
            return [("jinja", Marked(tuple(self._multipart(body))))]
        # `curl -d '{…}'` sends JSON as a form (curl's default type): it is still JSON.
        parsed = _json_or_none(body) if "json" in kind or "form" in kind or not kind else None
        if kind == "application/x-www-form-urlencoded" and parsed is None:
            form = self._form(body.rstrip("\r\n"), _RANK_BODY, "form field")
            return [("jinja", Marked(tuple(form)))]
        if parsed is not None:
            return [("json", self._json(parsed, []))]
        if "json" in kind:
            raise InvalidGeneratorError(
                "the copied body is declared JSON but is not valid JSON; the prompt marker "
                f'goes inside a JSON string ("{self.marker}")'
            )
        expression = Expression("content | e" if "xml" in kind else "content")
        text = self._marked(_without_final_newline(body), expression)
        return [("jinja", Marked(tuple(text)))]

    def _json(self, value: Any, path: list[str]) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if self.marker in key:
                    raise InvalidGeneratorError(
                        f"the {self.marker} marker is in a JSON key ({key!r}); put it in a value"
                    )
                out[key] = self._json_field(key, item, [*path, key])
            return out
        if isinstance(value, list):
            return [self._json(item, [*path, str(index)]) for index, item in enumerate(value)]
        if isinstance(value, str):
            return self._json_string(value)
        return value

    def _json_field(self, key: str, item: Any, path: list[str]) -> Any:
        if not isinstance(item, (dict, list)) and (stated := self._from_state(key)) is not None:
            return _JSONReference(stated)
        if (
            isinstance(item, str)
            and item
            and self.marker not in item
            and is_secret_name(key)
            and not _CSRF.search(key)
        ):
            return _JSONReference(
                self._secret(_RANK_BODY, f"JSON field {'.'.join(path)!r}", key, item)
            )
        return self._json(item, path)

    def _json_string(self, text: str) -> Any:
        if self.marker not in text:
            return escaped_json_string(text)
        if text == self.marker:
            self.markers += 1
            return "$content"
        return Marked(tuple(self._marked(text, Expression("content"))))

    def _multipart(self, body: str) -> list[Piece]:
        kind = self.request.header("Content-Type") or ""
        match = _BOUNDARY.search(kind)
        if match is None:
            raise InvalidGeneratorError(
                "the copied multipart body's Content-Type names no boundary"
            )
        boundary = match.group(1) or match.group(2)
        if "\r\n" not in body:
            body = body.replace("\n", "\r\n")  # a copy saved with Unix line ends
        delimiter = f"--{boundary}"
        chunks = body.split(delimiter)
        if len(chunks) < 3 or not chunks[-1].startswith("--"):
            raise InvalidGeneratorError(
                f"the copied multipart body is not split by its boundary {boundary!r} (it "
                f"should hold --{boundary} lines and end with --{boundary}--)"
            )
        pieces: list[Piece] = [chunks[0]]
        for chunk in chunks[1:-1]:
            pieces.append(delimiter)
            pieces += self._part(chunk)
        pieces += [delimiter, "--\r\n"]
        return pieces

    def _part(self, chunk: str) -> list[Piece]:
        head, separator, content = chunk.partition("\r\n\r\n")
        name_match = _FIELD_NAME.search(head)
        name = name_match.group(1) if name_match else ""
        if not separator:
            return [chunk]
        content, ending = (content[:-2], "\r\n") if content.endswith("\r\n") else (content, "")
        if self.marker in content:
            return [head, separator, *self._marked(content, Expression("content")), ending]
        stated = self._from_state(name) if name else None
        if stated is not None:
            return [head, separator, stated, ending]
        is_file = "filename=" in head.lower()
        if content and not is_file and is_secret_name(name) and not _CSRF.search(name):
            secret = self._secret(_RANK_BODY, f"form field {name!r}", name, content)
            return [head, separator, secret, ending]
        return [chunk]

    def _multipart_fields(self, fields: list[tuple[str, str]]) -> list[Piece]:
        """curl's `-F` fields as a multipart body (with the boundary its Content-Type names)."""
        boundary = MULTIPART_BOUNDARY
        match = _BOUNDARY.search(self.request.header("Content-Type") or "")
        if match is not None:
            boundary = match.group(1) or match.group(2)
        chunks = "".join(
            f'\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n--{boundary}'
            for name, value in fields
        )
        return self._multipart(f"--{boundary}{chunks}--\r\n")


@dataclass(frozen=True)
class _JSONReference:
    """A JSON template entry that is exactly a secret (`"$api_key"`, `"$state.password"`)."""

    secret: Expression


def _rendered(value: Any) -> Any:
    """A request transform's pattern: pieces as one template, JSON templates entry by entry."""
    if isinstance(value, _JSONReference):
        return f"${value.secret.source}"
    if isinstance(value, Marked):
        return template(value.pieces)
    if isinstance(value, dict):
        return {key: _rendered(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rendered(item) for item in value]
    return value


def _encoded(pieces: list[Piece]) -> list[Piece]:
    """Literal pieces URL-encoded (the marker's pieces of a decoded value)."""
    return [piece if isinstance(piece, Expression) else quote_plus(piece) for piece in pieces]


def _json_or_none(body: str) -> Any:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, (dict, list)) else None


def _without_final_newline(body: str) -> str:
    """A text body without the line break a copy adds after it."""
    if body.endswith("\r\n"):
        return body[:-2]
    return body[:-1] if body.endswith("\n") else body


def _normal(name: str) -> str:
    """A header or field name compared without case or separators (`X-CSRF-Token`)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _snake(name: str) -> str:
    """`X-CSRF-Token` → `x_csrf_token`, `apiKey` → `api_key` (a digit first gets `v_`)."""
    words = re.split(r"[^A-Za-z0-9]+", _CAMEL.sub("_", name).lower())
    key = "_".join(word for word in words if word)
    return f"v_{key}" if key[:1].isdigit() else key


def _state_name(name: str, taken: Mapping[str, str]) -> str:
    """A `state` key for a secret called `name`: snake case, a secret name, not yet taken."""
    key = _snake(name) or "secret"
    if key[0].isdigit():
        key = f"secret_{key}"
    if not is_secret_name(key):
        key = f"{key}_secret"
    candidate, number = key, 2
    while candidate in taken or candidate == "api_key":
        candidate, number = f"{key}_{number}", number + 1
    return candidate


def _response(response: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if isinstance(response, str):
        response = {"content_path": response}
    response = dict(response or {})
    unknown = set(response) - {"content_path", "error_path", "tool_calls_path"}
    if unknown:
        raise InvalidGeneratorError(
            "response accepts the keys 'content_path', 'error_path' and 'tool_calls_path', not "
            + ", ".join(sorted(unknown))
        )
    spec: dict[str, Any] = {}
    if response.get("content_path"):
        spec["transforms"] = [{"type": "jsonpath", "pattern": response["content_path"]}]
    if response.get("error_path"):
        spec["error_path"] = response["error_path"]
    if response.get("tool_calls_path"):
        spec["tool_calls"] = response["tool_calls_path"]
    return spec
