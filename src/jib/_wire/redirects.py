"""The one redirect policy, the same over either client: credentials and bodies never cross
origins.

- A redirect within the origin is followed as is (303, and 301/302 after a POST, continue as a
  GET without a body, as browsers and httpx do).
- A redirect that leaves the origin keeps only harmless headers (`Accept`, `Content-Type`, …), so
  credentials stay with the host they were meant for.
- A redirect that would carry the body to another origin (307/308, or 301/302 after a PUT) is not
  followed: the body may hold the key too. The request fails saying where to point instead.
"""

from __future__ import annotations

from urllib.parse import urljoin

from jib._wire.models import WireRequest, origin_of
from jib.errors import ProcessingError

__all__ = ["REDIRECT_STATUS", "next_request"]

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# Headers kept when a redirect leaves the origin; every other header may carry credentials.
_CROSS_ORIGIN_SAFE_HEADERS = frozenset({"accept", "accept-language", "content-type", "user-agent"})


def next_request(request: WireRequest, status: int, location: str) -> WireRequest:
    """The request to send for a `status` redirect to `location` (see the module's rules).

    Raises:
        ProcessingError: following it would send the request's body to another origin.
    """
    url = urljoin(request.url, location)
    method, headers, body = request.method, dict(request.headers), request.body
    if status == 303 or (status in (301, 302) and method == "POST"):
        method, body = "GET", None
        headers = {name: value for name, value in headers.items() if name.lower() != "content-type"}
    origin, target = origin_of(request.url), origin_of(url)
    if target != origin:
        if body is not None:
            raise ProcessingError(
                f"{origin} answered {status}, redirecting the {method} request and its body to "
                f"{target}, another origin; jib does not send a request body where it was not "
                "addressed (it may hold the key). Point the URL at the new location instead"
            )
        headers = {
            name: value
            for name, value in headers.items()
            if name.lower() in _CROSS_ORIGIN_SAFE_HEADERS
        }
    return WireRequest(method, url, headers, body)
