"""Machinery shared by the generators that run a model in this process (transformers, vLLM).

- `LocalGenerator`: their base class: lazy `load()`, `unload()`, `is_loaded`, and running work on
  the model's worker thread.
- `LocalResource`: the loaded model and its worker thread, in a holder that copies of a generator
  share.
- `import_optional`: import a heavy package at first use, or say which extra installs it.
- `in_worker_thread`: run blocking work on that thread, off the event loop, signalling cancellation.
- `run_batches`/`run_isolating`: call a batch function per batch; when a bad item fails a whole
  batch, retry its items one by one so only that item fails.
- `trim_at_stop`, `as_provider_error`, `warn_ignored`, `group_indices`, `chunked`, `freeze`,
  `empty_cuda_cache`.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import PrivateAttr

from jib._per_loop import RuntimeResource
from jib.errors import (
    BadRequestError,
    ContextLengthError,
    GeneratorWarning,
    JibError,
    MissingDependencyError,
    ProviderError,
)
from jib.generator.base import Generator
from jib.params import GenerateParams

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "LocalGenerator",
    "LocalResource",
    "as_provider_error",
    "chunked",
    "empty_cuda_cache",
    "freeze",
    "group_indices",
    "import_optional",
    "in_worker_thread",
    "run_batches",
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


class LocalResource(RuntimeResource, Generic[T]):
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


class LocalGenerator(Generator):
    """Base of the generators that run a model in this process.

    The model (whatever `_load_model` returns) is loaded lazily, on first use or `load()`, into a
    `LocalResource` that the copies `wrap()` makes share. Everything that touches it runs on that
    resource's one worker thread, holding its lock (`_on_worker`): the event loop stays responsive,
    calls from several event loops or threads are serialized, and `unload()` waits for a
    generation in progress.
    """

    _resource: LocalResource[Any] = PrivateAttr(default_factory=LocalResource)
    _provider: ClassVar[str] = "local"

    def load(self) -> Self:
        """Load the model now instead of at first use.

        Raises:
            MissingDependencyError: the library that runs the model is not installed.
            InvalidGeneratorError: the library cannot load the model.
        """
        self._resource.get_or_load(self._load_model)
        return self

    def unload(self) -> Self:
        """Free the model (and the CUDA cache); the next use loads it again.

        A generation in progress finishes first. Safe to call when nothing is loaded.
        """
        if self._resource.clear() is not None:
            self._after_unload()
        return self

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._resource.value is not None

    def _load_model(self) -> Any:
        """Build what the resource holds (called once, under the lock, until the next unload)."""
        raise NotImplementedError  # pragma: no cover - every subclass loads its own model

    def _after_unload(self) -> None:
        """Release what the dropped model held outside Python objects."""
        gc.collect()
        empty_cuda_cache()

    async def _on_worker(self, function: Callable[[threading.Event], R]) -> R:
        """Run `function(cancelled)` on the model's worker thread, holding its lock.

        Errors come out as jib errors (`as_provider_error`).
        """

        def locked(cancelled: threading.Event) -> R:
            with self._resource.lock:
                return function(cancelled)

        try:
            return await in_worker_thread(self._resource, locked)
        except Exception as exc:
            error = as_provider_error(exc, self._provider)
            if error is exc:
                raise
            raise error from exc


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


async def run_batches(
    prepared: Sequence[T | BaseException],
    batches: Iterable[Sequence[int]],
    call: Callable[[list[T]], Awaitable[Sequence[R]]],
    provider: str,
) -> list[R | BaseException]:
    """Run `call` on each batch of prepared items; one result per item, in the items' order.

    `batches` holds indices into `prepared` and must cover every item that is not an exception;
    an item prepared as an exception (it failed before generation) keeps it as its result.
    Failures are isolated as `run_isolating` does.
    """
    results: list[R | BaseException | None] = [
        item if isinstance(item, BaseException) else None for item in prepared
    ]
    for batch in batches:
        items: list[T] = []
        for index in batch:
            item = prepared[index]
            if isinstance(item, BaseException):
                raise ValueError(f"item {index} failed before generation; it cannot be batched")
            items.append(item)
        for index, outcome in zip(batch, await run_isolating(call, items, provider), strict=True):
            results[index] = outcome
    finished = [result for result in results if result is not None]
    if len(finished) != len(results):
        raise ValueError("the batches left an item of the batch without a result")
    return finished


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


def warn_ignored(params: Sequence[GenerateParams], names: Iterable[str], provider: str) -> None:
    """Warn once per call about the params of a batch that `provider` cannot apply."""
    ignored = [name for name in names if any(getattr(item, name) is not None for item in params)]
    if ignored:
        warnings.warn(
            f"{provider} does not support {', '.join(ignored)}; ignored",
            GeneratorWarning,
            stacklevel=3,
        )


def empty_cuda_cache() -> None:
    """Return cached CUDA memory to the device, when torch is imported and there is a GPU."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


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
