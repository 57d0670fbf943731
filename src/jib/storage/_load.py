"""Loading stored records so that one bad row never breaks a query.

A store is shared data: any writer (another jib version, another user, a hand-edited row) may
leave a record whose generator cannot be rebuilt here — an identifier for a provider not
registered in this process, a value refused by the trust rules for identifiers read from data,
JSON nested too deeply — or whose params were valid for an older jib (`nan` before floats had
to be finite). Such a record still loads: its generator is left unset (its `generator_id` keeps
the stored identifier, so `get_generator(record.generator_id)` shows the reason again), the
invalid params are dropped, and a `GeneratorWarning` names the record and the reason.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from jib.chat import Chat, Completion
from jib.errors import GeneratorWarning, JibError
from jib.storage._rows import Record, row_to_dict
from jib.trust import TrustPolicy

__all__ = ["load_record"]


def load_record(
    row: Mapping[str, Any], *, rebuild_generator: bool, trusted: bool | TrustPolicy = False
) -> Record:
    """The record a row holds, its generator rebuilt when asked and possible (see module docs).

    `trusted` is the trust policy for its identifier (see `Chat.from_dict`).

    Raises:
        pydantic.ValidationError: the row is not a record this jib can read (other than by its
            params), e.g. one written by a newer jib.
    """
    data = row_to_dict(row)
    try:
        return _from_dict(data, rebuild_generator, trusted)
    except ValidationError as exc:
        return _from_dict(_without_invalid_params(data, exc), rebuild_generator, trusted)


def _from_dict(
    data: dict[str, Any], rebuild_generator: bool, trusted: bool | TrustPolicy
) -> Record:
    record_class = Chat if data["kind"] == "chat" else Completion
    try:
        return record_class.from_dict(data, rebuild_generator=rebuild_generator, trusted=trusted)
    except JibError as exc:
        if not rebuild_generator:
            raise
        _warn(data, f"loaded without its generator, which cannot be rebuilt: {exc}")
        return record_class.from_dict(data, rebuild_generator=False)


def _without_invalid_params(data: dict[str, Any], exc: ValidationError) -> dict[str, Any]:
    """`data` without the stored params `exc` refuses; `exc` itself when anything else is wrong."""
    params = data.get("params")
    if not isinstance(params, dict):
        raise exc
    invalid: set[str] = set()
    for error in exc.errors():
        location = error["loc"]
        if len(location) < 2 or location[0] != "params" or location[1] not in params:
            raise exc
        invalid.add(str(location[1]))
    shown = ", ".join(f"{name}={params[name]!r}" for name in sorted(invalid))
    _warn(data, f"its stored params {shown} are not valid any more and were dropped")
    return {**data, "params": {k: v for k, v in params.items() if k not in invalid}}


def _warn(data: Mapping[str, Any], what: str) -> None:
    # stacklevel: the caller of the store method (query, get, iter_records) sees the warning.
    warnings.warn(f"stored {data['kind']} {data['id']}: {what}", GeneratorWarning, stacklevel=5)
