"""Where provider batches are written down before anything waits on them.

The engine writes an entry as soon as a provider accepts a batch (its id, its input file's id,
and the custom ids it carries), updates its state as it is polled, and marks it collected once
its results are kept. A resumed run reads the entries it did not collect and polls those
batches instead of submitting their requests again. `MemoryJournal` keeps entries for one
process (the Python default); the store keeps them across processes
(`jib.storage.ProviderBatchJournal`, what `jib run --batch-api` uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Protocol

__all__ = ["Journal", "JournalEntry", "MemoryJournal"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One provider batch as written down."""

    key: str
    """jib's own id for the entry."""
    run: str | None
    generator_id: str
    provider: str
    endpoint: str
    batch_id: str
    input_file_id: str | None
    custom_ids: Sequence[str]
    status: str = "submitted"
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)
    collected: bool = False


class Journal(Protocol):
    """What the engine needs of a journal (see the module docstring)."""

    def uncollected(self, generator_id: str, run: str | None) -> list[JournalEntry]:
        """The entries of this generator and run whose results are not all kept yet."""

    def submitted(self, entry: JournalEntry) -> None:
        """Write a new entry (before its batch is waited on)."""

    def update(self, key: str, status: str) -> None:
        """Write an entry's latest provider status."""

    def collected(self, key: str) -> None:
        """Mark an entry's results as kept."""


class MemoryJournal:
    """A journal in this process's memory."""

    def __init__(self) -> None:
        self.entries: dict[str, JournalEntry] = {}

    def uncollected(self, generator_id: str, run: str | None) -> list[JournalEntry]:
        """See `Journal`."""
        return [
            e
            for e in self.entries.values()
            if e.generator_id == generator_id and e.run == run and not e.collected
        ]

    def submitted(self, entry: JournalEntry) -> None:
        """See `Journal`."""
        self.entries[entry.key] = entry

    def update(self, key: str, status: str) -> None:
        """See `Journal`."""
        self.entries[key] = replace(self.entries[key], status=status, updated_at=_now())

    def collected(self, key: str) -> None:
        """See `Journal`."""
        self.entries[key] = replace(self.entries[key], collected=True, updated_at=_now())
