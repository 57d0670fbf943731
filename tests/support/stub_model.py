"""The "model" behind the protocol stub servers (Anthropic's, Gemini's, OpenAI's): what it answers.

Each server reads a request in its own protocol into a `Turn` (what the model was shown), asks
`answer` for a `Reply`, and writes the reply in its own protocol. So the servers differ only in
the wire format, and a test can script one reply and see it come back through each of them.

Unscripted, the model answers deterministically:
- after tool results: "The tools said: <result>; <result>";
- offered tools (and not told `none`): a call of the forced tool, or of the first one, with
  arguments made from its schema (`example_of`; a string is the last capitalized word of the
  user's text, so "Weather in Paris?" calls `get_weather` with `{"city": "Paris"}`);
- asked for JSON (a schema): an object made from the schema;
- otherwise: what it received, e.g. "Received: text, image/png, audio/wav, application/pdf".
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Reply", "ScriptedReplies", "ToolUse", "Turn", "answer", "example_of", "word_count"]


@dataclass(frozen=True)
class ToolUse:
    """A call the model makes: a tool's name and its arguments (an object)."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """What the model says: text, tool calls, or both."""

    text: str = ""
    tool_calls: tuple[ToolUse, ...] = ()


@dataclass
class Turn:
    """What a request showed the model, whatever its protocol.

    Attributes:
        received: the last user message's content, one entry per part: `text` or a media type.
        text: the last user message's text.
        tool_results: the tool results the last message carried, as text.
        tools: the tools offered, name to parameter schema, in order.
        forced_tool: the tool the request forces, if any.
        tools_off: the request offers tools but says not to call them.
        json_schema: the schema of the JSON answer asked for, if any (`{}` for any object).
    """

    received: list[str] = field(default_factory=list)
    text: str = ""
    tool_results: list[str] = field(default_factory=list)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    forced_tool: str | None = None
    tools_off: bool = False
    json_schema: dict[str, Any] | None = None


class ScriptedReplies:
    """Replies a test queued, handed out in order, one per request (thread-safe)."""

    def __init__(self) -> None:
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()

    def add(self, *replies: Reply) -> None:
        """Queue `replies`: the next requests get them, in order."""
        with self._lock:
            self._queue.extend(replies)

    def next(self) -> Reply | None:
        """The next queued reply, or `None` when none is left."""
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def clear(self) -> None:
        """Forget the queued replies."""
        with self._lock:
            self._queue.clear()


def answer(turn: Turn, script: ScriptedReplies) -> Reply:
    """The reply to `turn`: the next scripted one, else the model's own (module docstring)."""
    scripted = script.next()
    if scripted is not None:
        return scripted
    if turn.tool_results:
        return Reply("The tools said: " + "; ".join(turn.tool_results))
    if turn.tools and not turn.tools_off:
        name = turn.forced_tool or next(iter(turn.tools))
        arguments = example_of(turn.tools.get(name, {}), _hint(turn.text))
        return Reply(tool_calls=(ToolUse(name, arguments),))
    if turn.json_schema is not None:
        return Reply(json.dumps(example_of(turn.json_schema, _hint(turn.text))))
    return Reply("Received: " + ", ".join(turn.received))


def _hint(text: str) -> str:
    words = [word.strip(".,;:!?\"'()") for word in text.split()]
    capitalized = [word for word in words[1:] if word[:1].isupper()]
    return capitalized[-1] if capitalized else "example"


def example_of(schema: Any, text: str = "example") -> Any:
    """A value that validates against a simple JSON schema (objects, arrays, scalars, enums);
    strings are `text`."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: example_of(sub, text) for name, sub in properties.items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), text)]
    if kind == "string":
        return text
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return None


def word_count(texts: list[str]) -> int:
    """Tokens, as the stub counts them: whitespace-separated words."""
    return sum(len(text.split()) for text in texts)
