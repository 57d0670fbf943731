"""Turning records into rows and rows back into records, through the records' own dict form.

A row is `Chat.to_dict()` / `Completion.to_dict()` spread over the columns of `jib_records`;
loading puts the dict back together and hands it to `from_dict`, which rebuilds the generator
(untrusted by default: a store is data anyone with write access may have planted; see
`jib.trust`). The metadata keys `prompt_id` and `sample_index` (which `jib run` sets, and a
pipeline can set with `.meta(...)`) are copied into columns of their own, so a run joins back to
its dataset. The inline data of content parts goes to `jib_blobs` (see `jib.storage._blobs`):
the row's messages hold `jib-blob:` references, and `row_to_dict` gives them as stored (the
loader swaps them back).

Saving makes the rows of a batch together (`RowMaker`, `rows_to_save`): what the batch's records
share is worked out once, and the rows are encoded for the database driver a column at a time
(`jib.storage._encode`), ready for `jib.storage._insert`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from jib._secrets import redact
from jib._syntax import IdentifierSyntaxError, parse_identifier
from jib._unicode import escape_surrogates
from jib.chat import BatchDicts, Chat, Completion
from jib.errors import InvalidGeneratorError
from jib.messages import Message, Usage
from jib.registry import DEFAULT_PROVIDER
from jib.storage._blobs import BlobCollector
from jib.storage._encode import (
    ColumnEncoder,
    ValueEncoders,
    column_encoders,
    encode_rows,
    json_text,
    real,
    text,
)
from jib.storage._insert import RECORD_COLUMNS
from jib.storage._schema import records

__all__ = [
    "PROMPT_ID",
    "SAMPLE_INDEX",
    "Record",
    "RowMaker",
    "SaveBatch",
    "input_key",
    "record_to_row",
    "row_to_dict",
    "rows_to_save",
    "tags_of",
]

Record = Chat | Completion
"""What the store holds: a chat or a completion."""

PROMPT_ID = "prompt_id"
"""The metadata key naming the dataset prompt a record answers (a string or an integer)."""
SAMPLE_INDEX = "sample_index"
"""The metadata key numbering the samples of one prompt (0, 1, …)."""


USAGE_COUNTS = ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens")
"""The token counts beyond input/output/total, each a column of its own."""


def input_key(value: Any) -> str:
    """A stable hash of what was sent (a list of message dicts, or a text), for `--resume`.

    The inline data of parts counts by its content hash (as the store keeps it), so the key of a
    chat sending a large image costs one hash of the image.
    """
    stored, _ = BlobCollector().externalise(value)
    return _key(stored)


_KEY_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""How `_key` writes what was sent (made once: `json.dumps` with options makes one per call)."""


def _key(value: Any) -> str:
    """The hash of what was sent, its inline data already swapped for references."""
    written = _KEY_JSON.encode(value)
    # surrogatepass: a prompt holding a lone surrogate still has a key (the row is escaped).
    return hashlib.sha256(written.encode("utf-8", "surrogatepass")).hexdigest()


def tags_of(metadata: Mapping[str, Any], extra: Iterable[str] = ()) -> list[str]:
    """The tags of a record: `metadata["tags"]` (a string or a list of strings) plus `extra`."""
    found: list[str] = []
    value = metadata.get("tags")
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        found.extend(str(item) for item in value)
    found.extend(extra)
    return list(dict.fromkeys(tag for tag in found if tag))


def _prompt_id(metadata: Mapping[str, Any]) -> str | None:
    value = metadata.get(PROMPT_ID)
    if value is None or isinstance(value, bool):
        return None
    return str(value) if isinstance(value, (str, int)) else None


def _sample_index(metadata: Mapping[str, Any]) -> int | None:
    value = metadata.get(SAMPLE_INDEX)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _provider_and_model(generator_id: str | None) -> tuple[str | None, str | None]:
    if not generator_id:
        return None, None
    try:
        parsed = parse_identifier(generator_id)
    except IdentifierSyntaxError:
        return None, None
    return parsed.provider or DEFAULT_PROVIDER, parsed.model


def _secret_of(record: Record) -> str | None:
    """The key the record's generator sends (an `env:NAME` key resolved), if it has one."""
    generator = record.generator
    if generator is None or generator.api_key is None:
        return None
    try:
        secret = generator.get_api_key()
    except InvalidGeneratorError:  # env:NAME of a variable that is not set: nothing to leak
        return None
    return secret or None


