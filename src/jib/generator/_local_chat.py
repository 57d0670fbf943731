"""What a model running in this process is given to chat with, and what it cannot be given.

Shared by `transformers!` and `vllm!`. Their chat templates take OpenAI-shaped messages and
tools; what a template or a model cannot carry (a part it has no processor for, a parameter
it cannot honour) is refused here, with an error that names the provider and the part, before
anything is generated — never dropped silently.

- `refuse_params`: the params neither provider can apply (`response_format`, a forced
  `tool_choice`, `parallel_tool_calls=False`, audio output);
- `refuse_for_text`: the same for a completion, tools included (no template to offer them);
- `offered_tools`: the tool definitions a template gets (none when `tool_choice="none"`);
- `refuse_parts`: the first part a model cannot take, as a `BadRequestError`;
- `template_message`: a message as a chat template reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from jib import _json
from jib.content import ContentPart
from jib.errors import BadRequestError
from jib.generator._parts import refused_part
from jib.messages import Message
from jib.params import GenerateParams

__all__ = [
    "offered_tools",
    "refuse_for_text",
    "refuse_params",
    "refuse_parts",
    "template_message",
]


def refuse_params(params: GenerateParams, provider: str) -> None:
    """Raise for the params a local chat template cannot carry.

    Raises:
        BadRequestError: `response_format` (no constrained decoding here), a `tool_choice`
            that forces a call, `parallel_tool_calls=False`, or audio output; the message
            names the param.
    """
    if params.response_format is not None:
        kind = params.response_format.get("type", "?")
        raise BadRequestError(
            f"{provider}! cannot carry response_format ({kind!r}): it has no constrained "
            "decoding, so it cannot hold the answer to a JSON schema; ask for JSON in the "
            "prompt and validate it yourself, or use a provider that takes response_format",
            provider=provider,
        )
    choice = params.tool_choice
    if choice is not None and choice not in ("auto", "none"):
        shown = choice if isinstance(choice, str) else json.dumps(choice, ensure_ascii=False)
        raise BadRequestError(
            f"{provider}! cannot carry tool_choice={shown}: a chat template offers tools but "
            "cannot force the model to call one (use 'auto' or 'none')",
            provider=provider,
        )
    if params.parallel_tool_calls is False:
        raise BadRequestError(
            f"{provider}! cannot carry parallel_tool_calls=False: it cannot hold the model to "
            "one call per answer",
            provider=provider,
        )
    if params.audio is not None or any(mode != "text" for mode in params.modalities or ()):
        raise BadRequestError(
            f"{provider}! cannot carry modalities={params.modalities!r}/audio: it generates "
            "text only",
            provider=provider,
        )


def refuse_for_text(params: GenerateParams, provider: str) -> None:
    """Raise for the params a completion (text in, no chat template) cannot carry: those of
    `refuse_params`, and tools.

    Raises:
        BadRequestError: naming the param.
    """
    refuse_params(params, provider)
    if offered_tools(params) is not None:
        raise BadRequestError(
            f"{provider}! cannot carry tools in a completion: tools are offered through the "
            "chat template; use chat() instead of complete()",
            provider=provider,
        )


def offered_tools(params: GenerateParams) -> list[dict[str, Any]] | None:
    """The OpenAI-shaped tool definitions for the chat template; `None` when there are none or
    `tool_choice` is `"none"` (the model is not shown them)."""
    if not params.tools or params.tool_choice == "none":
        return None
    return [tool.to_dict() for tool in params.tools]


def refuse_parts(
    messages: Sequence[Message],
    provider: str,
    why_not: Callable[[ContentPart], str | None],
) -> None:
    """Raise for the first part `why_not` gives a reason against.

    Raises:
        BadRequestError: naming the message and part (counted from 1), what the part is, and
            the reason.
    """
    refused = refused_part(messages, why_not)
    if refused is not None:
        raise BadRequestError(refused, provider=provider)


def template_message(
    message: Message,
    *,
    content: str | list[dict[str, Any]] | None = None,
    arguments_as_objects: bool,
) -> dict[str, Any]:
    """`message` as a chat template reads it: the OpenAI shape without prompt-cache marks
    (local models have no prompt cache to mark), its content the text unless `content` is
    given.

    `arguments_as_objects` writes tool call arguments as objects, as Hugging Face chat templates
    expect (`{{ call.arguments | tojson }}`); arguments that are not a JSON object stay text.
    """
    data: dict[str, Any] = {
        "role": message.role,
        "content": message.content if content is None else content,
    }
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            written = call.to_dict()
            if arguments_as_objects:
                written["function"]["arguments"] = _as_object(call.function.arguments)
            calls.append(written)
        data["tool_calls"] = calls
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    return data


def _as_object(arguments: str) -> Any:
    try:
        value = _json.loads(arguments or "{}", what="tool call arguments", error=ValueError)
    except ValueError:
        return arguments
    return value if isinstance(value, dict) else arguments
