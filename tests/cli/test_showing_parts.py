"""Parts, tool calls, tool results and structured outputs as `jib show`, `jib log`, `jib compare`
and `jib report` show them: labelled (`[image/png 12 KB]`), calls as `-> name({args})`, images
inline in the report, and every piece of it escaped.

The rendering tests build records the way the store gives them back (`Chat.to_dict()` plus the
store's columns). The end-to-end ones store real chats first: they wait on the store keeping
parts, tool calls and outputs (issue 18's storage work), and are marked so until it lands.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

from rich.console import Console

from jib.chat import Chat
from jib.cli._comparison import compare_records
from jib.cli._message_view import part_label, readable
from jib.cli._report_html import render_report
from jib.cli._schema import SCHEMA_ERROR
from jib.cli.compare import _table, _write_csv, _write_jsonl
from jib.cli.log import _prompt_and_answer, print_record
from jib.content import ContentAudioInput, ContentFile, ContentImageUrl
from jib.messages import Message
from jib.tools import FunctionCall, ToolCall
from tests.cli.answer_server import answer_server, identifier
from tests.cli.conftest import JibRunner

PNG = b"\x89PNG\r\n\x1a\n" + bytes(12 * 1024 - 8)  # 12 KB
IMAGE = ContentImageUrl.from_bytes(PNG, "image/png")
AUDIO = ContentAudioInput.from_bytes(b"RIFF" + bytes(3 * 1024 - 4), "wav")
PDF = ContentFile.from_bytes(b"%PDF" + bytes(40 * 1024 - 4), "application/pdf", filename="a.pdf")
REMOTE = ContentImageUrl.from_url("https://images.example.com/cat.png")
HOSTILE = '\x1b[2J[bold red]boom[/] <script>alert("x")</script>'


def record(chat: Chat, *, output: Any = None, **columns: Any) -> dict[str, Any]:
    """`chat` as the store gives it back (`jib show` and friends read this form)."""
    data = chat.to_dict()
    data.update({"run": "r", "prompt_id": None, "sample_index": None, **columns})
    if output is not None:
        data["output"] = output
    return data


def weather_chat(arguments: str = '{"city": "Paris"}') -> Chat:
    return Chat(
        messages=[
            Message("user", ["What is in these?", IMAGE, AUDIO, PDF, REMOTE]),
            Message(
                "assistant",
                "",
                tool_calls=[ToolCall("call_1", FunctionCall("get_weather", arguments))],
            ),
            Message("tool", "18 degrees", tool_call_id="call_1"),
        ],
        generated=[Message("assistant", '{"temp": 18}')],
    )


def shown(data: dict[str, Any]) -> str:
    buffer = io.StringIO()
    print_record(data, Console(file=buffer, width=120, highlight=False, color_system=None))
    return buffer.getvalue()


def test_each_part_has_a_label_with_its_type_and_size() -> None:
    assert part_label(IMAGE.to_dict()) == "[image/png 12 KB]"
    assert part_label(AUDIO.to_dict()) == "[audio/wav 3 KB]"
    assert part_label(PDF.to_dict()) == "[application/pdf 40 KB a.pdf]"
    assert part_label(REMOTE.to_dict()) == "[image https://images.example.com/cat.png]"
    assert part_label({"type": "video_url", "video_url": {}}) == "[video_url]"
    assert part_label("not a part") == "[part]"
    assert part_label({"type": "image_url", "image_url": {"url": 3}}) == "[image]"
    message = Message("user", ["Look", IMAGE, "and", REMOTE]).to_dict()
    assert readable(message) == (
        "Look\n[image/png 12 KB]\nand\n[image https://images.example.com/cat.png]"
    )
    assert readable({"role": "user", "content": "plain"}) == "plain"


def test_show_prints_parts_tool_calls_tool_results_and_the_output() -> None:
    text = shown(record(weather_chat(), output={"temp": 18}))

    assert "What is in these?" in text
    for label in (
        "[image/png 12 KB]",
        "[audio/wav 3 KB]",
        "[application/pdf 40 KB a.pdf]",
        "[image https://images.example.com/cat.png]",
    ):
        assert label in text
    assert '-> get_weather({"city": "Paris"})' in text
    assert "tool · answers call_1" in text
    assert "18 degrees" in text
    assert re.search(r'output +\{"temp": 18\}', text)
    assert base64.b64encode(PNG).decode()[:40] not in text  # the bytes are never printed


def test_show_escapes_tool_calls_and_outputs() -> None:
    chat = weather_chat(arguments=json.dumps({"city": HOSTILE}))
    chat.messages[1].tool_calls = (ToolCall("call_1", FunctionCall(HOSTILE, "{}")),)
    data = record(chat, output={"note": HOSTILE})
    data["extra"] = {SCHEMA_ERROR: HOSTILE}

    text = shown(data)

    assert "\x1b" not in text
    assert "-> \\x1b[2J[bold red]boom[/] <script>" in text  # markup shown, not applied
    assert "not valid: \\x1b[2J[bold red]boom[/]" in text


def test_log_previews_name_the_parts_and_the_calls() -> None:
    chat = Chat(
        messages=[Message("user", ["Describe", IMAGE])],
        generated=[
            Message(
                "assistant",
                "",
                tool_calls=[
                    ToolCall("c1", FunctionCall("zoom", '{"x": 1}')),
                    ToolCall("c2", FunctionCall("crop", "{}")),
                ],
            )
        ],
    )

    prompt, answer = _prompt_and_answer(record(chat))

    assert prompt == "Describe\n[image/png 12 KB]"
    assert answer == '-> zoom({"x": 1})\n-> crop({})'


def two_generator_run() -> list[dict[str, Any]]:
    ask = [Message("user", ["Which city?", IMAGE])]
    first = Chat(
        messages=ask,
        generated=[Message("assistant", '{"name": "Oslo"}')],
        metadata={"prompt_id": "q1", "sample_index": 0},
    )
    second = Chat(
        messages=ask,
        generated=[
            Message("assistant", "", tool_calls=[ToolCall("c", FunctionCall("lookup", HOSTILE))])
        ],
        metadata={"prompt_id": "q1", "sample_index": 0},
    )
    third = Chat(
        messages=[Message("user", "Spell it")],
        generated=[Message("assistant", "O-s-l-o")],
        metadata={"prompt_id": "q2", "sample_index": 0},
    )
    records = [
        record(first, output={"name": "Oslo"}, generator_id="a!x", prompt_id="q1"),
        record(second, generator_id="b!y", prompt_id="q1"),
        record(third, generator_id="a!x", prompt_id="q2"),
    ]
    records[2]["extra"] = {SCHEMA_ERROR: "the answer is not JSON (Expecting value)"}
    return records


def test_compare_shows_tool_calls_and_validated_outputs() -> None:
    comparison = compare_records("r", two_generator_run())
    buffer = io.StringIO()
    Console(file=buffer, width=160, highlight=False, color_system=None).print(_table(comparison))
    table = buffer.getvalue()

    assert 'output: {"name": "Oslo"}' in table
    assert "-> lookup(\\x1b[2J[bold red]boom[/]" in table
    assert "not valid: the answer is not JSON" in table
    assert "[image/png 12 KB]" in table
    assert "\x1b" not in table

    lines = io.StringIO()
    _write_jsonl(comparison, lines)
    first = json.loads(lines.getvalue().splitlines()[0])
    assert first["prompt"] == "Which city?\n[image/png 12 KB]"
    assert first["answers"]["a!x"]["output"] == {"name": "Oslo"}
    assert first["answers"]["b!y"]["tool_calls"] == [{"name": "lookup", "arguments": HOSTILE}]
    assert "tool_calls" not in first["answers"]["a!x"]
    sheet = io.StringIO()
    _write_csv(comparison, sheet)
    assert "-> lookup(" in sheet.getvalue()


def test_report_shows_images_inline_and_everything_else_escaped() -> None:
    records = two_generator_run()
    planted = 'data:image/png;base64,AAAA" onerror="alert(1)'
    svg = "data:image/svg+xml;base64," + base64.b64encode(b"<svg onload=alert(1)>").decode()
    parts = [
        {"type": "text", "text": "Which of these?"},
        {"type": "image_url", "image_url": {"url": planted}},
        {"type": "image_url", "image_url": {"url": svg}},
        REMOTE.to_dict(),
        AUDIO.to_dict(),
    ]
    records[2]["messages"] = [{"role": "user", "content": parts}]

    page = render_report(compare_records("r", records))

    csp = re.search(r'Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None
    assert csp.group(1) == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert f'<img class="part" src="{IMAGE.url}" alt="[image/png 12 KB]"' in page
    assert page.count("<img ") == 1  # the planted, SVG and remote images are only labelled
    assert "onerror" not in page.replace("onerror=&quot;", "")  # only inside an escaped label
    assert "<svg onload" not in page
    assert "https://images.example.com/cat.png" in page  # named as text, never loaded
    assert 'src="https://' not in page
    assert "[audio/wav 3 KB]" in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<script" not in page
    assert "-&gt; lookup(" in page
    assert "&quot;name&quot;: &quot;Oslo&quot;" in page
    assert "not valid: the answer is not JSON" in page


def test_report_inlines_images_up_to_its_budget() -> None:
    records = two_generator_run()
    another = ContentImageUrl.from_bytes(PNG + b"2", "image/png")
    records[2]["messages"] = [{"role": "user", "content": [another.to_dict()]}]

    page = render_report(compare_records("r", records), image_budget=len(IMAGE.url) + 10)

    assert page.count("<img ") == 1
    assert "[image/png 12 KB] (not shown: the page holds its budget of images)" in page


def test_show_of_a_stored_chat_with_an_image_and_a_tool_call(
    jib: JibRunner, tmp_path: Path
) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    with answer_server() as server:
        made = jib(
            "chat", identifier(server), 'call:get_weather {"city": "Paris"}', "-a", "cat.png"
        )
    assert made.code == 0, made.stderr
    chat_id = made.stderr.split("stored as ")[1].split()[0]

    text = jib("show", chat_id).stdout

    assert "[image/png 12 KB]" in text
    assert '-> get_weather({"city": "Paris"})' in text


def test_report_of_a_run_with_attachments_shows_its_images(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Look", "attachments": ["cat.png"]}) + "\n")
    assert jib("run", "echo!demo", "-f", str(prompts), "-r", "pics").code == 0

    assert jib("report", "-r", "pics", "-o", "pics.html").code == 0

    assert f'src="{IMAGE.url}"' in (tmp_path / "pics.html").read_text()
