"""The errors the store raises."""

from __future__ import annotations

from jib.errors import JibError

__all__ = ["RecordNotFoundError", "StoreError"]


class StoreError(JibError):
    """The store cannot be opened, read or written (bad URL, unreachable server, newer schema).

    The message names the store with any password masked.
    """


class RecordNotFoundError(StoreError, LookupError):
    """No stored chat or completion has the id (or id prefix) asked for."""
