"""The spec's `steps:` at run time: a cookie jar per origin, redirects followed hop by hop, and
the steps run once for many requests (single-flight).

A generator whose spec has steps sends every request (steps and the main one) through a `Flow`:
its own wire, which follows no redirect and keeps no cookie by itself, so each hop's cookies
are read here and kept for the origin that set them (`scheme://host:port`), sent to that origin
only — not to another port or scheme of the same host, as a browser's jar would. Redirects are
followed by the wire's one policy (`jib._wire.redirects.next_request`).

Steps run before the first request, and again when a response has a status a step lists in
`rerun_on`: from the first step that lists it to the last. Requests that get that status at
once (50 requests and an expired session) run them once: the first takes the generator's
`hook_lock`, the others wait, see the steps already ran since they sent, and only retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

from jib._per_loop import RuntimeResource
from jib._secrets import redact
from jib._wire import Wire, WireRequest, WireResponse
from jib._wire.models import origin_of
from jib._wire.redirects import REDIRECT_STATUS, next_request
from jib.errors import ProcessingError, error_for_status
from jib.generator.http.spec import HTTPSpec, RequestTransformContext
from jib.generator.http.transforms import truncate

if TYPE_CHECKING:
    from jib.generator.http._budget import RenderLimits
    from jib.generator.http.generator import HTTPGenerator

__all__ = ["Flow", "OriginCookies", "cookies_set_by"]

logger = logging.getLogger("jib.generator.http")


def cookies_set_by(header_pairs: Iterable[tuple[str, str]]) -> dict[str, str | None]:
    """The cookies a response's `Set-Cookie` headers set (`None`: deleted, by `Max-Age=0` or an
    empty value); malformed headers are skipped."""
    found: dict[str, str | None] = {}
    for name, value in header_pairs:
        if name.lower() != "set-cookie":
            continue
        parsed: SimpleCookie = SimpleCookie()
        try:
            parsed.load(value)
        except CookieError:
            continue
        for key, morsel in parsed.items():
            max_age = morsel["max-age"]
            deleted = morsel.value == "" or (max_age != "" and str(max_age).strip() in ("0", "-1"))
            found[key] = None if deleted else morsel.value
    return found


class OriginCookies:
    """Cookies by origin: what a response sets is kept for its origin and sent to it only."""

    def __init__(self) -> None:
        self._jar: dict[str, dict[str, str]] = {}

    def take(self, url: str, header_pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Keep the cookies a response from `url` sets; return those it set (not deleted)."""
        found = cookies_set_by(header_pairs)
        if not found:
            return {}
        kept = self._jar.setdefault(origin_of(url), {})
        for name, value in found.items():
            if value is None:
                kept.pop(name, None)
            else:
                kept[name] = value
        return {name: value for name, value in found.items() if value is not None}

    def for_origin(self, url: str) -> dict[str, str]:
        """The cookies kept for `url`'s origin."""
        return dict(self._jar.get(origin_of(url), {}))

    def values(self) -> list[str]:
        """Every value kept (secrets to keep out of errors and logs)."""
        return [value for cookies in self._jar.values() for value in cookies.values()]

    def add_to(self, request: WireRequest) -> WireRequest:
        """`request` with the cookies of its origin added to its `Cookie` header."""
        cookies = self._jar.get(origin_of(request.url))
        if not cookies:
            return request
        sent = "; ".join(f"{name}={value}" for name, value in cookies.items())
        headers = dict(request.headers)
        name = next((key for key in headers if key.lower() == "cookie"), "Cookie")
        headers[name] = f"{headers[name]}; {sent}" if headers.get(name) else sent
        return WireRequest(request.method, request.url, headers, request.body)


