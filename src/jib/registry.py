"""The provider registry: provider name → generator class, or a lazy loader for one.

This registry is jib's main global mutable state; the others, each said where it lives: the
log filter on httpx's loggers (`jib._wire.logs`), `LITELLM_LOCAL_MODEL_COST_MAP` set once if
unset (`jib.generator.litellm._runtime`), the CSV module's field size limit (`jib.cli._prompts`),
and caches of pure functions. Built-in providers are registered as lazy
`"module:Class"` references, so a provider module (and the heavy package behind it) is imported
only when an identifier names it.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from jib.errors import InvalidGeneratorError

if TYPE_CHECKING:
    from jib.generator.base import Generator

__all__ = [
    "DEFAULT_PROVIDER",
    "GeneratorSource",
    "provider_name_for",
    "register_generator",
    "registered_providers",
    "resolve_provider",
]

GeneratorSource = Union["type[Generator]", Callable[[], "type[Generator]"], str]
"""A generator class, a function returning one, or a `"package.module:ClassName"` reference."""

DEFAULT_PROVIDER = "litellm"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

_sources: dict[str, GeneratorSource] = {
    "litellm": "jib.generator.litellm:LiteLLMGenerator",
    "http": "jib.generator.http:HTTPGenerator",
    "ws": "jib.generator.ws:WSGenerator",
    "openai": "jib.generator.openai:OpenAIGenerator",
    "transformers": "jib.generator.transformers:TransformersGenerator",
    "vllm": "jib.generator.vllm:VLLMGenerator",
    # Offline generators from jib.testing, for tests and for trying jib without a model.
    "echo": "jib.testing:EchoGenerator",
    "fixed": "jib.testing:FixedGenerator",
    "fail": "jib.testing:FailingGenerator",
    "always_fail": "jib.testing:AlwaysFailGenerator",
    "scripted": "jib.testing:ScriptedGenerator",
}
_loaded: dict[str, type[Generator]] = {}


def register_generator(provider: str, cls_or_lazy_loader: GeneratorSource) -> None:
    """Make `provider!model` identifiers build generators of the given class.

    Args:
        provider: the name used before `!` in identifiers.
        cls_or_lazy_loader: the `Generator` subclass, a zero-argument function that imports and
            returns it, or a `"package.module:ClassName"` string; the latter two are resolved at
            first use.

    Registering a name again replaces the earlier registration. The registry is process-wide
    and not locked: register providers at start-up, not from several threads at once.
    """
    source = cls_or_lazy_loader
    if not isinstance(provider, str) or not _NAME_RE.match(provider):
        raise InvalidGeneratorError(
            f"provider name {provider!r} is not valid; expected letters, digits, '_', '.' or '-'"
        )
    if not (isinstance(source, (type, str)) or callable(source)):
        raise TypeError(
            "register_generator needs a Generator subclass, a function returning one, or a "
            f"'module:Class' string, not {type(source).__name__}"
        )
    _sources[provider] = source
    _loaded.pop(provider, None)
    if isinstance(source, type):
        _loaded[provider] = source


def registered_providers() -> list[str]:
    """The names of every registered provider, in registration order."""
    return list(_sources)


def resolve_provider(provider: str) -> type[Generator]:
    """The generator class registered as `provider`, importing it on first use.

    Raises:
        InvalidGeneratorError: the name is unknown, or its module cannot be imported.
    """
    if provider in _loaded:
        return _loaded[provider]
    source = _sources.get(provider)
    if source is None:
        known = ", ".join(sorted(_sources))
        raise InvalidGeneratorError(
            f"unknown provider {provider!r}; registered providers are: {known} "
            "(register your own with jib.register_generator)"
        )
    try:
        cls = _load(source)
    except (ImportError, AttributeError) as exc:
        raise InvalidGeneratorError(
            f"provider {provider!r} is registered but could not be loaded: {exc}"
        ) from exc
    _loaded[provider] = cls
    return cls


def provider_name_for(cls: type[Generator]) -> str | None:
    """The name `cls` is registered under (the first, if several), or None."""
    target = f"{cls.__module__}:{cls.__qualname__}"
    for name, source in _sources.items():
        if _loaded.get(name) is cls or source is cls or source == target:
            return name
        if isinstance(source, str):
            # A class re-exported by a package (`pkg:Class` defined in `pkg.module`).
            module_name, _, attribute = source.partition(":")
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, attribute, None) is cls:
                return name
    return None


def _load(source: GeneratorSource) -> type[Generator]:
    if isinstance(source, type):
        return source
    if isinstance(source, str):
        module_name, _, attribute = source.partition(":")
        module = importlib.import_module(module_name)
        loaded: type[Generator] = getattr(module, attribute)
        return loaded
    return source()
