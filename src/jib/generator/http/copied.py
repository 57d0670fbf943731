"""From a copied request to a spec: a raw HTTP request (Burp, ZAP, dev tools) or a `curl`
command with a marker (`{PROMPT}`) where the prompt goes.

The prompt is put where the marker is, escaped for where it goes: JSON-escaped in a JSON body,
form-escaped in a form body or the URL's query (the marker may be copied URL-encoded there,
`%7BPROMPT%7D`), as is in a text or multipart body and in a header. Everything else is kept as
copied, except what the HTTP client sets itself (`Host`, `Content-Length`, `Transfer-Encoding`,
`Connection`, `Accept-Encoding`, …) and conditional headers (`If-None-Match`) that would make the
server answer `304`.

Secrets are pulled out, never written into the spec: the `Authorization` header's credentials
(and curl's `-u`), headers named like a key or token (`X-Api-Key`, `X-Auth-Token`), the `Cookie`
header (as one value) and secret-named fields of the query or body (`api_key=`, `"password"`).
The first of them (in that order) becomes the generator's `api_key`, the others `state` entries
under secret names, and the spec refers to them (`Bearer {{ api_key }}`, `{{ state.cookie }}`).
CSRF tokens (`X-CSRF-Token`, `csrf_token=`) are not credentials — worthless without the session
they belong to — and stay as copied; a login step replaces them with fresh ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jib.generator.http._copy_spec import BuiltSpec, PulledSecret, build_spec
from jib.generator.http._curl import parse_curl
from jib.generator.http._raw_request import parse_raw_request
from jib.generator.http.spec import HTTPSpec

if TYPE_CHECKING:
    from jib.generator.http.generator import HTTPGenerator

__all__ = [
    "DEFAULT_MARKER",
    "ImportedRequest",
    "PulledSecret",
    "import_curl",
    "import_raw_request",
    "is_curl_command",
]

DEFAULT_MARKER = "{PROMPT}"
"""Where the prompt goes in a copied request (PyRIT's marker)."""


@dataclass(frozen=True)
class ImportedRequest:
    """A spec made from a copied request, and the secrets taken out of it.

    Attributes:
        spec: the spec (no secret in it).
        api_key: the first secret found (see the module), or `None`.
        state: the other secrets, by the `state` name the spec reads them from.
        secrets: where each secret was and what the spec reads instead.
        options: generator attributes the copy sets (curl's `-k` is `verify=False`,
            `--cert` is `cert=`, `-x` is `proxy=`, `--max-redirs` is `max_redirects=`).
    """

    spec: HTTPSpec
    api_key: str | None = field(default=None, repr=False)
    state: dict[str, str] = field(default_factory=dict, repr=False)
    secrets: tuple[PulledSecret, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    def generator(self, **kwargs: Any) -> HTTPGenerator:
        """An `HTTPGenerator` sending this request, holding the secrets it was copied with
        (`api_key`, `state`), which `kwargs` (generator attributes) may replace."""
        from jib.generator.http.generator import HTTPGenerator

        state = {**self.state, **(kwargs.pop("state", None) or {})}
        arguments: dict[str, Any] = {"api_key": self.api_key, **self.options, **kwargs}
        return HTTPGenerator(spec=self.spec, state=state, **arguments)


def import_raw_request(
    text: str,
    *,
    marker: str = DEFAULT_MARKER,
    scheme: str | None = None,
    response: Mapping[str, Any] | str | None = None,
    valid_status_codes: Sequence[int] | None = None,
    cookies: bool = True,
    from_state: Sequence[str] = (),
) -> ImportedRequest:
    """The spec of a raw HTTP request copied with `marker` where the prompt goes.

    Args:
        text: the request as copied: a request line (or HTTP/2 pseudo-headers), headers, a
            blank line and the body.
        marker: the text standing for the prompt.
        scheme: `http` or `https`; by default the copy's (`:scheme`, an absolute URL, the
            `Origin` or `Referer` of the same host), else `https`.
        response: where the answer is: a JSONPath, or `{"content_path", "error_path",
            "tool_calls_path"}` as in `HTTPGenerator.for_json_endpoint`; by default the whole
            body is the answer.
        valid_status_codes: the statuses that are answers (`[200]` by default).
        cookies: keep the `Cookie` header; `False` leaves it out (a login step or the cookies
            the server sets supply them).
        from_state: headers or fields (of the query or body) whose value a step fetches
            fresh, such as a CSRF token: `NAME` (read from `state` under NAME in snake case,
            `X-CSRF-Token` → `state.x_csrf_token`) or `NAME=KEY` (from `state.KEY`). Their
            copied values are dropped.

    Raises:
        InvalidGeneratorError: the copy is malformed, holds no marker, holds it where a
            prompt cannot go, or lacks a header or field `from_state` names; the message says
            where.
    """
    request = parse_raw_request(text, scheme=scheme)
    return _imported(
        build_spec(
            request,
            marker,
            cookies=cookies,
            response=response,
            valid_status_codes=valid_status_codes,
            from_state=from_state,
        )
    )


def import_curl(
    command: str,
    *,
    marker: str = DEFAULT_MARKER,
    response: Mapping[str, Any] | str | None = None,
    valid_status_codes: Sequence[int] | None = None,
    cookies: bool = True,
    from_state: Sequence[str] = (),
) -> ImportedRequest:
    """The spec of a `curl` command with `marker` where the prompt goes (see
    `import_raw_request` for the arguments; the module `_curl` lists the options read).

    Raises:
        InvalidGeneratorError: not a curl command, an option a spec cannot carry, no marker.
    """
    request = parse_curl(command)
    return _imported(
        build_spec(
            request,
            marker,
            cookies=cookies,
            response=response,
            valid_status_codes=valid_status_codes,
            from_state=from_state,
        )
    )


def is_curl_command(text: str) -> bool:
    """Whether a copy is a curl command rather than a raw request."""
    first = text.lstrip().split(None, 1)
    return bool(first) and first[0].rsplit("/", 1)[-1] in ("curl", "curl.exe")


def _imported(built: BuiltSpec) -> ImportedRequest:
    return ImportedRequest(built.spec, built.api_key, built.state, built.secrets, built.options)
