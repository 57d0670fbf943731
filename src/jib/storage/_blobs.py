"""The bytes of inline content parts, stored once per content in `jib_blobs`.

Saving swaps the inline data of each part (a base64 `data:` URL, or an audio clip's base64) for
a `jib-blob:<header>,<sha256>` reference (see `jib._part_data`), so the row of a chat holds a
short reference and `jib_blobs` holds the bytes, once, however many chats send them. Reading
swaps each reference back, fetching each blob once per read and checking its hash: a record
whose blob is missing or altered is unreadable (`BlobMissing`), never silently different.

Each blob counts the records that refer to it (`refs`). A transaction that saves, replaces or
deletes records changes the counts by the difference (`count_changes`), in the same
transaction, and deletes the blobs no record refers to any more. The rows it replaces or deletes
are read locked (`FOR UPDATE` on PostgreSQL; SQLite runs one writer at a time), and blobs are
updated in the order of their hashes, so writers at once never count wrong or deadlock: a save
adds to a blob with an `UPDATE` (which waits for a delete of it to end, then finds it gone or
not) and stores it when it is not there. A blob whose count is never brought down (its records
deleted by hand, not through jib) stays, unused: the safe way to be wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, select, type_coerce, update
from sqlalchemy.types import NullType

from jib import _part_data
from jib.storage._schema import blobs, records

__all__ = [
    "BlobCollector",
    "BlobMissing",
    "StoredBlobs",
    "changes_between",
    "count_changes",
    "references_by_record",
    "references_in",
    "stored_references",
]

_CHUNK = 500
_READ_CACHE_CHARS = 64 * 1024 * 1024
"""How much restored data (in characters) one read keeps to hand out again."""


class BlobMissing(ValueError):
    """A part refers to a blob the store does not hold, or holds altered (the message says
    which, by the start of its hash)."""


@dataclass
class BlobCollector:
    """Swaps the inline data of parts for `jib-blob:` references while rows are made.

    One collector serves one save: `blobs` gathers the bytes of every content it saw (once),
    and a value seen before is not decoded or hashed again (the thousand chats of a batch share
    their image's string).
    """

    blobs: dict[str, bytes] = field(default_factory=dict)
    _references: dict[tuple[str, str | None], tuple[str, str] | None] = field(default_factory=dict)

    def externalise(self, messages: Any) -> tuple[Any, set[str]]:
        """`messages` (message dicts) with their inline data swapped for references, and the
        hashes referred to."""
        if not _holds_parts(messages):
            return messages, set()
        used: set[str] = set()

        def swap(value: str, audio_format: str | None) -> str | None:
            key = (value, audio_format)
            if key not in self._references:
                self._references[key] = self._reference(value, audio_format)
            found = self._references[key]
            if found is None:
                return None
            used.add(found[1])
            return found[0]

        return _part_data.swap_data(messages, swap), used

    def _reference(self, value: str, audio_format: str | None) -> tuple[str, str] | None:
        split = _part_data.inline(value, audio_format)
        data = _part_data.canonical_bytes(split[1]) if split else None
        if split is None or data is None:
            return None  # not inline base64 as jib writes it: kept as it is
        digest = _part_data.digest(data)
        self.blobs.setdefault(digest, data)
        return _part_data.reference(_part_data.BLOB, split[0], digest), digest


def _holds_parts(messages: Any) -> bool:
    """Whether any of `messages` has a list of parts (the only place inline data can be)."""
    if not isinstance(messages, list):
        return False
    for message in messages:  # a loop: `any()` of a generator costs more for a few messages
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            return True
    return False


class StoredBlobs:
    """Swaps `jib-blob:` references back for inline data, reading blobs through `connection`.

    One instance serves one read: each blob is fetched and checked once, and the same inline
    string handed to every record that refers to it (up to a budget), so a thousand loaded
    chats hold their shared image once.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._restored: OrderedDict[tuple[str, str | None], str] = OrderedDict()
        self._size = 0

    def restore(self, messages: Any) -> Any:
        """`messages` with every `jib-blob:` reference swapped for the data it refers to.

        Raises:
            BlobMissing: a blob is not in the store, or its bytes do not match its hash.
            PartDataError: a reference is malformed.
        """
        return _part_data.swap_data(messages, self._swap)

    def _swap(self, value: str, audio_format: str | None) -> str | None:
        split = _part_data.restored(value, _part_data.BLOB)
        if split is None:
            return None
        key = (value, audio_format)
        found = self._restored.get(key)
        if found is not None:
            self._restored.move_to_end(key)
            return found
        header, digest = split
        found = _part_data.encoded(header, self._fetch(digest), audio_format)
        self._restored[key] = found
        self._size += len(found)
        while self._size > _READ_CACHE_CHARS and len(self._restored) > 1:
            _, dropped = self._restored.popitem(last=False)
            self._size -= len(dropped)
        return found

    def _fetch(self, digest: str) -> bytes:
        shown = digest[:12]
        statement = select(type_coerce(blobs.c.data, NullType())).where(blobs.c.sha256 == digest)
        data = self._connection.execute(statement).scalar()
        if data is None:
            raise BlobMissing(f"refers to stored data (sha256 {shown}…) that is not in the store")
        if isinstance(data, memoryview):
            data = data.tobytes()
        if not isinstance(data, bytes) or hashlib.sha256(data).hexdigest() != digest:
            raise BlobMissing(f"refers to stored data (sha256 {shown}…) that has been altered")
        return data


def references_in(messages: Any) -> set[str]:
    """The hashes of the blobs that stored messages refer to (malformed references skipped)."""
    found: set[str] = set()

    def note(value: str, _audio_format: str | None) -> None:
        if value.startswith(_part_data.BLOB):
            found.add(value.rpartition(",")[2])

    _part_data.swap_data(messages, note)
    return found


def stored_references(connection: Connection, record_ids: list[str]) -> Counter[str]:
    """How many of these stored records refer to each blob, their rows locked until the
    transaction ends (they are about to be replaced or deleted).

    A row whose messages cannot be read is counted as referring to nothing: its blobs then
    outlive it, rather than others' blobs going early.
    """
    counts: Counter[str] = Counter()
    for used in references_by_record(connection, record_ids).values():
        counts.update(used)
    return counts


def references_by_record(connection: Connection, record_ids: list[str]) -> dict[str, set[str]]:
    """The blobs each of these records refers to, by id, for those that are stored, their rows
    locked until the transaction ends (see `stored_references`).

    The ids go to the database as one value (a JSON array for SQLite, an array for PostgreSQL),
    not one parameter each: a batch of new records costs one short query.
    """
    found: dict[str, set[str]] = {}
    if not record_ids:
        return found
    if connection.dialect.name == "postgresql":
        rows = connection.exec_driver_sql(_LOOKUP_POSTGRES, (record_ids,))
    else:
        rows = connection.exec_driver_sql(_LOOKUP_SQLITE, (json.dumps(record_ids),))
    for record_id, kind, sent, generated in rows:
        used: set[str] = set()
        if kind == "chat":
            used = references_in(_parsed(sent)) | references_in(_parsed(generated))
        found[record_id] = used
    return found


_LOOKUP = f"SELECT id, kind, input, generated FROM {records.name}"
_LOOKUP_SQLITE = f"{_LOOKUP} WHERE id IN (SELECT value FROM json_each(?))"
_LOOKUP_POSTGRES = f"{_LOOKUP} WHERE id = ANY(%s) FOR UPDATE"


def _parsed(value: Any) -> Any:
    if not isinstance(value, (str, bytes)):
        return value  # PostgreSQL's driver parsed it
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


def count_changes(
    connection: Connection, changes: Mapping[str, int], data: Mapping[str, bytes]
) -> None:
    """Add `changes` (blob hash → records referring to it now, minus before) to the counts;
    store the blobs new to the store (their bytes from `data`), delete those left unused."""
    emptied: list[str] = []
    for digest in sorted(changes):  # one order for every writer: no deadlock between them
        change = changes[digest]
        if change == 0:
            continue
        counted = update(blobs).where(blobs.c.sha256 == digest).values(refs=blobs.c.refs + change)
        if connection.execute(counted).rowcount:
            if change < 0:
                emptied.append(digest)
        elif change > 0:
            connection.execute(_insert_or_count(connection, digest, change, data[digest]))
    for start in range(0, len(emptied), _CHUNK):
        chunk = emptied[start : start + _CHUNK]
        connection.execute(delete(blobs).where(blobs.c.sha256.in_(chunk), blobs.c.refs <= 0))


def _insert_or_count(connection: Connection, digest: str, refs: int, data: bytes) -> Any:
    """Store a blob, or (another writer stored it meanwhile) add `refs` to its count."""
    dialect: Any
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql as dialect
    else:
        from sqlalchemy.dialects import sqlite as dialect
    statement = dialect.insert(blobs).values(sha256=digest, refs=refs, data=data)
    return statement.on_conflict_do_update(
        index_elements=[blobs.c.sha256], set_={"refs": blobs.c.refs + statement.excluded.refs}
    )


def changes_between(before: Counter[str], after: Iterable[Iterable[str]]) -> Counter[str]:
    """The change of each blob's count: the records of `after` (each the hashes it refers to)
    minus `before` (the counts of the records they replace)."""
    changes: Counter[str] = Counter()
    for digests in after:
        changes.update(set(digests))
    changes.subtract(before)
    return changes
