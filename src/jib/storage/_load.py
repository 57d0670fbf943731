"""Loading stored records so that one bad row never breaks a query.

A store is shared data: any writer (another jib version, another user, a hand-edited row) may
leave a row this jib cannot read. Every reading method follows the rule of `jib.chat`:

- a row that is not a record this jib can read (a column that does not decode, see
  `jib.storage._decode`; a record missing fields or written by a newer jib) is *unreadable*: the
  methods that read many (`query`, `iter_records`, `iter_dicts`, the exports, `last`) skip it with
  an `UnreadableRecordWarning` naming its id and saying why; `get` and `get_dict` raise
  `UnreadableRecordError`;
- a record whose generator cannot be rebuilt here (a provider not registered in this process,
  an identifier the trust policy refuses, a spec that does not compile) still loads: its
  generator is left unset (its `generator_id` keeps the identifier, so
  `get_generator(record.generator_id)` shows the reason again), with a `GeneratorWarning`;
- stored params that are not valid any more (`nan` before floats had to be finite) are dropped,
  with a `GeneratorWarning`.

A record's parts get their data back from `jib_blobs` here (`StoredBlobs`); a record whose blob
is missing or altered is unreadable, like any other record that cannot be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jib._part_data import PartDataError
from jib.chat import (
    UnreadableRecordError,
    batch_context,
    check_record_dict,
    load_record,
    warn_unreadable,
)
from jib.storage._blobs import BlobMissing, StoredBlobs
from jib.storage._decode import decode_row, row_label
from jib.storage._rows import Record, row_to_dict
from jib.trust import TrustPolicy

__all__ = ["readable_dicts", "readable_records", "stored_dict", "stored_record"]


def _restored_dict(raw: Mapping[str, Any], backend: str, blobs: StoredBlobs) -> dict[str, Any]:
    """The record dict a raw row holds, its parts' data read back from the store's blobs.

    Raises:
        UnreadableRecordError: a column does not decode, or a part's blob cannot be read.
    """
    data = row_to_dict(decode_row(raw, backend))
    if data["kind"] != "chat":
        return data
    for name, column in (("messages", "input (messages or text)"), ("generated", "generated")):
        try:
            data[name] = blobs.restore(data[name])
        except (BlobMissing, PartDataError) as exc:
            record_id = raw.get("id")
            raise UnreadableRecordError(
                row_label(raw),
                f"its {column} column {exc}",
                record_id if isinstance(record_id, str) else None,
            ) from None
    return data


def stored_dict(
    raw: Mapping[str, Any],
    backend: str,
    blobs: StoredBlobs,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record dict a raw row holds (`row_to_dict` form, parts' data restored), checked.

    `context` is shared by the records of one read (see `jib.chat.load_record`).

    Raises:
        UnreadableRecordError: the row is not a record this jib can read.
    """
    data = _restored_dict(raw, backend, blobs)
    return check_record_dict(data, stored=True, context=context)


def stored_record(
    raw: Mapping[str, Any],
    backend: str,
    blobs: StoredBlobs,
    *,
    rebuild_generator: bool,
    trusted: bool | TrustPolicy,
    context: dict[str, Any] | None = None,
) -> Record:
    """The record a raw row holds, its generator rebuilt when asked and possible.

    `context` is shared by the records of one read (see `jib.chat.load_record`).

    Raises:
        UnreadableRecordError: the row is not a record this jib can read.
    """
    data = _restored_dict(raw, backend, blobs)
    return load_record(
        data, rebuild_generator=rebuild_generator, trusted=trusted, stored=True, context=context
    )


def readable_dicts(
    rows: Iterable[Mapping[str, Any]], backend: str, blobs: StoredBlobs
) -> Iterator[dict[str, Any]]:
    """`stored_dict` of each row; an unreadable one is skipped with a warning."""
    context = batch_context()
    for raw in rows:
        try:
            data = stored_dict(raw, backend, blobs, context)
        except UnreadableRecordError as exc:
            warn_unreadable(exc, stacklevel=3)
            continue
        yield data


def readable_records(
    rows: Iterable[Mapping[str, Any]],
    backend: str,
    blobs: StoredBlobs,
    *,
    rebuild_generator: bool,
    trusted: bool | TrustPolicy,
) -> Iterator[Record]:
    """`stored_record` of each row; an unreadable one is skipped with a warning."""
    context = batch_context()
    for raw in rows:
        try:
            record = stored_record(
                raw,
                backend,
                blobs,
                rebuild_generator=rebuild_generator,
                trusted=trusted,
                context=context,
            )
        except UnreadableRecordError as exc:
            warn_unreadable(exc, stacklevel=3)
            continue
        yield record
