"""Text helpers of the HTTP transforms: shortening and scrubbing messages, JSON text, size
estimates."""

from __future__ import annotations

import builtins
import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["scrubbed", "text_size", "to_text", "truncate"]

_SCALAR_SIZE = 32
"""Characters assumed for a float, a bool, None or an object jib does not look into."""


def truncate(text: str, limit: int = 500) -> str:
    """`text` cut to `limit` characters, marking how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def to_text(value: Any) -> str:
    """A transform result as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text_size(
    value: Any,
    limit: int,
    tick: Callable[[], None] | None = None,
    chars_per_item: int = 0,
) -> int:
    """About how many characters `str(value)` (or its JSON) has, without building it.

    Containers are walked, and a part reached twice counts twice: a list holding one long string
    a thousand times counts a thousand times, and `[a, a]` twice the size of `a`. Each distinct
    container is walked once (its size is remembered), so a structure built by doubling forty
    times is measured in forty steps, not 2^40. The walk stops as soon as the count passes
    `limit` (then the count returned is only known to be above it). Strings inside containers
    count up to ten characters each when they hold characters `repr` escapes. `tick` is called
    every few thousand values (to check a clock).

    With `chars_per_item`, a structure's size instead: a string or bytes inside counts one item
    per `chars_per_item` characters (plus one), a number one; what comparing, hashing or sorting
    the value costs, rather than what printing it builds.
    """
    if isinstance(value, str) and not chars_per_item:
        return len(value)
    leaf = _leaf_size if not chars_per_item else functools.partial(_item_size, chars_per_item)
    size = leaf(value)
    if size is not None:
        return size
    sizes: dict[int, int] = {}  # containers measured so far, by id (all alive inside `value`)
    # One frame per container being walked: [the container, its children, size so far].
    frames: list[list[Any]] = [_frame(value)]
    open_ids = {id(value)}
    seen = 0
    while True:
        frame = frames[-1]
        child = next(frame[1], _DONE)
        if child is _DONE:
            frames.pop()
            open_ids.discard(id(frame[0]))
            sizes[id(frame[0])] = frame[2]
            if not frames:
                return int(frame[2])
            frames[-1][2] += frame[2]
        else:
            seen += 1
            if tick is not None and not seen % 4096:
                tick()
            size = leaf(child)
            if size is None:
                size = sizes.get(id(child))
            if size is None and id(child) in open_ids:
                size = _SCALAR_SIZE  # a container holding itself (only from the user's code)
            if size is None:
                frames.append(_frame(child))
                open_ids.add(id(child))
                continue
            frame[2] += size
        if frames[-1][2] > limit:
            return int(frames[-1][2])


_DONE = object()


def _leaf_size(item: Any) -> int | None:
    """The size of a value that holds no others, or `None` for a container."""
    if isinstance(item, str):
        return (len(item) if item.isprintable() else 10 * len(item)) + 4
    if isinstance(item, (bytes, bytearray)):
        return 4 * len(item) + 4
    if isinstance(item, bool) or item is None:
        return 6
    if isinstance(item, int):
        # A decimal digit carries log2(10) > 3 bits.
        return item.bit_length() // 3 + 2
    if isinstance(item, (Mapping, list, tuple, set, frozenset)):
        return None
    if _namespace_attributes(item) is not None:
        return None
    return _SCALAR_SIZE


def _item_size(chars_per_item: int, item: Any) -> int | None:
    """`_leaf_size` counted in items: long strings count one item per `chars_per_item`."""
    if isinstance(item, (str, bytes, bytearray)):
        return 1 + len(item) // chars_per_item
    size = _leaf_size(item)
    return None if size is None else 1


def _frame(item: Any) -> list[Any]:
    """A walking frame for a container: its children, and the size of its own punctuation."""
    if isinstance(item, Mapping):
        return [item, _keys_and_values(item), 2 + 2 * len(item)]
    namespace = _namespace_attributes(item)
    if namespace is not None:
        return [item, iter((namespace,)), 14]
    return [item, iter(item), 2 + 2 * len(item)]


def _keys_and_values(mapping: Mapping[Any, Any]) -> Any:
    for key, value in mapping.items():
        yield key
        yield value


def _namespace_attributes(value: Any) -> dict[str, Any] | None:
    """The attributes of a Jinja `namespace()` (its repr shows them all), else `None`."""
    if type(value).__name__ != "Namespace" or type(value).__module__ != "jinja2.utils":
        return None
    attributes = object.__getattribute__(value, "_Namespace__attrs")
    return attributes if isinstance(attributes, dict) else None


# Quoted parts of an exception's message: kept only when they are names the spec wrote, type
# names or short operators; anything else may be data.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_OPERATOR = re.compile(r"[^\w\s]{1,3}")
_TYPE_NAMES = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type)
) | {"NoneType", "Undefined", "StrictUndefined", "SpecUndefined", "Markup", "LoopContext"}


def scrubbed(message: str, names: Collection[object] = ()) -> str:
    """`message` with every quoted part that may be data replaced by `'…'`.

    Kept: type names (`'str'`, `'dict object'`), operators (`'<'`), and `names` (what the spec
    itself wrote). For exception types whose messages name types rather than values (a
    `TypeError`); other messages can quote values without quotes and are not shown at all.

    >>> scrubbed("can only concatenate str (not \\"int\\") to str")
    'can only concatenate str (not "int") to str'
    >>> scrubbed("'<' not supported between instances of 'sk-secret' and 'int'")
    "'<' not supported between instances of '…' and 'int'"
    """

    def keep(match: re.Match[str]) -> str:
        quoted = match.group(0)
        inner = quoted[1:-1]
        base = inner.removesuffix(" object").rsplit(".", 1)[-1]
        if base in _TYPE_NAMES or _OPERATOR.fullmatch(inner) or inner in names:
            return quoted
        return f"{quoted[0]}…{quoted[0]}"

    return truncate(_QUOTED.sub(keep, message), 300)