def record_to_row(
    record: Record,
    *,
    run: str | None,
    extra_tags: Sequence[str],
    stored_at: datetime,
    blobs: BlobCollector | None = None,
) -> tuple[dict[str, Any], list[str], set[str]]:
    """The `jib_records` row of `record` as Python values (for SQLAlchemy), its tags, and the
    hashes of the blobs it refers to (see `RowMaker.values`); lone surrogates escaped."""
    maker = RowMaker(backend="sqlite", extra_tags=extra_tags, stored_at=stored_at, blobs=blobs)
    values, tag_list, used = maker.values(record, run)
    row = escape_surrogates(dict(zip(RECORD_COLUMNS, values, strict=True)))
    return row, escape_surrogates(tag_list), used


class RowMaker:
    """Makes the `jib_records` rows of one batch, encoded for `backend`'s driver.

    What the batch's records share is worked out once: their dicts' identifiers and params (see
    `BatchDicts`), provider and model, the time they are stored, and the blobs their parts hold
    (`blobs`, a collector for this batch).
    """

    def __init__(
        self,
        *,
        backend: str,
        extra_tags: Sequence[str],
        stored_at: datetime,
        blobs: BlobCollector | None = None,
    ) -> None:
        self.blobs = blobs if blobs is not None else BlobCollector()
        self._extra_tags = list(extra_tags)
        self._stored_at = stored_at
        encoders, encode_time = _encoders_of(backend)
        self._encoders = encoders
        # One time for every row of the batch: encoded once.
        self._constants = {_STORED_AT: encode_time((stored_at,))[0]}
        self._dicts = BatchDicts()
        self._models: dict[str | None, tuple[str | None, str | None]] = {}
        self._value = ValueEncoders(backend)
        self._stored_at_value = self._constants[_STORED_AT]
        self._not_failed = self._value.flag(False)
        # What the rows of a batch share, encoded once: by (generator, params) identity.
        self._shared: dict[tuple[str | None, int, str | None], tuple[Any, ...]] = {}

    def encode(self, rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
        """Rows made by `values`, encoded for the driver (lone surrogates escaped).

        Raises:
            UnencodableValue: a value has no JSON form, or is not what its column holds.
        """
        return encode_rows(rows, self._encoders, self._constants)

    def values(self, record: Record, run: str | None) -> tuple[list[Any], list[str], set[str]]:
        """The row of `record` as Python values in `RECORD_COLUMNS` order (JSON columns as
        their data), its tags, and the hashes of the blobs it refers to.

        Explicit extra tags are added to the stored `metadata["tags"]`, so a loaded record shows
        them. Secrets are masked in the stored error message (the generator's api key, whole or
        in part, should a provider have echoed it, and any secret-looking `key=value`).

        Raises:
            UnwritableRecordError: the record's `output` has no JSON form.
        """
        data = self._dicts.to_dict(record)
        metadata = data["metadata"]
        tag_list = tags_of(metadata, self._extra_tags)
        if self._extra_tags:
            metadata = {**metadata, "tags": tag_list}
        generator_id = data["generator_id"]
        provider, model = self._provider_and_model(generator_id)
        sent: Any = data["messages"] if data["kind"] == "chat" else data["text"]
        sent, used = self.blobs.externalise(sent)
        generated, used_by_answer = self.blobs.externalise(data["generated"])
        usage = data["usage"] or _NO_USAGE
        error = data["error"]
        error_message = error["message"] if error else None
        if error_message:
            error_message = redact(error_message, [_secret_of(record)])
        values = [  # the order of RECORD_COLUMNS
            data["id"],
            data["kind"],
            run,
            record.timestamp,
            self._stored_at,
            generator_id,
            provider,
            model,
            _key(sent),
            data["params"],
            sent,
            generated,
            data["stop_reason"],
            usage.get("input_tokens"),
            usage.get("output_tokens"),
            usage.get("total_tokens"),
            bool(data["failed"]),
            error["type"] if error else None,
            error_message,
            metadata,
            data["extra"],
            data["schema_version"],
            _prompt_id(metadata),
            _sample_index(metadata),
            data["latency_ms"],
            data["cost_usd"],
            data["attempts"],
            data.get("output"),
            *[usage.get(name) for name in USAGE_COUNTS],
        ]
        return values, tag_list, used | used_by_answer

    def encoded(self, record: Record, run: str | None) -> tuple[tuple[Any, ...], list[str]] | None:
        """The row of a plain chat, already encoded for the driver, and its tags; `None` when
        `record` is not plain (then `values` and `encode` make its row).

        Plain is what almost every chat of a run is: a `Chat` that did not fail (and holds no
        error), without structured output, whose messages are text (no parts, tool calls or
        cache marks). Its row is the same, value for value, as `encode` makes from `values`,
        without the record's dict: its messages are written straight to JSON, its hash with
        orjson, which writes what `_key`'s encoder does for text (keys sorted, compact, no ASCII
        escaping).
        """
        if (
            type(record) is not Chat
            or record.failed
            or record.error is not None
            or record.output is not None
        ):
            return None
        sent = _plain(record.messages)
        generated = _plain(record.generated) if sent is not None else None
        if generated is None or sent is None:
            return None
        try:
            key_json = orjson.dumps(sent, option=orjson.OPT_SORT_KEYS)
            # Text only, so orjson writes what `json_text` does (no value for it to hand over).
            sent_json = orjson.dumps(sent).decode()
            generated_json = orjson.dumps(generated).decode()
        except TypeError:  # a lone surrogate: `_key` writes it (with `surrogatepass`)
            return None
        metadata = record.metadata
        tag_list: list[str] = []
        if self._extra_tags or "tags" in metadata:
            tag_list = tags_of(metadata, self._extra_tags)
            if self._extra_tags:
                metadata = {**metadata, "tags": tag_list}
        record_id = record.id
        if type(record_id) is not str or not record_id.isascii():
            record_id = text(record_id)
        usage = record.usage
        counts = _NO_COUNTS if usage is None else _counts(usage)
        value = self._value
        shared = self._shared_values(record, run)
        return (
            (
                record_id,
                "chat",
                shared[0],
                value.time(record.timestamp),
                self._stored_at_value,
                shared[1],
                shared[2],
                shared[3],
                hashlib.sha256(key_json).hexdigest(),
                shared[4],
                sent_json,
                generated_json,
                text(record.stop_reason),
                counts[0],
                counts[1],
                counts[2],
                self._not_failed,
                None,
                None,
                json_text(metadata),
                json_text(record.extra),
                counts[6],
                text(_prompt_id(metadata)),
                _sample_index(metadata),
                real(record.latency_ms),
                real(record.cost_usd),
                record.attempts,
                None,
                counts[3],
                counts[4],
                counts[5],
            ),
            tag_list,
        )

    def _shared_values(self, record: Record, run: str | None) -> tuple[Any, ...]:
        """The run, identifier, provider, model and params of a row, encoded once for the
        records sharing them."""
        generator_id = self._dicts.generator_id(record)
        key = (generator_id, id(record.params), run)
        found = self._shared.get(key)
        if found is None:
            provider, model = self._provider_and_model(generator_id)
            params = self._dicts.params_dict(record.params)
            found = (
                text(run),
                text(generator_id),
                text(provider),
                text(model),
                json_text(params),
                record.params,  # kept alive: its id is in the key
            )
            self._shared[key] = found
        return found

    def _provider_and_model(self, generator_id: str | None) -> tuple[str | None, str | None]:
        found = self._models.get(generator_id)
        if found is None:
            found = self._models[generator_id] = _provider_and_model(generator_id)
        return found


def _plain(messages: list[Message]) -> list[dict[str, str]] | None:
    """The dicts of text messages (as `Message.to_dict` makes them); `None` if one is not."""
    dicts = []
    for message in messages:
        content = message._content
        if (
            type(content) is not str
            or message.tool_calls
            or message.tool_call_id is not None
            or message.cache_control is not None
        ):
            return None
        dicts.append({"role": message.role, "content": content})
    return dicts


def _counts(usage: Usage) -> tuple[int | None, ...]:
    """A row's token counts (input, output, total, then `USAGE_COUNTS`, each `None` when 0)
    and its record format version (2 when one of `USAGE_COUNTS` is set)."""
    more = (usage.cached_input_tokens, usage.cache_write_tokens, usage.reasoning_tokens)
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.total_tokens,
        more[0] or None,
        more[1] or None,
        more[2] or None,
        2 if any(more) else 1,
    )


