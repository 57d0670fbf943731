"""Durations on the command line: `90` (seconds), `90s`, `15m`, `12h`, `7d`, `2w`."""

from __future__ import annotations

import math
import re

__all__ = ["parse_duration"]

_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str, option: str) -> float:
    """Seconds in `text`; a `ValueError` naming `option` and the accepted forms otherwise.

    >>> parse_duration("7d", "--cache-ttl"), parse_duration("90", "--cache-ttl")
    (604800.0, 90.0)
    """
    match = _DURATION.fullmatch(text)
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(
            f"{option} {text!r} is not a duration: give a positive number of seconds, or one "
            "with a unit: 90s, 15m, 12h, 7d, 2w"
        )
    return seconds
