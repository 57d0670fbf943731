"""Reading spec text: JSON, YAML (safe loading only) or base64 of either, bounded.

Bounded in length (`MAX_SPEC_CHARS`), in values once read (`MAX_SPEC_NODES`, which stops YAML
alias bombs) and in nesting (`jib._json.MAX_DEPTH` levels, for JSON and YAML alike: both
parsers recurse once per level).
"""

from __future__ import annotations

import functools
from typing import Any

from jib._json import MAX_DEPTH, check_depth
from jib._json import loads as load_json
from jib._values import from_base64

__all__ = ["MAX_SPEC_CHARS", "MAX_SPEC_NODES", "check_spec_tree", "load_spec_text"]

MAX_SPEC_CHARS = 1_000_000
"""The longest spec text accepted (JSON, YAML or base64)."""
MAX_SPEC_NODES = 50_000
"""The most values (keys, items, scalars) a spec may hold once read."""


def load_spec_text(text: str | bytes) -> Any:
    """Read a spec written as JSON, YAML, or base64 of either (YAML with a `yaml.SafeLoader`).

    Raises:
        ValueError: the text is too long, not valid JSON/YAML, or not a mapping.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("a spec given as bytes must be UTF-8 text") from exc
    if len(text) > MAX_SPEC_CHARS:
        raise ValueError(f"the spec is {len(text)} characters long; the limit is {MAX_SPEC_CHARS}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("the spec is empty")
    if stripped[0] not in "{[":
        decoded = from_base64(stripped)
        if decoded is not None:
            data = _parse_json_or_yaml(decoded, "base64-decoded spec")
            if isinstance(data, dict):
                check_spec_tree(data)
                return data
    data = _parse_json_or_yaml(stripped, "spec")
    if not isinstance(data, dict):
        raise ValueError(
            f"a spec must be a mapping with 'request' (and 'response'), not {type(data).__name__}"
        )
    check_spec_tree(data)
    return data


def check_spec_tree(data: Any) -> None:
    """Refuse a spec of more than `MAX_SPEC_NODES` values or nested deeper than `MAX_DEPTH`.

    YAML aliases can make a small text describe a huge structure ("billion laughs"), even one
    that holds itself; the walk is iterative and stops at the first limit reached.

    Raises:
        ValueError: a limit is exceeded (the message says which).
    """
    budget = MAX_SPEC_NODES
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ValueError(f"the spec has more than {MAX_SPEC_NODES} values")
        if isinstance(node, (dict, list)) and depth > MAX_DEPTH:
            raise ValueError(
                f"the spec is nested more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH} "
                "levels of mappings and lists are read"
            )
        if isinstance(node, dict):
            for key, value in node.items():
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)


def _parse_json_or_yaml(text: str, what: str) -> Any:
    import yaml

    # Also for YAML: its flow style nests with the same brackets.
    check_depth(text, what=f"the {what}", error=ValueError)
    if text[:1] in ("{", "["):
        try:
            return load_json(text, what=f"the {what}", error=ValueError)
        except ValueError:
            pass  # YAML flow style is also written with braces
    try:
        return yaml.load(text, Loader=_bounded_loader())  # a SafeLoader subclass
    except _TooDeepError as exc:
        raise ValueError(f"the {what} is {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} is neither valid JSON nor valid YAML: {exc}") from exc


class _TooDeepError(Exception):
    pass


@functools.lru_cache(maxsize=1)
def _bounded_loader() -> type:
    """`yaml.SafeLoader`, refusing documents nested deeper than `MAX_DEPTH` levels.

    The composer recurses once per level, so the depth is counted there: the error comes after
    reading `MAX_DEPTH` levels, not after exhausting the stack.
    """
    import yaml

    class BoundedSafeLoader(yaml.SafeLoader):
        _depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    loader: Any = self  # PyYAML's methods are untyped
                    line = loader.peek_event().start_mark.line + 1
                    raise _TooDeepError(
                        f"YAML nested more than {MAX_DEPTH} levels deep (line {line}); at most "
                        f"{MAX_DEPTH} levels are read"
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return BoundedSafeLoader