_NO_COUNTS: tuple[int | None, ...] = (None, None, None, None, None, None, 1)


_COLUMNS = [records.c[name] for name in RECORD_COLUMNS]


@functools.lru_cache(maxsize=4)
def _encoders_of(backend: str) -> tuple[list[tuple[int, ColumnEncoder]], ColumnEncoder]:
    """The column encoders of a `jib_records` row for `backend`, but the time it is stored
    at (one value for a whole batch), and that one's: worked out once per backend."""
    encoders = column_encoders(_COLUMNS, backend)
    rest = [(index, encode) for index, encode in encoders if index != _STORED_AT]
    return rest, dict(encoders)[_STORED_AT]


_STORED_AT = RECORD_COLUMNS.index("stored_at")
_NO_USAGE: dict[str, int] = {}


@dataclass
class SaveBatch:
    """What saving a batch writes: rows (in `RECORD_COLUMNS` order), tags and the hashes of the
    blobs each record refers to, by record id, and the blobs."""

    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    references: dict[str, set[str]] = field(default_factory=dict)
    blobs: BlobCollector = field(default_factory=BlobCollector)


def rows_to_save(
    batch: Iterable[Any],
    *,
    run: str | None,
    tags: Sequence[str],
    stored_at: datetime,
    backend: str,
) -> SaveBatch:
    """The rows, tags and blobs of the records in `batch` (a later duplicate id wins), encoded
    for `backend`'s driver (`"sqlite"` or `"postgresql"`).

    Each record's run is `run`, else its `metadata["run"]` when that is a string.

    Raises:
        TypeError: an item is not a `Chat` or `Completion`.
        UnwritableRecordError: a chat's `output` has no JSON form.
        UnencodableValue: another value of a record has none.
    """
    maker = RowMaker(backend=backend, extra_tags=tags, stored_at=stored_at)
    saved = SaveBatch(blobs=maker.blobs)
    rows: dict[str, tuple[Any, ...] | None] = {}  # None: among `values`, to encode
    values: dict[str, list[Any]] = {}
    for record in batch:
        if not isinstance(record, (Chat, Completion)):
            raise TypeError(
                f"a store saves Chat and Completion records, not {type(record).__name__}"
            )
        record_run = run
        if record_run is None:
            named = record.metadata.get("run")
            record_run = named if isinstance(named, str) else None
        encoded = maker.encoded(record, record_run)
        if encoded is not None:
            row, row_tags = encoded
            record_id = row[0]
            values.pop(record_id, None)
            rows[record_id] = row
            used: set[str] = set()
        else:
            raw, row_tags, used = maker.values(record, record_run)
            record_id = text(raw[0])
            values[record_id] = raw
            rows[record_id] = None
        saved.tags[record_id] = escape_surrogates(row_tags) if row_tags else row_tags
        saved.references[record_id] = used
    if values:
        encoded_rows = dict(zip(values, maker.encode(list(values.values())), strict=True))
        rows = {record_id: row or encoded_rows[record_id] for record_id, row in rows.items()}
    saved.rows = rows  # type: ignore[assignment]  # every row encoded now
    return saved


