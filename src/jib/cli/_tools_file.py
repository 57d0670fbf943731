"""`jib run --tools FILE`: tool definitions a model may call, read from JSON or YAML.

The file holds a list of tools in OpenAI's shape — `{"type": "function", "function": {"name",
"description", "parameters"}}` — or the bare function objects (`{"name", "description",
"parameters"}`), or an object whose `tools` key holds such a list. They become
`GenerateParams.tools`; `jib run` records the calls a model makes and runs none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jib.cli._common import EXIT_USAGE, fail
from jib.cli._option_files import load_json_or_yaml, read_option_file
from jib.tools import ToolDefinition

__all__ = ["load_tools"]


def load_tools(path: Path) -> list[ToolDefinition]:
    """The tool definitions in the file at `path`.

    Raises:
        CliError: the file cannot be read, is not JSON or YAML, holds no list of tools, or a
            tool is malformed or repeats a name (the message names the tool by its place).
    """
    shown = f"--tools {path}"
    text = read_option_file(path.expanduser(), shown)
    value = load_json_or_yaml(text, shown, yaml_too=path.suffix.lower() != ".json")
    if isinstance(value, Mapping) and "tools" in value:
        value = value["tools"]
    if not isinstance(value, list) or not value:
        example = '[{"type": "function", "function": {"name": …, "parameters": {…}}}, …]'
        fail(f"{shown} must hold a list of tools: {example}", EXIT_USAGE)
    tools = [_tool(item, f"{shown}: tool {number}") for number, item in enumerate(value, 1)]
    names: dict[str, int] = {}
    for number, tool in enumerate(tools, start=1):
        first = names.setdefault(tool.function.name, number)
        if first != number:
            fail(
                f"{shown}: tools {first} and {number} are both named {tool.function.name!r}",
                EXIT_USAGE,
            )
    return tools


def _tool(item: Any, where: str) -> ToolDefinition:
    if isinstance(item, Mapping) and "function" not in item and "name" in item:
        item = {"type": "function", "function": item}
    if not isinstance(item, Mapping):
        fail(f"{where} is not an object", EXIT_USAGE)
    try:
        return ToolDefinition.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "the tool"
        fail(f"{where}: {location}: {first['msg']}", EXIT_USAGE)
