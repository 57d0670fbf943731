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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jib.chat import UnreadableRecordError, check_record_dict, load_record, warn_unreadable
from jib.storage._decode import decode_row
from jib.storage._rows import Record, row_to_dict
from jib.trust import TrustPolicy

__all__ = ["readable_dicts", "readable_records", "stored_dict", "stored_record"]


def stored_dict(raw: Mapping[str, Any], backend: str) -> dict[str, Any]:
    """The record dict a raw row holds (`row_to_dict` form), checked.

    Raises:
        UnreadableRecordError: the row is not a record this jib can read.
    """
    return check_record_dict(row_to_dict(decode_row(raw, backend)), stored=True)


def stored_record(
    raw: Mapping[str, Any], backend: str, *, rebuild_generator: bool, trusted: bool | TrustPolicy
) -> Record:
    """The record a raw row holds, its generator rebuilt when asked and possible.

    Raises:
        UnreadableRecordError: the row is not a record this jib can read.
    """
    data = row_to_dict(decode_row(raw, backend))
    return load_record(data, rebuild_generator=rebuild_generator, trusted=trusted, stored=True)


def readable_dicts(rows: Iterable[Mapping[str, Any]], backend: str) -> Iterator[dict[str, Any]]:
    """`stored_dict` of each row; an unreadable one is skipped with a warning."""
    for raw in rows:
        try:
            data = stored_dict(raw, backend)
        except UnreadableRecordError as exc:
            warn_unreadable(exc, stacklevel=3)
            continue
        yield data


def readable_records(
    rows: Iterable[Mapping[str, Any]],
    backend: str,
    *,
    rebuild_generator: bool,
    trusted: bool | TrustPolicy,
) -> Iterator[Record]:
    """`stored_record` of each row; an unreadable one is skipped with a warning."""
    for raw in rows:
        try:
            record = stored_record(
                raw, backend, rebuild_generator=rebuild_generator, trusted=trusted
            )
        except UnreadableRecordError as exc:
            warn_unreadable(exc, stacklevel=3)
            continue
        yield record
