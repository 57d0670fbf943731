"""Reading spec text: JSON, YAML (with `yaml.safe_load` only) or base64 of either, bounded."""

from __future__ import annotations

import json
from typing import Any

from jib._values import from_base64

__all__ = ["MAX_SPEC_CHARS", "MAX_SPEC_NODES", "load_spec_text"]

MAX_SPEC_CHARS = 1_000_000
"""The longest spec text accepted (JSON, YAML or base64)."""
MAX_SPEC_NODES = 50_000
"""The most values (keys, items, scalars) a spec may hold once read."""


def load_spec_text(text: str | bytes) -> Any:
    """Read a spec written as JSON, YAML, or base64 of either (YAML with `yaml.safe_load`).

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
                return _checked(data)
    return _checked(_parse_json_or_yaml(stripped, "spec"))


def _parse_json_or_yaml(text: str, what: str) -> Any:
    import yaml

    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style is also written with braces
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} is neither valid JSON nor valid YAML: {exc}") from exc


def _checked(data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(
            f"a spec must be a mapping with 'request' (and 'response'), not {type(data).__name__}"
        )
    # YAML aliases can make a small text describe a huge structure ("billion laughs"); refuse
    # anything that is not a reasonably small tree.
    budget = [MAX_SPEC_NODES]

    def count(node: Any) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"the spec has more than {MAX_SPEC_NODES} values")
        if isinstance(node, dict):
            for key, value in node.items():
                count(key)
                count(value)
        elif isinstance(node, list):
            for item in node:
                count(item)

    try:
        count(data)
    except RecursionError:
        raise ValueError("the spec is nested too deeply") from None
    return data
