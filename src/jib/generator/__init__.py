"""Generators: the `Generator` base class, the request tier and the built-in providers.

Providers are imported lazily: `jib.generator.litellm`, `jib.generator.http`,
`jib.generator.transformers` and `jib.generator.vllm` load when an identifier names them or when
imported directly. `RequestGenerator`, the base of request-based (remote) generators, loads on
first use too (it brings asyncio).
"""

from typing import Any

from jib.generator.base import Generator, Wrapper

__all__ = ["Generator", "RequestGenerator", "Wrapper"]


def __getattr__(name: str) -> Any:
    if name == "RequestGenerator":
        from jib.generator._requests import RequestGenerator

        return RequestGenerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
