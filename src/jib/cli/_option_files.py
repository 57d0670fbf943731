"""Reading the JSON or YAML an option names (`jib run --tools FILE`, `--schema FILE|JSON`).

The file is the user's own, so any path is read (`~` is the home folder), but bounded: at most
`MAX_OPTION_FILE` bytes, and nested no deeper than `jib._json.MAX_DEPTH`. Every problem is a
`CliError` naming the option and the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jib._json import check_depth
from jib._json import loads as load_json
from jib.cli._common import EXIT_USAGE, CliError, fail

__all__ = ["MAX_OPTION_FILE", "load_json_or_yaml", "read_option_file"]

MAX_OPTION_FILE = 4_000_000
"""The largest file an option may name, in bytes (tool definitions and schemas are small)."""


def read_option_file(path: Path, shown: str) -> str:
    """The text of the file `path` (named `shown` in messages, e.g. `--tools tools.json`).

    Raises:
        CliError: no such file, too large, not UTF-8, or unreadable.
    """
    try:
        if not path.is_file():
            fail(f"{shown}: no such file", EXIT_USAGE)
        if path.stat().st_size > MAX_OPTION_FILE:
            fail(f"{shown}: the file is larger than {MAX_OPTION_FILE:,} bytes", EXIT_USAGE)
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{shown}: the file is not UTF-8 text", EXIT_USAGE)
    except OSError as exc:
        fail(f"{shown}: cannot read the file: {exc.strerror or exc}", EXIT_USAGE)


def load_json_or_yaml(text: str, shown: str, *, yaml_too: bool = True) -> Any:
    """The value JSON `text` holds, or (with `yaml_too`) YAML text.

    Raises:
        CliError: it is neither (the message says where the first problem is), or it nests too
            deeply.
    """

    def too_deep(message: str) -> CliError:
        return CliError(message, EXIT_USAGE)

    try:
        return load_json(text, what=shown, error=too_deep)
    except json.JSONDecodeError as exc:
        if not yaml_too:
            fail(
                f"{shown} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                EXIT_USAGE,
            )
    import yaml

    check_depth(text, what=shown, error=too_deep)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        fail(f"{shown} is neither JSON nor YAML: {' '.join(str(exc).split())}", EXIT_USAGE)
