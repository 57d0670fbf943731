"""`WiredGenerator`: the base of the providers that send over jib's own wire (`openai!`, `http!`).

It adds the wire's settings to the request tier — the same fields, meanings and defaults on every
such provider — and the one place a generator keeps its `Wire` (shared by its copies, fresh in a
pickled one, rebuilt when a setting changes).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from jib._wire import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    ProxyURL,
    Verify,
    Wire,
    WireSettings,
)
from jib._wire.settings import CertPath
from jib.errors import JibError
from jib.generator.remote import RequestGenerator

__all__ = ["WiredGenerator"]


class WiredGenerator(RequestGenerator):
    """A `RequestGenerator` whose requests go over jib's wire (`jib._wire`).

    Attributes:
        proxy: send every request through this proxy (`http://127.0.0.1:8080` for Burp or
            mitmproxy) instead of the environment's `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` (which
            apply otherwise, with `NO_PROXY`). Credentials belong in the environment, not here:
            attributes are stored with every chat.
        verify: verify TLS certificates (`True`: the system's, or `SSL_CERT_FILE`), don't
            (`False`), or trust the CA bundle (PEM) at this path: a private CA, an interception
            proxy's certificate.
        cert: the client certificate to present to servers that ask for one (mutual TLS): a
            PEM file holding the certificate and its private key, or only the certificate when
            `cert_keyfile` names the key's file (as curl's `--cert` and `--key`). The key may not be
            encrypted. A path is not inert: data (a stored chat) may not set it unless allowed.
        cert_keyfile: the client certificate's private key (a PEM file), when not in `cert`.
        max_response_bytes: the largest answer read: a body after decompression, one line of a
            stream, or what a stream's deltas add up to (a whole stream, frames included, may
            carry twice as much). Larger answers fail with `ProcessingError`.
        max_redirects: redirects followed per request (credentials and bodies never follow a
            redirect to another origin).
        (and the limits and retry settings of `RequestGenerator`)
    """

    proxy: ProxyURL = None
    verify: Verify = True
    cert: CertPath = None
    cert_keyfile: CertPath = None
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, gt=0)
    max_redirects: int = Field(default=DEFAULT_MAX_REDIRECTS, ge=0, le=30)

    fetches_urls: ClassVar[bool] = False  # a part's URL goes to the server as it is

    keeps_cookies: ClassVar[bool] = False
    """Whether the wire keeps the cookies servers set (per event loop), as a browser would."""

    _wire: Wire | None = PrivateAttr(default=None)

    def wire_settings(self, **changes: Any) -> WireSettings:
        """The wire settings this generator's attributes make, with `changes` over them (a
        second wire of its own, say, that follows no redirect: `max_redirects=0`)."""
        settings = WireSettings(
            self.proxy,
            self.verify,
            self.max_response_bytes,
            self.max_redirects,
            self.keeps_cookies,
            cert=self.cert,
            cert_keyfile=self.cert_keyfile,
        )
        return dataclasses.replace(settings, **changes) if changes else settings

    @property
    def wire(self) -> Wire:
        """The wire this generator sends over; a copy whose settings changed gets its own."""
        wire: Wire | None = self._runtime["_wire"]
        if wire is not None:
            made_for = wire.settings
            if (
                made_for.max_response_bytes == self.max_response_bytes
                and made_for.proxy == self.proxy
                and made_for.verify == self.verify
                and made_for.max_redirects == self.max_redirects
                and made_for.cert == self.cert
                and made_for.cert_keyfile == self.cert_keyfile
            ):
                return wire
        # Clients made for older settings close with their event loops.
        wire = self._wire = Wire(self.wire_settings())
        return wire

    @property
    def wire_label(self) -> str:
        """The provider, as errors name it."""
        return self._provider_label

    def wire_secrets(self) -> Sequence[str | None]:
        """The secrets requests may carry, kept out of errors and logs: the api key."""
        with contextlib.suppress(JibError):  # an unset env: key has nothing to leak
            return [self.get_api_key()]
        return []

    def secret_destinations(self) -> list[tuple[str, str]]:
        """The endpoint (see `Generator`), and the proxy: it sees every request."""
        destinations = super().secret_destinations()
        if self.proxy is not None:
            destinations.append(("proxy", str(self.proxy)))
        return destinations

    async def aclose(self) -> None:
        """Close the running event loop's connections (new ones open on next use).

        Optional: connections also close when their event loop shuts down (as `asyncio.run`
        does).
        """
        if self._wire is not None:
            await self._wire.aclose()

    def unload(self) -> WiredGenerator:
        """Forget the connection pools; their connections close when their event loops shut
        down."""
        self._wire = None
        return self
