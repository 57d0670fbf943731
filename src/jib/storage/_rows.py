"""Turning records into rows and rows back into records, through the records' own dict form.

A row is `Chat.to_dict()` / `Completion.to_dict()` spread over the columns of `jib_records`;
loading puts the dict back together and hands it to `from_dict`, which rebuilds the generator
(untrusted by default: a store is data anyone with write access may have planted; see
`jib.trust`). The metadata keys `prompt_id` and `sample_index` (which `jib run` sets, and a
pipeline can set with `.meta(...)`) are copied into columns of their own, so a run joins back to
its dataset. The inline data of content parts goes to `jib_blobs` (see `jib.storage._blobs`):
the row's messages hold `jib-blob:` references, and `row_to_dict` gives them as stored (the
loader swaps them back).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jib._secrets import redact
from jib._syntax import IdentifierSyntaxError, parse_identifier
from jib._unicode import escape_surrogates
from jib.chat import Chat, Completion
from jib.errors import InvalidGeneratorError
from jib.registry import DEFAULT_PROVIDER
from jib.storage._blobs import BlobCollector

__all__ = [
    "PROMPT_ID",
    "SAMPLE_INDEX",
    "Record",
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


def _key(value: Any) -> str:
    """The hash of what was sent, its inline data already swapped for references."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a prompt holding a lone surrogate still has a key (the row is escaped).
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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
    """The `jib_records` row of `record`, its tags, and the hashes of the blobs it refers to.

    Explicit `extra_tags` are added to the stored `metadata["tags"]`, so a loaded record shows
    them. Secrets are masked in the stored error message (the generator's api key, whole or in
    part, should a provider have echoed it, and any secret-looking `key=value`). The inline
    data of its parts is collected by `blobs` (a new collector when not given).
    """
    blobs = blobs if blobs is not None else BlobCollector()
    data = record.to_dict()
    metadata = dict(data["metadata"])
    tag_list = tags_of(metadata, extra_tags)
    if extra_tags:
        metadata["tags"] = tag_list
    provider, model = _provider_and_model(data["generator_id"])
    sent: Any = data["messages"] if data["kind"] == "chat" else data["text"]
    sent, used = blobs.externalise(sent)
    generated, used_by_answer = blobs.externalise(data["generated"])
    usage = data["usage"] or {}
    error = data["error"]
    error_message = error["message"] if error else None
    if error_message:
        error_message = redact(error_message, [_secret_of(record)])
    row = {
        "id": data["id"],
        "kind": data["kind"],
        "run": run,
        "timestamp": record.timestamp,
        "stored_at": stored_at,
        "generator_id": data["generator_id"],
        "provider": provider,
        "model": model,
        "input_key": _key(sent),
        "params": data["params"],
        "input": sent,
        "generated": generated,
        "stop_reason": data["stop_reason"],
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "failed": bool(data["failed"]),
        "error_type": error["type"] if error else None,
        "error_message": error_message,
        "meta": metadata,
        "extra": data["extra"],
        "record_version": data["schema_version"],
        "prompt_id": _prompt_id(metadata),
        "sample_index": _sample_index(metadata),
        "latency_ms": data["latency_ms"],
        "cost_usd": data["cost_usd"],
        "attempts": data["attempts"],
        "output": data.get("output"),
        **{name: usage.get(name) for name in USAGE_COUNTS},
    }
    return escape_surrogates(row), escape_surrogates(tag_list), used | used_by_answer


@dataclass
class SaveBatch:
    """What saving a batch writes: rows, tags and the hashes of the blobs each record refers
    to, by record id, and the blobs."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, list[str]] = field(default_factory=dict)
    references: dict[str, set[str]] = field(default_factory=dict)
    blobs: BlobCollector = field(default_factory=BlobCollector)


def rows_to_save(
    batch: Iterable[Any], *, run: str | None, tags: Sequence[str], stored_at: datetime
) -> SaveBatch:
    """The rows, tags and blobs of the records in `batch` (a later duplicate id wins).

    Each record's run is `run`, else its `metadata["run"]` when that is a string.

    Raises:
        TypeError: an item is not a `Chat` or `Completion`.
    """
    saved = SaveBatch()
    for record in batch:
        if not isinstance(record, (Chat, Completion)):
            raise TypeError(
                f"a store saves Chat and Completion records, not {type(record).__name__}"
            )
        record_run = run
        if record_run is None and isinstance(record.metadata.get("run"), str):
            record_run = record.metadata["run"]
        row, row_tags, used = record_to_row(
            record, run=record_run, extra_tags=list(tags), stored_at=stored_at, blobs=saved.blobs
        )
        saved.rows[row["id"]] = row
        saved.tags[row["id"]] = row_tags
        saved.references[row["id"]] = used
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
