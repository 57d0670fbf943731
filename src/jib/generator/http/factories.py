"""Build the `HTTPSpec` behind `HTTPGenerator.for_json_endpoint` and `for_text_endpoint`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jib.errors import InvalidGeneratorError
from jib.generator.http.spec import HTTPSpec

__all__ = ["auth_header", "json_endpoint_spec", "one_body", "text_endpoint_spec"]

_PY_API_KEY = re.compile(r"(?<!\{)\{\s*api_key\s*\}(?!\})")


def auth_header(auth: dict[str, str] | None) -> dict[str, str]:
    """The header template for an `auth={"header": …, "format": …}` setting.

    `format` may use `{api_key}` (Python style) or Jinja (`{{ state.access_token }}`); it defaults
    to the bare key, and `header` to `Authorization`.
    """
    if auth is None:
        return {}
    unknown = set(auth) - {"header", "format"}
    if unknown:
        raise InvalidGeneratorError(
            f"auth accepts the keys 'header' and 'format', not {', '.join(sorted(unknown))}"
        )
    header = auth.get("header") or "Authorization"
    template = _PY_API_KEY.sub("{{ api_key }}", auth.get("format") or "{api_key}")
    return {header: template}


def one_body(first: Any, second: Any, name: str, *, required: bool) -> Any:
    """The request body given as `name=` or as `request=` (not both).

    Raises:
        InvalidGeneratorError: both are given, or neither when the body is `required`.
    """
    if first is not None and second is not None:
        raise InvalidGeneratorError(f"pass the request body as {name}= or request=, not both")
    body = first if first is not None else second
    if body is None and required:
        raise InvalidGeneratorError(
            f"the request body is missing: pass {name}={{...}} (or request=), a JSON template "
            'such as {"messages": "$messages"}'
        )
    return body


def _spec(
    url: str,
    *,
    body_transform: dict[str, Any],
    response_transforms: list[dict[str, Any]],
    auth: dict[str, str] | None,
    method: str,
    headers: dict[str, str] | None,
    timeout: float | None,
    valid_status_codes: Sequence[int] | None,
    error_path: str | None = None,
    tool_calls_path: str | None = None,
) -> HTTPSpec:
    request: dict[str, Any] = {
        "url": url,
        "method": method,
        "headers": {**(headers or {}), **auth_header(auth)},
        "transforms": [body_transform],
    }
    if timeout is not None:
        request["timeout"] = timeout
    response: dict[str, Any] = {"transforms": response_transforms}
    if error_path:
        response["error_path"] = error_path
    if tool_calls_path:
        response["tool_calls"] = tool_calls_path
    if valid_status_codes is not None:
        response["valid_status_codes"] = list(valid_status_codes)
    return HTTPSpec.model_validate({"request": request, "response": response})


def json_endpoint_spec(
    url: str,
    *,
    body: Any,
    response: dict[str, Any] | str | None,
    auth: dict[str, str] | None,
    method: str,
    headers: dict[str, str] | None,
    timeout: float | None,
    valid_status_codes: Sequence[int] | None,
) -> HTTPSpec:
    """The spec of a JSON API: a `json` body template, JSONPath for the content, errors and
    tool calls."""
    if isinstance(response, str):
        response = {"content_path": response}
    response = dict(response or {})
    unknown = set(response) - {"content_path", "error_path", "tool_calls_path"}
    if unknown:
        raise InvalidGeneratorError(
            "response accepts the keys 'content_path', 'error_path' and 'tool_calls_path', not "
            + ", ".join(sorted(unknown))
        )
    content_path = response.get("content_path")
    return _spec(
        url,
        body_transform={"type": "json", "pattern": body},
        response_transforms=[{"type": "jsonpath", "pattern": content_path}] if content_path else [],
        error_path=response.get("error_path"),
        tool_calls_path=response.get("tool_calls_path"),
        auth=auth,
        method=method,
        headers=headers,
        timeout=timeout,
        valid_status_codes=valid_status_codes,
    )


def text_endpoint_spec(
    url: str,
    *,
    template: str,
    response_pattern: str | None,
    auth: dict[str, str] | None,
    method: str,
    headers: dict[str, str] | None,
    timeout: float | None,
    valid_status_codes: Sequence[int] | None,
) -> HTTPSpec:
    """The spec of a text API: a `jinja` body template, a regex for the answer."""
    return _spec(
        url,
        body_transform={"type": "jinja", "pattern": template},
        response_transforms=(
            [] if response_pattern is None else [{"type": "regex", "pattern": response_pattern}]
        ),
        auth=auth,
        method=method,
        headers=headers,
        timeout=timeout,
        valid_status_codes=valid_status_codes,
    )
