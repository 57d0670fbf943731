"""Tool calls that a model running in this process writes as text, read into `ToolCall`s.

A local model (transformers, vLLM) writes its tool calls in the format its chat template taught
it. The common ones are read:

- Hermes, Qwen 2.5/3 and the many models trained on their format: one
  `<tool_call>{"name": …, "arguments": {…}}</tool_call>` block per call, text around them kept
  as the answer's content;
- Mistral: `[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]`;
- Llama 3.1+ (JSON tool calling): `{"name": …, "parameters": {…}}` as the whole answer,
  optionally after `<|python_tag|>`, several separated by `;`.

Mistral's and Llama's markers are special tokens, which decoding usually drops, so a bare JSON
answer is read the same way — but only when every name in it is a tool the request offered (a
model asked for JSON about a function is not calling it). A tagged block is a call whatever its
name. A block whose JSON is broken is left in the text: the caller sees what the model wrote.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jib import _json
from jib.tools import FunctionCall, ToolCall

__all__ = ["new_call_id", "read_tool_calls", "tool_names"]

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_MARKERS = ("[TOOL_CALLS]", "<|python_tag|>")
_ID_ALPHABET = string.ascii_letters + string.digits
# Between the calls of a bare JSON answer: Llama separates them with `;`, others with newlines.
_SEPARATORS = " \t\r\n;,"


def new_call_id() -> str:
    """A fresh id for a call the model did not give one: nine letters and digits, the shape
    Mistral's chat templates insist on (and any other accepts)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


def tool_names(tools: Sequence[Mapping[str, Any]] | None) -> frozenset[str]:
    """The function names of OpenAI-shaped tool definitions."""
    names: set[str] = set()
    for tool in tools or ():
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return frozenset(names)


def read_tool_calls(text: str, offered: Collection[str]) -> tuple[str, list[ToolCall]]:
    """The answer's content without its tool calls, and the calls (none: the text as it is).

    `offered` holds the names of the tools the request gave; a bare JSON answer is a call only
    when it names them.
    """
    if "<tool_call>" in text:
        calls: list[ToolCall] = []

        def take(match: re.Match[str]) -> str:
            call = _call_from(_parse(match.group(1)))
            if call is None:
                return match.group(0)
            calls.append(call)
            return ""

        content = _TAGGED.sub(take, text)
        if calls:
            return content.strip(), calls
    bare = text.strip()
    for marker in _MARKERS:
        if bare.startswith(marker):
            bare = bare[len(marker) :].lstrip()
    if offered and bare[:1] in ("{", "["):
        found = _bare_calls(bare, offered)
        if found:
            return "", found
    return text, []


def _bare_calls(text: str, offered: Collection[str]) -> list[ToolCall]:
    """The calls of an answer that is nothing but JSON objects (or lists of them) naming offered
    tools; none when anything else is in it."""
    try:
        _json.check_depth(text, what="the tool calls", error=ValueError)
    except ValueError:
        return []
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position] in _SEPARATORS:
            position += 1
        if position == len(text):
            break
        try:
            value, position = decoder.raw_decode(text, position)
        except ValueError:
            return []
        values.extend(value if isinstance(value, list) else [value])
    calls = [_call_from(value) for value in values]
    if not calls or any(call is None or call.function.name not in offered for call in calls):
        return []
    return [call for call in calls if call is not None]


def _parse(text: str) -> Any:
    try:
        return _json.loads(text, what="a tool call", error=ValueError)
    except ValueError:
        return None


def _call_from(value: Any) -> ToolCall | None:
    """A call from `{"name", "arguments" | "parameters"}` (or OpenAI's `{"function": {…}}`)."""
    if not isinstance(value, Mapping):
        return None
    function = value.get("function")
    if isinstance(function, Mapping):
        value = function
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, str):
        if not isinstance(arguments, Mapping):
            return None
        arguments = json.dumps(arguments, ensure_ascii=False)
    call_id = value.get("id")
    return ToolCall(
        call_id if isinstance(call_id, str) and call_id else new_call_id(),
        FunctionCall(name, arguments),
    )
