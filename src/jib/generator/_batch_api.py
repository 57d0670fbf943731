"""What every provider's batch API client does, and the plain data it hands back.

A client speaks one provider's protocol over jib's wire (`jib._wire`): it turns one request into
the bytes its batch input carries (`line`), submits a list of such lines as one provider batch,
reads a batch's state, streams its results as they are downloaded, and cancels. The engine
(`jib.batch_api`) decides what goes into which batch and what happens to each result.
"""

from __future__ import annotations

import abc
import hashlib
import logging
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from jib.messages import GeneratedMessage, Message
from jib.params import GenerateParams

__all__ = [
    "BatchClient",
    "BatchItem",
    "BatchLimits",
    "BatchState",
    "ItemResult",
    "Submitted",
    "custom_id_for",
    "endpoint_without_credentials",
    "result_object",
    "unreadable_line",
]

logger = logging.getLogger("jib.batch_api")

Phase = Literal["in_progress", "ended", "failed"]
"""Where a provider batch is: still being worked on, ended (results to download), or failed as
a whole (its input was refused: every item is to be tried again)."""


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How large one provider batch may be: requests, and bytes of input.

    The defaults are OpenAI's (50,000 requests, 200 MB input file); Anthropic's are 100,000 and
    256 MB (see `DEFAULT_LIMITS`).
    """

    max_requests: int = 50_000
    max_bytes: int = 200 * 1000 * 1000

    def __post_init__(self) -> None:
        if self.max_requests < 1 or self.max_bytes < 1:
            raise ValueError("batch API limits are at least 1 request and 1 byte")


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One request of a batch: its custom id (unique in its batch), messages and params."""

    custom_id: str
    messages: Sequence[Message]
    params: GenerateParams


@dataclass(frozen=True, slots=True)
class Submitted:
    """A provider batch as submitted: its id, and its input file's (OpenAI) if any."""

    batch_id: str
    input_file_id: str | None = None


@dataclass(frozen=True, slots=True)
class BatchState:
    """A provider batch's state as last read."""

    status: str
    """The provider's own word (`in_progress`, `finalizing`, `completed`, `expired`, `ended`…)."""
    phase: Phase
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    """Why a failed batch failed, as the provider says."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """One request's result, joined by its custom id: an answer, or why there is none."""

    custom_id: str
    answer: GeneratedMessage | None = None
    error: BaseException | None = None
    expired: bool = False
    """The batch ended before the request was run (expired or canceled): try it again."""


class BatchClient(abc.ABC):
    """One provider's batch API, for one generator (its endpoint, key and wire settings)."""

    provider: str
    """The provider as `jib batches` shows it: `openai` or `anthropic`."""

    envelope_bytes: int = 0
    """Bytes a batch's input holds besides its lines and a separator after each."""

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """Where batches go (a base URL without credentials), as stored and shown."""

    @abc.abstractmethod
    def line(self, item: BatchItem) -> bytes:
        """`item` as its batch input carries it: one JSON object, without a line break."""

    @abc.abstractmethod
    async def submit(self, lines: Sequence[bytes], *, label: str) -> Submitted:
        """Submit one batch of `lines`; `label` goes into its metadata (a run's name)."""

    @abc.abstractmethod
    async def state(self, batch_id: str) -> BatchState:
        """The batch's state now."""

    @abc.abstractmethod
    def results(self, state: BatchState) -> AsyncGenerator[ItemResult, None]:
        """The results of an ended batch, as they are downloaded (in the provider's order); a
        line that cannot be read is skipped (`result_object`). The caller closes it
        (`contextlib.aclosing`) on its own task, so a download stopped early is released there."""

    @abc.abstractmethod
    async def cancel(self, batch_id: str) -> BatchState:
        """Ask the provider to cancel the batch; its state after asking."""

    async def aclose(self) -> None:  # noqa: B027 - optional: a client may hold no connections
        """Close the connections this client opened (on the running event loop)."""


def result_object(provider: str, line: bytes) -> dict[str, Any] | None:
    """A results line's JSON object, naming its request (a string `custom_id`); `None` when it
    is not JSON or names no request: skipped, and said (`unreadable_line`)."""
    from jib.errors import ProviderError
    from jib.generator.openai._protocol import parse_json

    try:
        data = parse_json(line, provider)
    except ProviderError:
        unreadable_line(provider, line, "not JSON")
        return None
    if type(data) is not dict or type(data.get("custom_id")) is not str:
        unreadable_line(provider, line, "no custom_id")
        return None
    return data


def unreadable_line(provider: str, line: bytes, reason: str) -> None:
    """Say (a warning on the `jib.batch_api` logger) that a results line was skipped: it is
    not JSON (a file cut mid-line, a proxy's page) or names no request. Whatever request it
    held has no result, so the engine runs it again alone; the rest of the file is read on.
    The line itself is not logged (it holds answers, perhaps echoed secrets)."""
    logger.warning(
        "%s: a batch result line (%d bytes) was skipped, %s; the request it held, if any, "
        "is run again",
        provider,
        len(line),
        reason,
    )


def endpoint_without_credentials(url: str) -> str:
    """`url` without a `user:password@` part: what is stored and shown of an endpoint."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{slash}{path}"


def custom_id_for(*keys: object) -> str:
    """A custom id for the request these keys name (generator, prompt id, sample…): 32 hex
    characters, the same on every run, so a resumed run knows its requests in a batch it
    submitted before (Anthropic takes `[a-zA-Z0-9_-]{1,64}`, OpenAI any string)."""
    text = "\x1f".join(str(key) for key in keys)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
