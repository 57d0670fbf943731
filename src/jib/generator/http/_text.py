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
    size = _small_tree_size(value, chars_per_item)
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
_SMALL = 256


def _small_tree_size(value: Any, chars_per_item: int) -> int | None:
    """The size of a value of at most `_SMALL` parts in all (counting each time reached), or
    `None` for a larger one: most values are small, and a plain walk measures them faster.
    Plain strings, numbers, dicts, lists and tuples only; anything else takes the full walk."""
    total = 0
    seen = 0
    stack = [value]
    while stack:
        item = stack.pop()
        seen += 1
        kind = type(item)
        if kind is str:
            if chars_per_item:
                total += 1 + len(item) // chars_per_item
            elif item.isprintable():
                total += len(item) + 4
            else:
                total += 10 * len(item) + 4
        elif kind is int:
            total += 1 if chars_per_item else item.bit_length() // 3 + 2
        elif kind is dict or kind is list or kind is tuple:
            if seen + len(stack) + 2 * len(item) > _SMALL:
                return None
            total += 2 + 2 * len(item)
            if kind is dict:
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
        elif item is None or kind is bool or kind is float:
            total += 1 if chars_per_item else (6 if kind is not float else _SCALAR_SIZE)
        else:
            return None
    return total


def _leaf_size(item: Any) -> int | None:
    """The size of a value that holds no others, or `None` for a container."""
    kind = type(item)
    if kind is dict or kind is list or kind is tuple:  # the common cases first, without ABCs
        return None
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
    kind = type(item)
    if kind is dict or kind is list or kind is tuple:
        return None
    if isinstance(item, (str, bytes, bytearray)):
        return 1 + len(item) // chars_per_item
    if kind is int or kind is float or kind is bool or item is None:
        return 1
    return None if _leaf_size(item) is None else 1


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
