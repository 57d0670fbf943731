"""Reading a response body without trusting the server about its size.

One rule for every provider that reads bodies itself (`http!`, `openai!`): a declared length
over the limit fails before anything is read, and reading stops as soon as the bytes received
(decompressed) pass the limit, so a lying or compressed-bomb answer costs at most the limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from jib.errors import ProcessingError

__all__ = ["read_limited"]


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The body from `chunks`, at most `limit` bytes.

    Args:
        chunks: the body as it arrives (already decompressed).
        declared: the `Content-Length` header, when it counts the same bytes (not compressed).
        limit: `max_response_bytes`.

    Raises:
        ProcessingError: the body is (or says it is) larger than `limit`.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProcessingError(
            f"the response body is {int(declared)} bytes; max_response_bytes={limit}"
        )
    kept: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ProcessingError(
                f"the response body is over max_response_bytes={limit} bytes; stopped reading it"
            )
        kept.append(chunk)
    return b"".join(kept)
