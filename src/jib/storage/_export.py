"""Writing stored records out: JSON Lines, CSV, Parquet and pandas DataFrames.

Every writer takes an iterable of record dicts (`row_to_dict` form) and streams it, so exporting
a large run keeps memory flat. pandas and pyarrow are optional (`pip install "jib[pandas]"`) and
imported only by the writers that need them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from jib import _part_data
from jib.errors import MissingDependencyError
from jib.storage._csv import CsvWriter
from jib.storage._rows import tags_of

if TYPE_CHECKING:
    import pandas

__all__ = [
    "FLAT_COLUMNS",
    "Destination",
    "flat_row",
    "to_dataframe",
    "write_csv",
    "write_jsonl",
    "write_parquet",
]

Destination = str | Path | IO[Any]
"""A file path, or an open file (text for JSONL/CSV, binary for Parquet)."""

FLAT_COLUMNS = (
    "id",
    "kind",
    "run",
    "prompt_id",
    "sample_index",
    "timestamp",
    "generator_id",
    "prompt",
    "response",
    "stop_reason",
    "failed",
    "error_type",
    "error_message",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "latency_ms",
    "cost_usd",
    "attempts",
    "tags",
    "params",
    "metadata",
    "messages",
    "generated",
    "extra",
)
"""The columns of CSV, Parquet and DataFrame exports, in order."""

_NESTED = ("tags", "params", "metadata", "messages", "generated", "extra")
_BATCH = 1000


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def flat_row(data: dict[str, Any]) -> dict[str, Any]:
    """One record dict as a flat row: `prompt` / `response` texts, nested values kept as objects.

    `prompt` is the text of the last message sent (or the text of a completion); `response` is
    the generated text (empty for a failure). A message of parts counts by its text parts (joined
    by newlines, as `Message.content`); the parts themselves are in `messages` / `generated`.
    """
    if data["kind"] == "chat":
        sent = data["messages"]
        prompt = _text_of(sent[-1]) if sent else ""
        generated = data["generated"]
        response = _text_of(generated[-1]) if generated else ""
    else:
        sent = data["text"]
        prompt = sent
        response = data["generated"]
    usage = data["usage"] or {}
    error = data["error"] or {}
    return {
        "id": data["id"],
        "kind": data["kind"],
        "run": data.get("run"),
        "prompt_id": data.get("prompt_id"),
        "sample_index": data.get("sample_index"),
        "timestamp": data["timestamp"],
        "generator_id": data["generator_id"],
        "prompt": prompt,
        "response": response,
        "stop_reason": data["stop_reason"],
        "failed": data["failed"],
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "latency_ms": data.get("latency_ms"),
        "cost_usd": data.get("cost_usd"),
        "attempts": data.get("attempts"),
        "tags": tags_of(data["metadata"]),
        "params": data["params"],
        "metadata": data["metadata"],
        "messages": sent,
        "generated": data["generated"],
        "extra": data["extra"],
    }


def _text_of(message: dict[str, Any]) -> str:
    """A stored message's text: its content, or its text parts joined."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(
        part["text"] for part in content if isinstance(part, dict) and part.get("type") == "text"
    )


@contextmanager
def _opened(destination: Destination, mode: str) -> Iterator[IO[Any]]:
    if isinstance(destination, (str, Path)):
        path = Path(destination)
        path.parent.mkdir(parents=True, exist_ok=True)
        newline = "" if "b" not in mode else None
        encoding = "utf-8" if "b" not in mode else None
        with open(path, mode, newline=newline, encoding=encoding) as handle:
            yield handle
    else:
        yield destination


