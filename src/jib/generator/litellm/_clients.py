"""The clients jib hands LiteLLM per call (`client=`), so `max_response_bytes` holds.

LiteLLM builds a client of its own for each route and caches it in its module-level cache;
changing those (or `litellm.aclient_session`) would change every other LiteLLM user in the
process. Instead each call gets a client built the way LiteLLM builds its own (its transport,
TLS, proxies and HTTP/2 settings) plus the hooks of `_bounds`, kept per generator and event loop.

Which client a call needs depends on LiteLLM's route, read in `litellm/main.py` (1.110) and
checked provider by provider against a server (tests/security/test_litellm_bounds.py):

- the OpenAI SDK routes (`_complete_custom_openai` and the `/v1/completions` route) take an
  `AsyncOpenAI`: `openai/…` (and bare OpenAI model names), `text-completion-openai/…`,
  `perplexity/`, `deepinfra/`, `lm_studio/`, `llamafile/`, and text completion of `hosted_vllm/`,
  `together_ai/`, `fireworks_ai/`;
- LiteLLM's own handler routes take an `AsyncHTTPHandler`: `hosted_vllm/`, `ollama/`,
  `ollama_chat/`, `anthropic/`, `gemini/`, `mistral/`, `groq/`, `deepseek/`, `together_ai/`,
  `openrouter/`, `xai/`, `fireworks_ai/`.

Any other provider keeps LiteLLM's own client (a wrong client type would be ignored, or fail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from jib._per_loop import PerLoop, RuntimeResource

__all__ = ["BoundedClients", "client_kind"]

ClientKind = Literal["openai", "handler"]

_OPENAI_SDK = frozenset(
    {"openai", "custom_openai", "text-completion-openai", "perplexity", "deepinfra"}
    | {"lm_studio", "llamafile"}
)
_HANDLER = frozenset(
    {"hosted_vllm", "ollama", "ollama_chat", "anthropic", "gemini", "mistral", "groq"}
    | {"deepseek", "together_ai", "openrouter", "xai", "fireworks_ai"}
)
_EXPERIMENTAL_HANDLER = "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER"
"""LiteLLM's opt-in switch that moves OpenAI-style chat onto its own handler."""


def client_kind(provider: str, text: bool) -> ClientKind | None:
    """Which client LiteLLM's route for `provider` takes (`text`: a text completion), or
    `None` when jib does not bound that route."""
    from litellm.constants import openai_text_completion_compatible_providers
    from litellm.secret_managers.main import get_secret_bool

    if provider in _OPENAI_SDK:
        return "handler" if not text and get_secret_bool(_EXPERIMENTAL_HANDLER) else "openai"
    if provider in _HANDLER:
        if text and provider in openai_text_completion_compatible_providers:
            return "openai"
        return "handler"
    return None


class BoundedClients(RuntimeResource):
    """One generator's bounded clients, one set per event loop (see `jib._per_loop`).

    A runtime resource (`jib._per_loop.RuntimeResource`): copies in this process share it, a
    pickled copy starts with its own.

    Args:
        limit: `max_response_bytes`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._clients: PerLoop[_Clients] = PerLoop(lambda: _Clients(limit), _Clients.aclose)

    async def client_for(self, arguments: Mapping[str, Any], text: bool) -> Any | None:
        """The `client=` for a LiteLLM call with `arguments` (`text`: `atext_completion`), or
        `None` when jib does not bound its route."""
        clients = await self._clients.get()
        try:
            return _client(clients, arguments, text)
        except Exception:
            # A value LiteLLM cannot use (an unknown provider, a bad `ssl_verify` path or base
            # URL): it raises the same when it builds its own client, inside the call, where
            # jib maps its errors; nothing is sent.
            return None

    async def aclose(self) -> None:
        """Close the running loop's clients (new ones open on next use)."""
        await self._clients.aclose()

    def _fresh_arguments(self) -> tuple[int]:
        return (self.limit,)


def _client(clients: _Clients, arguments: Mapping[str, Any], text: bool) -> Any | None:
    import litellm

    _, provider, dynamic_key, api_base = litellm.get_llm_provider(
        model=arguments["model"],
        custom_llm_provider=arguments.get("custom_llm_provider"),
        api_base=arguments.get("api_base"),
        api_key=arguments.get("api_key"),
    )
    kind = client_kind(provider, text)
    if kind is None:
        return None
    if kind == "handler":
        return clients.handler(arguments.get("ssl_verify"))
    # As LiteLLM's `completion()`: the key `get_llm_provider` found wins.
    api_key = _openai_key(dynamic_key if dynamic_key is not None else arguments.get("api_key"))
    if api_key is None:
        return None  # the OpenAI client refuses to start: nothing is sent
    return clients.openai(api_key, _openai_base(api_base))


class _Clients:
    """One event loop's clients: a LiteLLM handler per `ssl_verify` asked for, and OpenAI SDK
    clients over the default handler's httpx client."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._handlers: dict[bool | str | None, Any] = {}
        self._openai: dict[tuple[str, str], Any] = {}

    def handler(self, ssl_verify: bool | str | None = None) -> Any:
        """An `AsyncHTTPHandler` as LiteLLM makes its own, with the bounding hooks."""
        handler = self._handlers.get(ssl_verify)
        if handler is None:
            from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

            from jib.generator.litellm._bounds import bounding_hooks

            handler = AsyncHTTPHandler(
                event_hooks=bounding_hooks(self._limit), ssl_verify=ssl_verify
            )
            self._handlers[ssl_verify] = handler
        return handler

    def openai(self, api_key: str, api_base: str) -> Any:
        """An `AsyncOpenAI` for `api_key` at `api_base` over the bounded httpx client."""
        client = self._openai.get((api_key, api_base))
        if client is None:
            from openai import AsyncOpenAI

            http_client = self.handler().client
            client = AsyncOpenAI(
                api_key=api_key, base_url=api_base, http_client=http_client, max_retries=0
            )
            self._openai[(api_key, api_base)] = client
        return client

    async def aclose(self) -> None:
        self._openai.clear()
        handlers = list(self._handlers.values())
        self._handlers.clear()
        for handler in handlers:
            await handler.close()


def _openai_key(api_key: str | None) -> str | None:
    from litellm.llms.openai.workload_identity import openai_static_api_key

    key: str | None = openai_static_api_key(api_key)
    return key


def _openai_base(api_base: str | None) -> str:
    """The base LiteLLM's OpenAI routes resolve (`_resolve_openai_api_base`, private there)."""
    import litellm
    from litellm.secret_managers.main import get_secret_str

    base: str = (
        api_base
        or litellm.api_base
        or get_secret_str("OPENAI_BASE_URL")
        or get_secret_str("OPENAI_API_BASE")
        or "https://api.openai.com/v1"
    )
    return base