class Flow(RuntimeResource):
    """One generator's steps at run time (shared by its copies, fresh in a pickled one): the
    cookie jar, how many times the steps have run (`round`), the values they extracted, and
    the wire requests go over."""

    def __init__(self) -> None:
        self.cookies = OriginCookies()
        self.round = 0
        self.extracted: list[str] = []
        self._wire: Wire | None = None

    def secrets(self) -> list[str]:
        """What the steps extracted and the cookies kept: kept out of errors and logs."""
        return [*self.extracted, *self.cookies.values()]

    def wire(self, generator: HTTPGenerator) -> Wire:
        """A wire with the generator's settings that follows no redirect and keeps no cookie."""
        settings = generator.wire_settings(max_redirects=0, cookies=False)
        if self._wire is None or self._wire.settings != settings:
            self._wire = Wire(settings)
        return self._wire

    async def aclose(self) -> None:
        """Close the running loop's connections of the steps' wire."""
        if self._wire is not None:
            await self._wire.aclose()

    def forget_wire(self) -> None:
        """Drop the wire (its connections close with their event loops)."""
        self._wire = None

    async def send(
        self, generator: HTTPGenerator, request: WireRequest
    ) -> tuple[WireResponse, dict[str, str]]:
        """Send `request`, following redirects by the wire's policy, keeping each hop's cookies
        for its origin; the final response (body read) and the cookies the hops set."""
        wire = self.wire(generator)
        set_cookies: dict[str, str] = {}
        for _ in range(generator.max_redirects + 1):
            response = await wire.send(self.cookies.add_to(request), generator)
            set_cookies.update(self.cookies.take(request.url, response.header_pairs()))
            location = response.headers.get("Location")
            if response.status not in REDIRECT_STATUS or not location:
                break
            request = next_request(request, response.status, location)
        return response, set_cookies

    @contextlib.asynccontextmanager
    async def stream(
        self, generator: HTTPGenerator, request: WireRequest
    ) -> AsyncIterator[WireResponse]:
        """As `send`, but the final response comes with its body unread (see `Wire.stream`)."""
        wire = self.wire(generator)
        for hop in range(generator.max_redirects + 1):
            async with wire.stream(self.cookies.add_to(request), generator) as response:
                self.cookies.take(request.url, response.header_pairs())
                location = response.headers.get("Location")
                if (
                    response.status in REDIRECT_STATUS
                    and location
                    and hop < generator.max_redirects
                ):
                    request = next_request(request, response.status, location)
                    continue
                yield response
                return

    # -- steps ---------------------------------------------------------------------------------

    async def before_first(
        self,
        generator: HTTPGenerator,
        spec: HTTPSpec,
        context: RequestTransformContext,
        limits: RenderLimits,
    ) -> int:
        """Run the steps if they never ran; the round the request is sent in."""
        seen = self.round
        if seen == 0:
            await self.rerun(generator, spec, context, limits, seen, status=None)
        return self.round

    async def rerun(
        self,
        generator: HTTPGenerator,
        spec: HTTPSpec,
        context: RequestTransformContext,
        limits: RenderLimits,
        seen: int,
        status: int | None,
    ) -> None:
        """Run the steps (all of them, or from the first that lists `status` in `rerun_on`),
        unless they already ran since round `seen`: then the caller just retries."""
        async with generator.hook_lock:
            if self.round != seen:
                return
            start = 0
            if status is not None:
                start = next(i for i, step in enumerate(spec.steps) if status in step.rerun_on)
                logger.info(
                    "HTTP: the target answered %s; running the steps again from %r",
                    status,
                    spec.steps[start].name,
                )
            for index in range(start, len(spec.steps)):
                await self._run_step(generator, spec, index, context, limits)
            self.round += 1

    async def _run_step(
        self,
        generator: HTTPGenerator,
        spec: HTTPSpec,
        index: int,
        context: RequestTransformContext,
        limits: RenderLimits,
    ) -> None:
        step = spec.steps[index]
        prepared = spec.build_step_request(index, context, limits)
        body = None if prepared.content is None else prepared.content.encode()
        response, set_cookies = await self.send(
            generator, WireRequest(prepared.method, prepared.url, prepared.headers, body)
        )
        text = response.text
        if response.status >= 400:
            shown = truncate(redact(text.strip() or "(empty body)", generator.wire_secrets()))
            raise error_for_status(
                response.status,
                f"step {step.name!r} answered {response.status}: {shown}",
                provider=generator.wire_label,
            )
        headers = dict(response.header_pairs())
        cookies = {**self.cookies.for_origin(prepared.url), **set_cookies}
        for name, extract in step.extract.items():
            if extract.kind in ("regex", "jsonpath"):
                value = await asyncio.to_thread(
                    spec.extract_value, extract, text, headers, cookies, limits
                )
            else:
                value = spec.extract_value(extract, text, headers, cookies, limits)
            if value is None:
                raise ProcessingError(
                    f"step {step.name!r}: extract {name!r} ({extract.kind} "
                    f"{truncate(extract.source, 100)!r}) found nothing in its response "
                    f"(status {response.status}, {len(text):,} characters)"
                )
            context.state[name] = value
            self.extracted.append(value)
        del self.extracted[:-200]  # the latest values are the live ones

    def reruns_on(self, spec: HTTPSpec, status: int) -> bool:
        """Whether a step lists `status` in `rerun_on`."""
        return any(status in step.rerun_on for step in spec.steps)
