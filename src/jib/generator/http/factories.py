"""Build the `HTTPSpec` behind `HTTPGenerator.for_json_endpoint` and `for_text_endpoint`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from jib.errors import InvalidGeneratorError
from jib.generator.http.spec import HTTPSpec

__all__ = ["auth_header", "json_endpoint_spec", "text_endpoint_spec"]

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


def _request(
    url: str,
    method: str,
    headers: dict[str, str] | None,
    auth: dict[str, str] | None,
    timeout: float | None,
    transform: dict[str, Any],
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "url": url,
        "method": method,
        "headers": {**(headers or {}), **auth_header(auth)},
        "transforms": [transform],
    }
    if timeout is not None:
        request["timeout"] = timeout
    return request


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
    """The spec of a JSON API: a `json` body template, JSONPath for the content and errors."""
    if isinstance(response, str):
        response = {"content_path": response}
    response = dict(response or {})
    unknown = set(response) - {"content_path", "error_path"}
    if unknown:
        raise InvalidGeneratorError(
            "response accepts the keys 'content_path' and 'error_path', not "
            + ", ".join(sorted(unknown))
        )
    response_spec: dict[str, Any] = {"transforms": []}
    if response.get("content_path"):
        response_spec["transforms"].append(
            {"type": "jsonpath", "pattern": response["content_path"]}
        )
    if response.get("error_path"):
        response_spec["error_path"] = response["error_path"]
    if valid_status_codes is not None:
        response_spec["valid_status_codes"] = list(valid_status_codes)
    transform = {"type": "json", "pattern": body}
    return HTTPSpec.model_validate(
        {
            "request": _request(url, method, headers, auth, timeout, transform),
            "response": response_spec,
        }
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
    response_spec: dict[str, Any] = {"transforms": []}
    if response_pattern is not None:
        response_spec["transforms"].append({"type": "regex", "pattern": response_pattern})
    if valid_status_codes is not None:
        response_spec["valid_status_codes"] = list(valid_status_codes)
    transform = {"type": "jinja", "pattern": template}
    return HTTPSpec.model_validate(
        {
            "request": _request(url, method, headers, auth, timeout, transform),
            "response": response_spec,
        }
    )
