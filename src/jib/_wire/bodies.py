"""Reading a response body without trusting the server about its size.

One rule for every body the wire reads: a declared length over the limit fails before anything is
read, and reading stops as soon as the bytes received (decompressed) pass the limit, so a lying
or compressed-bomb answer costs at most the limit. A stream read line by line (server-sent
events, NDJSON) holds at most one line, a line may not pass the limit either, and the whole
stream may carry at most `STREAM_FACTOR` times the limit: events repeat their JSON frame around
every few characters of text, so a stream is many times larger than the answer it carries, and
a server that never stops (or sends empty events forever) is cut off there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from jib.errors import ProcessingError

__all__ = ["STREAM_FACTOR", "read_limited", "split_lines"]

STREAM_FACTOR = 2
"""A stream may carry this many times `max_response_bytes` in all (its lines, frames included)."""


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


async def split_lines(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    r"""The lines of a streamed body, without their `
    ` or `
    `; the last one even if it
        has no line break.

        Raises:
            ProcessingError: a line is longer than `limit` bytes, or the stream carries more than
                `STREAM_FACTOR * limit` bytes in all (reading stops there).
    """
    pending = bytearray()
    total = 0
    most = STREAM_FACTOR * limit
    async for chunk in chunks:
        total += len(chunk)
        if total > most:
            raise ProcessingError(
                f"the streamed answer carried over {most} bytes ({STREAM_FACTOR} x "
                f"max_response_bytes={limit}); stopped reading it"
            )
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0:
                break
            line = bytes(pending[start:end])
            yield line[:-1] if line.endswith(b"\r") else line
            start = end + 1
        if start:
            del pending[:start]
        if len(pending) > limit:
            raise ProcessingError(
                f"a line of the streamed answer is over max_response_bytes={limit} bytes; "
                "stopped reading it"
            )
    if pending:
        yield bytes(pending[:-1] if pending.endswith(b"\r") else pending)
