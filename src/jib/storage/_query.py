"""Reading queries: record filters (what `ChatStore.query`, `count`, `export_*` and `jib log`
select by), lookup by id or id prefix, per-run summaries, and what a run holds (for resuming)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Select, and_, case, exists, func, select
from typing_extensions import TypedDict

from jib.storage._decode import readable_condition
from jib.storage._errors import RecordNotFoundError
from jib.storage._schema import records, tags

__all__ = [
    "Filter",
    "FilterArgs",
    "Kind",
    "StoredResult",
    "find_row",
    "run_summaries",
    "stored_results",
]

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


def find_row(
    connection: Connection,
    record_id: str,
    *,
    columns: Sequence[Any] = (records,),
) -> dict[str, Any]:
    """The row of the record with this id, or with a unique id prefix of 4+ characters.

    `columns` are what is selected (default: every column, typed).

    Raises:
        RecordNotFoundError: no record (or more than one) matches.
    """
    wanted = record_id.strip().lower()
    exact = select(*columns).where(records.c.id == wanted)
    row = connection.execute(exact).mappings().first()
    if row is not None:
        return dict(row)
    if len(wanted) >= _MIN_PREFIX and set(wanted) <= _HEX:
        statement = select(*columns).where(records.c.id.startswith(wanted)).limit(2)
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
    """One summary per run, newest first (see `ChatStore.runs` for the keys).

    Rows that cannot be read (as far as the database can tell: `readable_condition`) are counted
    in `records` and `unreadable`, and left out of every other figure.
    """
    c = records.c
    readable = readable_condition(connection.dialect.name)  # looked at once per row, below
    figures = (
        select(
            c.run,
            func.count().label("readable"),
            func.sum(case((c.failed.is_(True), 1), else_=0)).label("failed"),
            func.min(c.timestamp).label("first"),
            func.max(c.timestamp).label("last"),
            func.sum(c.cost_usd).label("cost_usd"),
            func.count(c.cost_usd).label("priced"),
        )
        .where(c.run.is_not(None), readable)
        .group_by(c.run)
    )
    by_run = {row.run: row for row in connection.execute(figures)}
    totals = select(c.run, func.count().label("records")).where(c.run.is_not(None)).group_by(c.run)
    summaries: list[dict[str, Any]] = []
    for run, count in connection.execute(totals):
        if not isinstance(run, str):  # SQLite keeps anything in any column
            continue
        row = by_run.get(run)
        summaries.append(
            {
                "run": run,
                "records": int(count),
                "unreadable": int(count) - (int(row.readable) if row else 0),
                "failed": int(row.failed or 0) if row else 0,
                "first": _as_utc(row.first) if row else None,
                "last": _as_utc(row.last) if row else None,
                "generators": [],
                "cost_usd": None if row is None or row.cost_usd is None else float(row.cost_usd),
                "priced": int(row.priced or 0) if row else 0,
            }
        )
    summaries.sort(key=_newest_first)
    listed = {summary["run"]: summary for summary in summaries}
    generators = (
        select(c.run, c.generator_id)
        .where(c.run.is_not(None), c.generator_id.is_not(None))
        .group_by(c.run, c.generator_id)
        .order_by(func.min(c.seq))
    )
    for run, generator_id in connection.execute(generators):
        if run in listed and isinstance(generator_id, str):
            listed[run]["generators"].append(generator_id)
    return summaries


def _newest_first(summary: dict[str, Any]) -> tuple[bool, float]:
    last = summary["last"]
    return (last is None, -last.timestamp() if last is not None else 0.0)


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One stored record of a run, as `jib run --resume` sees it.

    Attributes:
        id: the record's id.
        generator_id: the identifier of the generator that made it.
        prompt_id / sample_index: where in its dataset it came from (`None` for records stored
            without them, by a jib before version 2 of the schema or by a pipeline of your own).
        input_key: the hash of what was sent (`jib.storage.input_key`).
        failed / error_type: whether it failed, and the name of the error's class.
    """

    id: str
    generator_id: str | None
    prompt_id: str | None
    sample_index: int | None
    input_key: str
    failed: bool
    error_type: str | None


def stored_results(connection: Connection, run: str) -> list[StoredResult]:
    """Every record of `run` as a `StoredResult`, in insertion order.

    A row that cannot be read (`readable_condition`) is left out: resuming runs its prompt again.
    """
    c = records.c
    statement = (
        select(
            c.id,
            c.generator_id,
            c.prompt_id,
            c.sample_index,
            c.input_key,
            c.failed,
            c.error_type,
        )
        .where(c.run == run, readable_condition(connection.dialect.name))
        .order_by(c.seq)
    )
    result = connection.execution_options(yield_per=1000).execute(statement)
    return [StoredResult(*row) for row in result]


def _as_utc(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return None
    if not isinstance(moment, datetime):
        return None
    # SQLite aggregates lose the column type: the value comes back as naive UTC text.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
