"""Turning records into rows and rows back into records, through the records' own dict form.

A row is `Chat.to_dict()` / `Completion.to_dict()` spread over the columns of `jib_records`;
loading puts the dict back together and hands it to `from_dict`, which rebuilds the generator
(untrusted by default: a store is data anyone with write access may have planted; see
`jib.trust`). The metadata keys `prompt_id` and `sample_index` (which `jib run` sets, and a
pipeline can set with `.meta(...)`) are copied into columns of their own, so a run joins back to
its dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from jib._secrets import redact
from jib._syntax import IdentifierSyntaxError, parse_identifier
from jib._unicode import escape_surrogates
from jib.chat import Chat, Completion
from jib.errors import InvalidGeneratorError
from jib.registry import DEFAULT_PROVIDER

__all__ = [
    "PROMPT_ID",
    "SAMPLE_INDEX",
    "Record",
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


def input_key(value: Any) -> str:
    """A stable hash of what was sent (a list of message dicts, or a text), for `--resume`."""
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
    record: Record, *, run: str | None, extra_tags: Sequence[str], stored_at: datetime
) -> tuple[dict[str, Any], list[str]]:
    """The `jib_records` row of `record` and its tags.

    Explicit `extra_tags` are added to the stored `metadata["tags"]`, so a loaded record shows
    them. Secrets are masked in the stored error message (the generator's api key, whole or in
    part, should a provider have echoed it, and any secret-looking `key=value`).
    """
    data = record.to_dict()
    metadata = dict(data["metadata"])
    tag_list = tags_of(metadata, extra_tags)
    if extra_tags:
        metadata["tags"] = tag_list
    provider, model = _provider_and_model(data["generator_id"])
    sent: Any = data["messages"] if data["kind"] == "chat" else data["text"]
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
        "input_key": input_key(sent),
        "params": data["params"],
        "input": sent,
        "generated": data["generated"],
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
    }
    return escape_surrogates(row), escape_surrogates(tag_list)


def rows_to_save(
    batch: Iterable[Any], *, run: str | None, tags: Sequence[str], stored_at: datetime
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The rows and tags of the records in `batch`, by id (a later duplicate id wins).

    Each record's run is `run`, else its `metadata["run"]` when that is a string.

    Raises:
        TypeError: an item is not a `Chat` or `Completion`.
    """
    rows: dict[str, dict[str, Any]] = {}
    tag_rows: dict[str, list[str]] = {}
    for record in batch:
        if not isinstance(record, (Chat, Completion)):
            raise TypeError(
                f"a store saves Chat and Completion records, not {type(record).__name__}"
            )
        record_run = run
        if record_run is None and isinstance(record.metadata.get("run"), str):
            record_run = record.metadata["run"]
        row, row_tags = record_to_row(
            record, run=record_run, extra_tags=list(tags), stored_at=stored_at
        )
        rows[row["id"]] = row
        tag_rows[row["id"]] = row_tags
    return rows, tag_rows


def row_to_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """The record dict (`to_dict` form) a row holds, plus its `run`, `prompt_id` and `sample_index`.

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
    return data
