"""Regular expressions from specs, bounded: checked before compiling, matched with a timeout.

The `regex` package compiles counted repeats by copying them, so `(?:a{65535}){65535}` costs
gigabytes before any text is matched. A pattern is therefore measured first: its weight is the
number of items it would hold once counted repeats are unrolled (`((a{1000}){1000}){1000}`
weighs 1,000,000,000), and patterns weighing more than `MAX_REGEX_WEIGHT`, longer than
`MAX_REGEX_LENGTH` or nested deeper than `MAX_REGEX_DEPTH` are refused. Open-ended repeats
(`*`, `+`, `{m,}` past m) are loops, not copies, so they add nothing. A spec's patterns together
may weigh at most `MAX_SPEC_REGEX_WEIGHT`.

Matching runs with the `regex` package's timeout, taken from the active budget. That timeout
counts CPU time, which a busy machine hands out slower than the wall clock turns, so a match that
outlasts a short first try runs again in a worker thread (the package releases the GIL) while the
caller waits by the wall clock; a match given up on stops at its own timeout.

Matching also takes memory: a repeated group (`(?:ab)*`, `(a|b)+`) keeps a backtracking point
for every repetition, and a capturing group inside a repeat keeps every capture (the package
offers them all through `captures()`), about 100 bytes each: `(.)*` on 10 MB of text needs
gigabytes. So before a pattern with a repeated group matches, its text is charged to the budget's
size, `STATE_ITEMS` per character for each unit of its `state_units` (one, plus one per capturing
group inside a repeat); patterns whose repeats hold single characters (`a*`, `[^"]*`, `\\d+`)
keep no such state and are not charged. What a step writes (the group it extracts, a
substitution's result) is charged too.

The package is imported on first use, not by `import jib`.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from jib.errors import BudgetExceededError, MissingDependencyError, ProcessingError
from jib.generator.http._budget import Budget, current_budget

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "MAX_REGEX_DEPTH",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_WEIGHT",
    "MAX_SPEC_REGEX_WEIGHT",
    "STATE_ITEMS",
    "CompiledRegex",
    "check_pattern",
    "regex_weight",
    "state_units",
]

MAX_REGEX_LENGTH = 10_000
"""The longest pattern accepted, in characters."""
MAX_REGEX_WEIGHT = 20_000
"""The most items a pattern may hold once its counted repeats are unrolled."""
MAX_SPEC_REGEX_WEIGHT = 100_000
"""The most items all the patterns of one spec may hold together."""
MAX_REGEX_DEPTH = 100
"""The deepest nesting of groups accepted."""

STATE_ITEMS = 16
"""Items (`RenderLimits.max_size`) a pattern with repeated groups is charged per character of
its text and unit of `state_units`: with the default budget, about 100 MB of matching state."""

_INLINE_SECONDS = 0.05
"""CPU seconds a match may take in the calling thread before it moves to a worker thread."""

T = TypeVar("T")

_QUANTIFIER = re.compile(r"\{(\d*)(?:(,)(\d*))?\}")
_BRACED_ESCAPES = frozenset("pPNx")


def check_pattern(pattern: str) -> int:
    """Refuse a pattern that would be expensive to compile; return its weight.

    Raises:
        ValueError: the pattern is too long, nests too deeply or repeats too much; the message
            says which and what the limit is.
    """
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ValueError(
            f"the regex is {len(pattern):,} characters long; the limit is {MAX_REGEX_LENGTH:,}"
        )
    weight = regex_weight(pattern)
    if weight > MAX_REGEX_WEIGHT:
        raise ValueError(
            f"regex {_short(pattern)!r} repeats too much: unrolled, its counted repeats hold "
            f"{weight:,} items and the limit is {MAX_REGEX_WEIGHT:,}; use smaller counts, or "
            "`*`/`+` where any number will do"
        )
    return weight


def regex_weight(pattern: str) -> int:
    """The number of items `pattern` holds once counted repeats (`x{m,n}`) are unrolled.

    A conservative reading: alternatives add up, a repeat multiplies what it repeats by its
    largest count, escapes and character classes weigh one.

    Raises:
        ValueError: groups nest deeper than `MAX_REGEX_DEPTH`.
    """
    # One frame per open group: [weight so far, weight of the last item].
    frames: list[list[int]] = [[0, 0]]
    index, end = 0, len(pattern)
    while index < end:
        char = pattern[index]
        frame = frames[-1]
        if char == "\\":
            index = _skip_escape(pattern, index)
            frame[0] += 1
            frame[1] = 1
            continue
        if char == "[":
            index = _skip_class(pattern, index)
            frame[0] += 1
            frame[1] = 1
            continue
        if char == "(":
            if pattern.startswith("(?#", index):
                closing = pattern.find(")", index)
                index = end if closing < 0 else closing + 1
                continue
            if len(frames) > MAX_REGEX_DEPTH:
                raise ValueError(f"the regex nests groups deeper than {MAX_REGEX_DEPTH} levels")
            frames.append([0, 0])
        elif char == ")":
            if len(frames) > 1:
                inner = frames.pop()[0]
                frames[-1][0] += inner
                frames[-1][1] = inner
        elif char == "{":
            match = _QUANTIFIER.match(pattern, index)
            if match and (match.group(1) or match.group(3)):
                low, comma, high = match.groups()
                # The largest count: `{m}` and `{m,}` copy m times, `{m,n}` and `{,n}` n times.
                count = int(low) if comma is None else max(int(low or 0), int(high or 0))
                frame[0] += frame[1] * max(count - 1, 0)
                frame[1] *= count
                index = match.end()
                continue
            frame[0] += 1
            frame[1] = 1
        elif char not in "|*+?":
            frame[0] += 1
            frame[1] = 1
        index += 1
    return sum(frame[0] for frame in frames)


def state_units(pattern: str) -> int:
    """How much state `pattern` keeps per character it matches: 0 when no group is repeated,
    else 1 plus the number of capturing groups inside repeated groups.

    A conservative reading, like `regex_weight`'s: a group followed by `*`, `+` or `{m,n}`
    allowing more than one repetition is repeated; a repeated single character, escape or
    class keeps nothing.

    >>> state_units("a*b"), state_units("(?:ab)*"), state_units("(a)(?:(b)|c)+")
    (0, 1, 2)
    """
    captures = 0
    # One frame per open group: the capturing groups inside it (itself included).
    frames: list[list[int]] = [[]]
    last_group: list[int] | None = None  # the groups of the item a quantifier would repeat
    repeated = False
    in_repeats: set[int] = set()
    index, end = 0, len(pattern)
    while index < end:
        char = pattern[index]
        if char == "\\":
            index, last_group = _skip_escape(pattern, index), None
            continue
        if char == "[":
            index, last_group = _skip_class(pattern, index), None
            continue
        if char == "(":
            if pattern.startswith("(?#", index):
                closing = pattern.find(")", index)
                index = end if closing < 0 else closing + 1
                continue
            frame: list[int] = []
            if _captures(pattern, index):
                captures += 1
                frame.append(captures)
            frames.append(frame)
            last_group = None
        elif char == ")":
            if len(frames) > 1:
                last_group = frames.pop()
                frames[-1].extend(last_group)
            index += 1
            continue
        elif char in "*+{":
            match = _QUANTIFIER.match(pattern, index) if char == "{" else None
            if char == "{" and match is None:
                last_group = None
            else:
                if last_group is not None and (match is None or _repeats(match)):
                    repeated = True
                    in_repeats.update(last_group)
                index = match.end() if match else index + 1
                # A lazy or possessive mark repeats nothing more.
                if index < end and pattern[index] in "?+":
                    index += 1
                last_group = None
                continue
        elif char != "?" and char != "|":
            last_group = None
        index += 1
    return 1 + len(in_repeats) if repeated else 0


def _captures(pattern: str, index: int) -> bool:
    """Whether the group opening at `index` captures (`(x)`, `(?P<n>x)`, `(?<n>x)`)."""
    if not pattern.startswith("(?", index):
        return True
    rest = pattern[index + 2 : index + 4]
    if rest.startswith("P<") or rest.startswith("'"):
        return True
    return rest.startswith("<") and rest[1:2] not in ("=", "!")


def _repeats(quantifier: re.Match[str]) -> bool:
    """Whether a `{m}`, `{m,}`, `{,n}` or `{m,n}` quantifier allows more than one repetition."""
    low, comma, high = quantifier.groups()
    if not (low or high):
        return False
    if comma is None:
        return int(low) > 1
    return not high or int(high) > 1


def _skip_escape(pattern: str, index: int) -> int:
    """The index after the escape at `index` (`\\d`, `\\x41`, `\\p{Letter}`, …)."""
    if (
        index + 2 < len(pattern)
        and pattern[index + 1] in _BRACED_ESCAPES
        and pattern[index + 2] == "{"
    ):
        closing = pattern.find("}", index + 3)
        return len(pattern) if closing < 0 else closing + 1
    return index + 2


def _skip_class(pattern: str, index: int) -> int:
    """The index after the character class opening at `index` (nested sets included)."""
    depth = 0
    end = len(pattern)
    while index < end:
        char = pattern[index]
        if char == "\\":
            index = _skip_escape(pattern, index)
            continue
        if char == "[":
            depth += 1
            index += 1
            # A `]` right after `[` or `[^` is a literal member.
            if index < end and pattern[index] == "^":
                index += 1
            if index < end and pattern[index] == "]":
                index += 1
            continue
        if char == "]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return end


def _short(pattern: str) -> str:
    return pattern if len(pattern) <= 100 else f"{pattern[:100]}…"


def _regex_module() -> Any:
    try:
        # Through importlib: the package ships no type stubs.
        return importlib.import_module("regex")
    except ImportError as exc:  # pragma: no cover - regex comes with jib's dependencies
        raise MissingDependencyError("regex", None, "A regex transform") from exc


class CompiledRegex:
    """A regular expression from a spec, checked before compiling; it searches with a timeout."""

    def __init__(self, pattern: str) -> None:
        """Check and compile `pattern`.

        Raises:
            ValueError: the pattern is invalid or too expensive (see `check_pattern`).
        """
        regex = _regex_module()
        self.pattern = pattern
        self.weight = check_pattern(pattern)
        """The items the pattern holds once its counted repeats are unrolled."""
        self.state_units = state_units(pattern)
        """The matching state it keeps per character of text (see `state_units`)."""
        try:
            self._compiled: Any = regex.compile(pattern)
        except regex.error as exc:
            raise ValueError(f"invalid regex {_short(pattern)!r}: {exc}") from exc
        except RecursionError as exc:
            raise ValueError(f"invalid regex {_short(pattern)!r}: it nests too deeply") from exc

    @property
    def groups(self) -> int:
        """The number of capturing groups."""
        return int(self._compiled.groups)

    def search(self, text: str, timeout: float | None = None) -> Any:
        """The first match in `text`, or `None`.

        `timeout` defaults to the time left in the active budget.

        Raises:
            BudgetExceededError: matching took longer than `timeout` seconds.
        """
        budget = current_budget()
        self._charge_state(budget, text)
        seconds = budget.remaining() if timeout is None else timeout
        compiled = self._compiled
        try:
            return _within(seconds, lambda cpu: compiled.search(text, timeout=cpu, concurrent=True))
        except TimeoutError as exc:
            raise BudgetExceededError(self._timeout_message(seconds, text)) from exc

    def sub(self, replacement: str, text: str, timeout: float | None = None) -> str:
        """`text` with every match replaced by `replacement` (group references allowed).

        The result's size is charged to the active budget before it is built.

        Raises:
            BudgetExceededError: matching took longer than `timeout` seconds (default: the time
                left in the budget), or the result would be larger than the budget allows.
        """
        budget = current_budget()
        self._charge_state(budget, text)
        seconds = budget.remaining() if timeout is None else timeout
        compiled = self._compiled
        try:
            matches = _within(
                seconds,
                lambda cpu: sum(1 for _ in compiled.finditer(text, timeout=cpu, concurrent=True)),
            )
            if matches:
                # Each replacement is at most the template plus one copy of the text per group
                # reference (matches do not overlap, so references cover the text at most once).
                references = replacement.count("\\")
                budget.charge(
                    len(text) + matches * len(replacement) + references * len(text),
                    f"regex {_short(self.pattern)!r} substitution",
                )
            return str(
                _within(
                    budget.remaining() if timeout is None else seconds,
                    lambda cpu: compiled.sub(replacement, text, timeout=cpu, concurrent=True),
                )
            )
        except TimeoutError as exc:
            raise BudgetExceededError(self._timeout_message(seconds, text)) from exc

    def apply(self, text: str, timeout: float | None = None) -> str:
        """The first group of the first match, or the whole match when there is no group.

        What it returns is charged to the active budget.

        Raises:
            ProcessingError: nothing matched (the message gives the text's length, not the
                text: it may hold what the server echoed of a secret).
            BudgetExceededError: matching took longer than `timeout` seconds (default: the time
                left in the active budget), or the text or the result is larger than the
                budget allows.
        """
        match = self.search(text, timeout)
        if match is None:
            raise ProcessingError(
                f"regex '{self.pattern}' matched nothing in the response ({len(text):,} characters)"
            )
        found = match.group(1) if self._compiled.groups else match.group(0)
        result = "" if found is None else str(found)
        current_budget().charge(len(result), f"regex '{_short(self.pattern)}' writing its match")
        return result

    def _charge_state(self, budget: Budget, text: str) -> None:
        if self.state_units:
            budget.charge(
                len(text) * STATE_ITEMS * self.state_units,
                f"regex '{_short(self.pattern)}' (its repeated groups keep state for each of "
                f"the text's {len(text):,} characters)",
            )

    def _timeout_message(self, seconds: float, text: str) -> str:
        return (
            f"regex '{_short(self.pattern)}' took longer than {seconds:.2g}s on a "
            f"{len(text):,}-character text (catastrophic backtracking?); simplify the pattern "
            "(the time budget is RenderLimits.seconds, lowered by the request timeout)"
        )


def _within(seconds: float, match: Callable[[float], T]) -> T:
    """`match(cpu_seconds)`, finished within `seconds` of wall-clock time.

    Raises:
        TimeoutError: it did not finish in time.
    """
    start = time.monotonic()
    first = min(seconds, _INLINE_SECONDS)
    try:
        return match(first)
    except TimeoutError:
        if seconds <= first:
            raise
    left = seconds - (time.monotonic() - start)
    if left <= 0:
        raise TimeoutError
    import concurrent.futures

    future = _workers().submit(_unless_late, time.monotonic() + left, match)
    try:
        return future.result(timeout=left)
    except concurrent.futures.TimeoutError:  # the builtin TimeoutError from Python 3.11
        future.cancel()  # if it has not started; a started match stops at its own timeout
        raise TimeoutError from None


def _unless_late(deadline: float, match: Callable[[float], T]) -> T:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return match(left)


@lru_cache(maxsize=1)
def _workers() -> ThreadPoolExecutor:
    """The threads slow matches finish in (made on the first slow match)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="jib-regex")
