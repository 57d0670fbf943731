"""Upper bounds on the waits a generator can be configured with.

Identifiers are data (a stored chat, a shared file), so a value such as
`min_delay_between_requests=1e12` must be refused when the generator is built, not discovered
as a batch that never finishes. `nan` and `inf` are refused for every float field of params,
generators and specs (pydantic's `allow_inf_nan=False`).
"""

from __future__ import annotations

__all__ = ["MAX_DELAY_MS", "MAX_WAIT_SECONDS", "REQUEST_LIMIT_OPTIONS"]

MAX_DELAY_MS = 3_600_000.0
"""The longest `min_delay_between_requests` (milliseconds): one hour."""
MAX_WAIT_SECONDS = 3_600.0
"""The longest retry backoff or `max_retry_wait` (seconds): one hour."""

REQUEST_LIMIT_OPTIONS = frozenset(
    {
        "max_connections",
        "min_delay_between_requests",
        "rpm",
        "tpm",
        "max_retries",
        "retry_backoff",
        "max_retry_wait",
    }
)
"""The request tier's limits and retry settings: bounded as above, so remote providers declare
them inert (`Generator.inert_options`) and data may set them."""
