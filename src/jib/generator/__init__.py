"""Generators: the `Generator` base class and the built-in providers.

Providers are imported lazily: `jib.generator.litellm`, `jib.generator.http`,
`jib.generator.transformers` and `jib.generator.vllm` load when an identifier names them or when
imported directly.
"""

from jib.generator.base import Generator, Wrapper

__all__ = ["Generator", "Wrapper"]
