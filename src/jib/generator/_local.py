"""Machinery shared by the generators that run a model in this process (transformers, vLLM).

- `LocalResource`: the loaded model and its worker thread, in a holder that copies of a generator
  share.
- `import_optional`: import a heavy package at first use, or say which extra installs it.
- `in_worker_thread`: run blocking work on that thread, off the event loop, signalling cancellation.
- `run_isolating`: call a batch function; when a bad item fails the whole batch, retry the items
  one by one so only that item fails.
- `trim_at_stop`, `as_provider_error`, `warn_ignored`, `group_indices`, `chunked`, `freeze`.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import warnings
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Generic, TypeVar

from jib.errors import (
    BadRequestError,
    ContextLengthError,
    GeneratorWarning,
    JibError,
    MissingDependencyError,
    ProviderError,
)
from jib.params import GenerateParams

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LocalResource",
    "as_provider_error",
    "chunked",
    "freeze",
    "group_indices",
    "import_optional",
    "in_worker_thread",
    "run_isolating",
    "trim_at_stop",
    "warn_ignored",
]

DEFAULT_MAX_TOKENS = 256
"""New tokens generated when `max_tokens` is not set (libraries' own defaults are 16 or 20)."""

T = TypeVar("T")
R = TypeVar("R")

_CONTEXT_HINTS = (
    "context length",
    "maximum model length",
    "max_model_len",
    "longer than the maximum",
    "too long",
    "exceeds the maximum",
)


class LocalResource(Generic[T]):
    """A loaded model (or engine), the lock that guards it and the one thread that runs it.

    A generator keeps one in a private attribute; `Generator.wrap()` copies share it, so loading
    or unloading through any copy is seen by all. Thread primitives, not asyncio ones, so it works
    under any event loop. All work on the model goes to one long-lived worker thread: calls are
    serialized, and torch's per-thread CPU thread pool is built once and reused, where a pool of
    changing threads would build several that compete for the cores.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.value: T | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The worker thread (created on first use) that runs everything touching the model."""
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="jib-local-model")
            return self._executor

    def get_or_load(self, loader: Callable[[], T]) -> T:
        """The loaded value, calling `loader` (once, under the lock) when there is none."""
        with self.lock:
            if self.value is None:
                self.value = loader()
            return self.value

    def clear(self) -> T | None:
        """Drop the loaded value and return it (None when nothing was loaded)."""
        with self.lock:
            value, self.value = self.value, None
            return value


def import_optional(module: str, *, package: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise `MissingDependencyError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package, extra, purpose) from exc


async def in_worker_thread(
    resource: LocalResource[Any], function: Callable[[threading.Event], R]
) -> R:
    """Run `function(cancelled)` on the resource's worker thread; the event loop stays responsive.

    A thread cannot be killed; when the awaiting task is cancelled, `cancelled` is set so the
    function can stop early (a stopping criterion checks it between tokens).
    """
    cancelled = threading.Event()
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(resource.executor, function, cancelled)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def as_provider_error(exc: BaseException, provider: str) -> JibError:
    """Normalize an exception raised by a local model library to a jib error.

    Bad input (`ValueError`, `TypeError`, `IndexError`) becomes `BadRequestError`, or
    `ContextLengthError` when the message says the prompt is too long; anything else becomes a
    non-retryable `ProviderError`. jib errors are returned as they are.
    """
    if isinstance(exc, JibError):
        return exc
    message = f"{type(exc).__name__}: {exc}"
    error: ProviderError
    if isinstance(exc, (ValueError, TypeError, IndexError)):
        lowered = str(exc).lower()
        if any(hint in lowered for hint in _CONTEXT_HINTS):
            error = ContextLengthError(message, provider=provider)
        else:
            error = BadRequestError(message, provider=provider)
    else:
        error = ProviderError(message, provider=provider, retryable=False)
    error.__cause__ = exc
    return error


async def run_isolating(
    call: Callable[[list[T]], Awaitable[Sequence[R]]],
    items: list[T],
    provider: str,
) -> list[R | BaseException]:
    """`call(items)`, one result per item; a failure becomes each item's result.

    When the batch fails with a `BadRequestError` (one bad prompt can fail a whole batch), the
    items are retried one at a time so only the bad ones fail. Other failures (out of memory,
    a crashed engine) are given to every item without retrying.
    """
    try:
        results = list(await call(items))
    except Exception as exc:
        error = as_provider_error(exc, provider)
        if isinstance(error, BadRequestError) and len(items) > 1:
            isolated: list[R | BaseException] = []
            for item in items:
                isolated.extend(await run_isolating(call, [item], provider))
            return isolated
        return [error] * len(items)
    if len(results) != len(items):
        error = ProviderError(
            f"got {len(results)} outputs for a batch of {len(items)} prompts", provider=provider
        )
        return [error] * len(items)
    return list(results)


def trim_at_stop(text: str, stops: Sequence[str] | None) -> tuple[str, bool]:
    """Cut `text` before the earliest stop sequence; return the text and whether one was found."""
    cut = len(text)
    for stop in stops or ():
        index = text.find(stop)
        if 0 <= index < cut:
            cut = index
    return text[:cut], cut < len(text)


def warn_ignored(params: GenerateParams, names: Iterable[str], provider: str) -> None:
    """Warn once per call about params that `provider` cannot apply."""
    ignored = [name for name in names if getattr(params, name) is not None]
    if ignored:
        warnings.warn(
            f"{provider} does not support {', '.join(ignored)}; ignored",
            GeneratorWarning,
            stacklevel=3,
        )


def group_indices(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indices of `keys` grouped by equal key, groups in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def chunked(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of `items` of at most `size` elements."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def freeze(value: Any) -> Hashable:
    """A hashable stand-in for a JSON-like value (dicts and lists of scalars), for grouping."""
    if isinstance(value, dict):
        return tuple(sorted((str(key), freeze(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    if isinstance(value, Hashable):
        return value
    return repr(value)
