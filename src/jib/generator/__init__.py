"""Generators: the `Generator` base class, the request tier and the built-in providers.

Providers are imported lazily: `jib.generator.litellm`, `jib.generator.openai`,
`jib.generator.http`, `jib.generator.transformers` and `jib.generator.vllm` load when an
identifier names them, when imported directly, or when one of their names below is first used
(`jib.generator.HTTPGenerator`, as the seed's examples write it). Their own heavy packages
(httpx, aiohttp, litellm, torch, vllm) load later still, at the first request or `load()`.
`RequestGenerator`, the base of request-based (remote) generators, loads on first use too (it
brings asyncio).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jib.generator.base import Generator, Wrapper

if TYPE_CHECKING:
    from jib.generator.http import HookAction, HTTPGenerator
    from jib.generator.litellm import LiteLLMGenerator
    from jib.generator.openai import OpenAIGenerator
    from jib.generator.remote import RequestGenerator
    from jib.generator.transformers import TransformersGenerator
    from jib.generator.vllm import VLLMGenerator

_LAZY_EXPORTS: dict[str, str] = {
    "RequestGenerator": "jib.generator.remote",
    "HTTPGenerator": "jib.generator.http",
    "HookAction": "jib.generator.http",
    "LiteLLMGenerator": "jib.generator.litellm",
    "OpenAIGenerator": "jib.generator.openai",
    "TransformersGenerator": "jib.generator.transformers",
    "VLLMGenerator": "jib.generator.vllm",
}


def __getattr__(name: str) -> Any:
    module = _LAZY_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jib.generator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_EXPORTS})


__all__ = [
    "Generator",
    "HTTPGenerator",
    "HookAction",
    "LiteLLMGenerator",
    "OpenAIGenerator",
    "RequestGenerator",
    "TransformersGenerator",
    "VLLMGenerator",
    "Wrapper",
]
