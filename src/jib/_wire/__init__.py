"""The wire: the one transport seam every remote provider (`openai!`, `http!`) sends through.

In the spirit of httpx's `handle_async_request`, a provider builds a `WireRequest` and hands it
to its generator's `Wire`; it gets back a `WireResponse` whose body is bounded. Everything about
moving bytes is decided here, once:

- one pooled client per event loop (`jib._per_loop`), closed when its loop shuts down: jib's own
  HTTP/1.1 client for requests straight to the server (the fast path, `http1`), an aiohttp
  session when the generator keeps cookies (aiohttp's cookie jar), an httpx client when a proxy
  is in play (`proxy=` or the environment's `HTTP(S)_PROXY`/`ALL_PROXY`, with `NO_PROXY`), since
  httpx implements proxies fully; they differ only in how bytes move (`transports`);
- TLS: `verify=` true (the system's certificates, `SSL_CERT_FILE`/`SSL_CERT_DIR`), false, or the
  path of a CA bundle (`settings`);
- cookies (kept per client, or not at all) and the one redirect policy (`redirects`): credentials
  and bodies never cross origins;
- `max_response_bytes` on bodies, decompressed bytes and stream lines (`bodies`);
- log redaction of the libraries' own request logs (`logs`);
- the one mapping from transport failures to jib errors (`failures`);
- WebSockets (`websocket`, for `ws!`): the same settings and rules for the handshake, on
  aiohttp's WebSocket client.

What the wire does not do: retries, limits and the request's deadline belong to the request tier
(`jib.generator.remote.RequestGenerator`), which cancels an attempt when its time is up.
"""

from jib._wire.models import Headers, WireRequest, WireResponse
from jib._wire.settings import (
    DEFAULT_MAX_REDIRECTS,
    DEFAULT_MAX_RESPONSE_BYTES,
    ProxyURL,
    Verify,
    WireSettings,
)
from jib._wire.wire import Sender, Wire

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "Headers",
    "ProxyURL",
    "Sender",
    "Verify",
    "Wire",
    "WireRequest",
    "WireResponse",
    "WireSettings",
]