def write_jsonl(
    records: Iterable[dict[str, Any]], destination: Destination, *, parts_as_files: bool = False
) -> int:
    """Write one JSON object per record per line (loadable by `Chat.from_jsonl`); return count.

    With `parts_as_files` (`destination` a path), the inline data of parts is written as files
    beside it, once per content, and the lines refer to them (see `jib._part_data.FileWriter`).
    """
    files = None
    if parts_as_files and isinstance(destination, (str, Path)):
        files = _part_data.FileWriter(Path(destination))
    count = 0
    with _opened(destination, "w") as handle:
        for data in records:
            if files is not None and data.get("kind") == "chat":
                data = {
                    **data,
                    "messages": _part_data.swap_data(data["messages"], files),
                    "generated": _part_data.swap_data(data["generated"], files),
                }
            handle.write(json.dumps(data, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_csv(
    records: Iterable[dict[str, Any]], destination: Destination, *, escape_formulas: bool = True
) -> int:
    """Write a CSV with a header and `FLAT_COLUMNS`; nested values as JSON. Return the count.

    Text cells a spreadsheet would run as a formula get a leading `'` unless `escape_formulas`
    is false (see `jib.storage._csv`).
    """
    count = 0
    with _opened(destination, "w") as handle:
        writer = CsvWriter(handle, escape_formulas=escape_formulas)
        writer.writerow(FLAT_COLUMNS)
        for data in records:
            row = flat_row(data)
            for name in _NESTED:
                row[name] = _json(row[name])
            writer.writerow(row[name] for name in FLAT_COLUMNS)
            count += 1
    return count


def _require(package: str, purpose: str) -> None:
    try:
        __import__(package)
    except ImportError as exc:
        raise MissingDependencyError(package, "pandas", purpose) from exc


def write_parquet(records: Iterable[dict[str, Any]], destination: Destination) -> int:
    """Write a Parquet file of `FLAT_COLUMNS` (nested values as JSON text), in row groups.

    Raises:
        MissingDependencyError: pyarrow is not installed.
    """
    _require("pyarrow", "Exporting to Parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("kind", pa.string()),
            ("run", pa.string()),
            ("prompt_id", pa.string()),
            ("sample_index", pa.int64()),
            ("timestamp", pa.timestamp("us", tz="UTC")),
            ("generator_id", pa.string()),
            ("prompt", pa.string()),
            ("response", pa.string()),
            ("stop_reason", pa.string()),
            ("failed", pa.bool_()),
            ("error_type", pa.string()),
            ("error_message", pa.string()),
            ("input_tokens", pa.int64()),
            ("output_tokens", pa.int64()),
            ("total_tokens", pa.int64()),
            ("latency_ms", pa.float64()),
            ("cost_usd", pa.float64()),
            ("attempts", pa.int64()),
            *((name, pa.string()) for name in _NESTED),
        ]
    )
    count = 0
    target: Any = str(destination) if isinstance(destination, Path) else destination
    if isinstance(destination, (str, Path)):
        Path(destination).parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(target, schema) as writer:
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            columns = {name: [row[name] for row in batch] for name in FLAT_COLUMNS}
            writer.write_table(pa.table(columns, schema=schema))
            batch.clear()

        for data in records:
            row = flat_row(data)
            row["timestamp"] = datetime.fromisoformat(row["timestamp"])
            for name in _NESTED:
                row[name] = _json(row[name])
            batch.append(row)
            count += 1
            if len(batch) >= _BATCH:
                flush()
        if batch or count == 0:
            flush()
    return count


def to_dataframe(records: Iterable[dict[str, Any]]) -> pandas.DataFrame:
    """A pandas DataFrame of `FLAT_COLUMNS`: `timestamp` as UTC datetimes, nested values as objects.

    Raises:
        MissingDependencyError: pandas is not installed.
    """
    _require("pandas", "Loading chats into a DataFrame")
    import pandas

    frame = pandas.DataFrame([flat_row(data) for data in records], columns=list(FLAT_COLUMNS))
    frame["timestamp"] = pandas.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    for name in ("sample_index", "input_tokens", "output_tokens", "total_tokens", "attempts"):
        frame[name] = frame[name].astype("Int64")
    return frame
