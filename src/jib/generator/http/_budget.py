"""Budgets for the work a spec asks for: the time, steps and size of one render or one parse.

Specs are data (they travel in identifiers, files and databases), so a template, a JSONPath or a
regex must not be able to run for minutes or fill memory. Each request render and each response
parse runs under one `Budget`, made from the generator's `RenderLimits` with `seconds` lowered to
the request's timeout; the spec itself can only ask for less.

The Jinja sandbox counts loop iterations and calls as steps, measures the text and items it is
about to build before building them, and checks the clock in every hook; JSONPath counts every
value it visits or selects as a step and charges what it writes; regexes match with the time
that is left. The active budget lives in a context variable, so nested helpers (a JSONPath
filter, a filter inside `map`) find it without being passed it, and concurrent renders in other
threads or tasks keep their own.

Sizes in messages are rounded to two significant digits (`about(…)`): a size is computed from
the data, and an exact one could spell out a secret (`'x'|center(api_key|int(base=16))`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from jib.errors import BudgetExceededError, InvalidGeneratorError

__all__ = [
    "DEFAULT_RENDER_LIMITS",
    "HELD_VALUE_STEPS",
    "Budget",
    "RenderLimits",
    "about",
    "current_budget",
    "metered",
]


@dataclass(frozen=True)
class RenderLimits:
    """How much work rendering one request, or parsing one response, may do.

    Set in code (`HTTPGenerator.render_limits = RenderLimits(seconds=5)`); a spec or an
    identifier cannot raise them. A request's `timeout` lowers `seconds`.

    Attributes:
        seconds: wall-clock seconds for all the templates of one request, or all the steps
            (JSONPath, regex, Jinja) that read one response.
        max_size: characters and items a render may build in all: the text it outputs and
            every string or list it makes by repetition, concatenation, formatting, padding,
            joining, replacing or `range`.
        max_steps: loop iterations plus calls (macros, functions, methods, filters).
    """

    seconds: float = 1.0
    max_size: int = 10_000_000
    max_steps: int = 1_000_000

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds)) or (
            self.seconds <= 0
        ):
            raise InvalidGeneratorError(
                f"RenderLimits.seconds must be a finite number above 0, not {self.seconds!r}"
            )
        for name in ("max_size", "max_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidGeneratorError(
                    f"RenderLimits.{name} must be a whole number above 0, not {value!r}"
                )

    def within(self, timeout: float | None) -> RenderLimits:
        """These limits with `seconds` lowered to `timeout` (a request's timeout), if it is less."""
        if timeout is None or not math.isfinite(timeout) or timeout <= 0:
            return self
        if timeout >= self.seconds:
            return self
        return RenderLimits(timeout, self.max_size, self.max_steps)


HELD_VALUE_STEPS = 4
"""Steps (`RenderLimits.max_steps`) counted for each value a step holds in memory while it runs
(a value a JSONPath selects, an array or object of a parsed body): each is a Python object of
about 100 to 250 bytes, so the default million steps hold at most about 60 MB of them."""


def about(number: int) -> str:
    """`number` for a message, rounded to two significant digits past 99.

    >>> about(500_000_014), about(42)
    ('about 500,000,000', '42')
    """
    if -100 < number < 100:
        return str(number)
    digits = len(str(abs(number)))
    return f"about {round(number, 2 - digits):,}"


DEFAULT_RENDER_LIMITS = RenderLimits()
"""The limits of a generator that sets none, and of spec methods called without limits."""


class Budget:
    """What is left of the limits for one render or parse; raises when any runs out.

    Every `BudgetExceededError` it raises names the limit and how to raise it.
    """

    __slots__ = ("deadline", "limits", "size", "steps")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.steps = 0
        self.size = 0

    # `step` and `charge` run for every loop iteration, call and printed value: they are kept
    # to a comparison or two on the way that does not raise.

    def step(self, count: int = 1) -> None:
        """Count loop iterations or calls, and check the clock."""
        self.steps += count
        if self.steps > self.limits.max_steps:
            raise BudgetExceededError(
                f"more than {self.limits.max_steps:,} loop iterations and calls "
                "(RenderLimits.max_steps)"
            )
        if time.monotonic() > self.deadline:
            raise BudgetExceededError(self.time_up_message())

    def charge(self, size: int, what: str) -> None:
        """Count `size` characters or items about to be built by `what`, before building them."""
        total = self.size + size
        if total > self.limits.max_size:
            built = about(size) if total == size else f"{about(size)} more ({about(total)} in all)"
            raise BudgetExceededError(
                f"{what} would build {built} characters or items; the limit is "
                f"{self.limits.max_size:,} (RenderLimits.max_size)"
            )
        self.size = total
        if time.monotonic() > self.deadline:
            raise BudgetExceededError(self.time_up_message())

    def check_time(self) -> None:
        """Raise when the time is up."""
        if time.monotonic() > self.deadline:
            raise BudgetExceededError(self.time_up_message())

    def remaining(self) -> float:
        """Seconds left (0 when the time is up)."""
        return max(0.0, self.deadline - time.monotonic())

    def time_up_message(self) -> str:
        """What a time-out says."""
        return (
            f"took longer than its time budget of {self.limits.seconds:g}s "
            "(RenderLimits.seconds, lowered by the request timeout)"
        )


_ACTIVE: ContextVar[Budget | None] = ContextVar("jib_http_budget", default=None)


@contextmanager
def metered(limits: RenderLimits | None = None) -> Iterator[Budget]:
    """Run a block under the active budget, or under a new one from `limits` if none is active.

    The outermost call decides: templates rendered for one request share its budget.
    """
    active = _ACTIVE.get()
    if active is not None:
        yield active
        return
    budget = Budget(limits or DEFAULT_RENDER_LIMITS)
    token = _ACTIVE.set(budget)
    try:
        yield budget
    finally:
        _ACTIVE.reset(token)


def current_budget() -> Budget:
    """The active budget; outside `metered`, a fresh one with the default limits."""
    return _ACTIVE.get() or Budget(DEFAULT_RENDER_LIMITS)
