"""Reading queries: record filters (what `ChatStore.query`, `count`, `export_*` and `jib log`
select by), lookup by id or id prefix, and per-run summaries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Integer, Select, and_, cast, exists, func, select
from typing_extensions import TypedDict

from jib.storage._errors import RecordNotFoundError
from jib.storage._schema import records, tags

__all__ = ["Filter", "FilterArgs", "Kind", "find_row", "run_summaries"]

_MIN_PREFIX = 4
_HEX = frozenset("0123456789abcdef")

Kind = Literal["chat", "completion"]


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class Filter:
    """Which records to select; every field left `None` selects everything.

    Attributes:
        run: records saved under this run name.
        model: records of this model (`gpt-4o-mini`), or `provider!model` (`echo!demo`).
        generator_id: records of exactly this generator identifier.
        tag: records carrying this tag.
        failed: `True` for failures only, `False` for successes only.
        since / until: records whose timestamp is `>= since` and `< until` (naive = UTC).
        kind: `"chat"` or `"completion"`.
    """

    run: str | None = None
    model: str | None = None
    generator_id: str | None = None
    tag: str | None = None
    failed: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: Kind | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        """The SQL conditions this filter stands for."""
        found: list[ColumnElement[bool]] = []
        c = records.c
        if self.run is not None:
            found.append(c.run == self.run)
        if self.model is not None:
            provider, bang, model = self.model.partition("!")
            if bang:
                found.append(and_(c.provider == provider, c.model == model))
            else:
                found.append(c.model == self.model)
        if self.generator_id is not None:
            found.append(c.generator_id == self.generator_id)
        if self.tag is not None:
            found.append(exists().where(and_(tags.c.record_id == c.id, tags.c.tag == self.tag)))
        if self.failed is not None:
            found.append(c.failed.is_(self.failed))
        if self.since is not None:
            found.append(c.timestamp >= _utc(self.since))
        if self.until is not None:
            found.append(c.timestamp < _utc(self.until))
        if self.kind is not None:
            found.append(c.kind == self.kind)
        return found

    def select(self, *, newest_first: bool = False, limit: int | None = None) -> Select[tuple]:  # type: ignore[type-arg]
        """`SELECT * FROM jib_records` with this filter, in time (then insertion) order."""
        order = (
            (records.c.timestamp.desc(), records.c.seq.desc())
            if newest_first
            else (records.c.timestamp.asc(), records.c.seq.asc())
        )
        statement = select(records).where(*self.conditions()).order_by(*order)
        if limit is not None:
            statement = statement.limit(limit)
        return statement


class FilterArgs(TypedDict, total=False):
    """Keyword filters accepted by `ChatStore.query`, `count` and the export methods.

    See `jib.storage.Filter` for what each selects.
    """

    run: str | None
    model: str | None
    generator_id: str | None
    tag: str | None
    failed: bool | None
    since: datetime | None
    until: datetime | None
    kind: Kind | None


def find_row(connection: Connection, record_id: str) -> dict[str, Any]:
    """The row of the record with this id, or with a unique id prefix of 4+ characters.

    Raises:
        RecordNotFoundError: no record (or more than one) matches.
    """
    wanted = record_id.strip().lower()
    row = connection.execute(select(records).where(records.c.id == wanted)).mappings().first()
    if row is not None:
        return dict(row)
    if len(wanted) >= _MIN_PREFIX and set(wanted) <= _HEX:
        statement = select(records).where(records.c.id.startswith(wanted)).limit(2)
        matches = connection.execute(statement).mappings().all()
        if len(matches) == 1:
            return dict(matches[0])
        if len(matches) > 1:
            raise RecordNotFoundError(
                f"more than one stored record has an id starting with {record_id!r}; "
                "give more characters"
            )
    raise RecordNotFoundError(f"no stored chat or completion has the id {record_id!r}")


def run_summaries(connection: Connection) -> list[dict[str, Any]]:
    """One summary per run, newest first: `run`, `records`, `failed`, `first`, `last`."""
    c = records.c
    statement = (
        select(
            c.run,
            func.count().label("records"),
            func.sum(cast(c.failed, Integer)).label("failed"),
            func.min(c.timestamp).label("first"),
            func.max(c.timestamp).label("last"),
        )
        .where(c.run.is_not(None))
        .group_by(c.run)
        .order_by(func.max(c.timestamp).desc())
    )
    return [
        {
            "run": row.run,
            "records": int(row.records),
            "failed": int(row.failed or 0),
            "first": _as_utc(row.first),
            "last": _as_utc(row.last),
        }
        for row in connection.execute(statement)
    ]


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        return None
    # SQLite aggregates lose the column type: the value comes back as naive UTC text.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
