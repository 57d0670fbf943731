"""The chat every golden test sends: an image, an audio clip, a PDF, an earlier tool call and its
result, two tools with `tool_choice`, and `response_format`; and the reply the servers script."""

from __future__ import annotations

import base64
from typing import Any

import jib
from jib import ContentAudioInput, ContentFile, ContentImageUrl, ContentText, Message, ToolCall
from jib.tools import FunctionCall
from tests.support.stub_model import Reply, ToolUse

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WAV = (
    b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00"
    b"\x02\x00\x10\x00data\x00\x00\x00\x00"
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG_B64, WAV_B64, PDF_B64 = (base64.b64encode(data).decode() for data in (PNG, WAV, PDF))

QUESTION = "What do these show, and what time is it in Paris?"
SYSTEM = "You answer with tools."
TOOL_RESULT = "18 C and sunny"

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": WEATHER,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time in a city",
            "parameters": WEATHER,
        },
    },
]
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"summary": {"type": "string"}},
    "required": ["summary"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "Answer", "schema": ANSWER_SCHEMA},
}
TOOL_CHOICE = {"type": "function", "function": {"name": "get_time"}}

REPLY = Reply(
    "Looking both up.",
    (ToolUse("get_time", {"city": "Paris"}), ToolUse("get_weather", {"city": "Rome", "days": 2})),
)
"""What every server answers: text and two parallel calls."""
EXPECTED_CALLS = [("get_time", {"city": "Paris"}), ("get_weather", {"city": "Rome", "days": 2})]


def golden_messages(*, audio: bool = True) -> list[Message]:
    """The conversation: a system prompt, a user turn with an image, audio and a PDF, an
    assistant's tool call, and its result."""
    parts: list[Any] = [ContentText(QUESTION), ContentImageUrl.from_bytes(PNG, "image/png")]
    if audio:
        parts.append(ContentAudioInput.from_bytes(WAV, "wav"))
    parts.append(ContentFile.from_bytes(PDF, "application/pdf", filename="report.pdf"))
    return [
        Message("system", SYSTEM),
        Message("user", parts),
        Message(
            "assistant",
            "",
            tool_calls=[ToolCall("call_1", FunctionCall("get_weather", '{"city": "Paris"}'))],
        ),
        Message("tool", TOOL_RESULT, tool_call_id="call_1"),
    ]


def golden_params() -> jib.GenerateParams:
    """Two tools, one forced, and a JSON schema for the answer."""
    return jib.GenerateParams(
        max_tokens=256,
        tools=TOOLS,
        tool_choice=TOOL_CHOICE,
        parallel_tool_calls=True,
        response_format=RESPONSE_FORMAT,
    )


def openai_golden_body(model: str) -> dict[str, Any]:
    """The body an OpenAI-protocol server receives for the golden chat."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": QUESTION},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {"type": "input_audio", "input_audio": {"data": WAV_B64, "format": "wav"}},
                    {
                        "type": "file",
                        "file": {
                            "file_data": f"data:application/pdf;base64,{PDF_B64}",
                            "filename": "report.pdf",
                        },
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "content": TOOL_RESULT, "tool_call_id": "call_1"},
        ],
        "max_tokens": 256,
        "tools": TOOLS,
        "tool_choice": TOOL_CHOICE,
        "parallel_tool_calls": True,
        "response_format": RESPONSE_FORMAT,
    }
