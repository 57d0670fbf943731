"""Record filters: what `ChatStore.query`, `count`, `export_*` and `jib log` select by."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from sqlalchemy import ColumnElement, Select, and_, exists, select

from jib.storage._schema import records, tags

__all__ = ["Filter", "Kind"]

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