def row_to_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """The record dict (`to_dict` form) a row holds, plus its `run`, `prompt_id` and `sample_index`.

    Its parts' data is as stored: `jib-blob:` references (`jib.storage._load` swaps them back).

    The prompt id and sample index are also in the metadata they were read from; at the top level
    they are columns of every export, so results join back to their dataset.
    """
    usage = None
    if row["input_tokens"] is not None:
        usage = {
            "input_tokens": row["input_tokens"],
            "output_tokens": row["output_tokens"] or 0,
            "total_tokens": row["total_tokens"] or 0,
        }
        usage.update({name: row[name] for name in USAGE_COUNTS if row[name]})
    error = None
    if row["error_type"] is not None:
        error = {"type": row["error_type"], "message": row["error_message"] or ""}
    data: dict[str, Any] = {
        "schema_version": row["record_version"],
        "id": row["id"],
        "kind": row["kind"],
        "run": row["run"],
        "prompt_id": row["prompt_id"],
        "sample_index": row["sample_index"],
        "timestamp": row["timestamp"].isoformat(),
        "generator_id": row["generator_id"],
        "params": row["params"],
        "stop_reason": row["stop_reason"],
        "usage": usage,
        "latency_ms": row["latency_ms"],
        "attempts": row["attempts"],
        "cost_usd": row["cost_usd"],
        "failed": row["failed"],
        "error": error,
        "metadata": row["meta"],
        "extra": row["extra"],
    }
    if row["kind"] == "chat":
        data["messages"] = row["input"]
    else:
        data["text"] = row["input"]
    data["generated"] = row["generated"]
    if row["output"] is not None:
        data["output"] = row["output"]
    return data
