"""Model and record text never reaches the terminal raw: `jib chat`, `jib show`, `jib log` and
error lines show control characters as visible escapes."""

from __future__ import annotations

from pathlib import Path

import pytest

from jib.chat import Chat
from jib.cli._terminal import printable, printable_data
from jib.messages import Message
from jib.storage import open_store
from tests.cli.conftest import JibRunner

ATTACK = "\x1b[2J\x1b]0;PWNED\x07"
SHOWN = "\\x1b[2J\\x1b]0;PWNED\\x07"


def assert_no_controls(text: str) -> None:
    assert not any(ord(char) < 32 and char not in "\n\t" for char in text), repr(text)
    assert not any(0x7F <= ord(char) <= 0x9F for char in text), repr(text)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (ATTACK, SHOWN),
        ("a\tb\nc", "a\tb\nc"),
        ("windows\r\nline", "windows\nline"),
        ("over\rwrite", "over\\x0dwrite"),
        ("c1 \x9b31m csi", "c1 \\x9b31m csi"),
        ("del\x7f nul\x00", "del\\x7f nul\\x00"),
        ("unicode é ✓ 日本", "unicode é ✓ 日本"),
    ],
)
def test_printable_shows_control_characters_as_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_data_walks_records_without_recursion() -> None:
    deep: list[object] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    inner.append(ATTACK)

    result = printable_data({"meta\x1b": {"deep": deep}, "n": 1, "ok": None})

    assert list(result) == ["meta\\x1b", "n", "ok"]
    node = result["meta\\x1b"]["deep"]
    for _ in range(5000):
        node = node[0]
    assert node == [SHOWN]


def test_chat_prints_model_text_with_escapes_visible(jib: JibRunner) -> None:
    result = jib("chat", "echo!demo", f"before {ATTACK} after")

    assert result.code == 0, result.stderr
    assert result.stdout == f"before {SHOWN} after\n"
    assert_no_controls(result.stdout + result.stderr)


def test_chat_json_keeps_the_exact_text(jib: JibRunner) -> None:
    result = jib("chat", "echo!demo", ATTACK, "--json")

    assert_no_controls(result.stdout)  # JSON escapes them
    assert result.json()["generated"][0]["content"] == ATTACK


def test_chat_error_text_from_a_provider_is_escaped(jib: JibRunner) -> None:
    result = jib("chat", "always_fail!x,message=boom%1B[2J%1B]0%3BPWNED%07", "hi")

    assert result.code == 1
    assert f"boom{SHOWN}" in result.last_error_line
    assert_no_controls(result.stdout + result.stderr)


@pytest.fixture
def planted(default_store: Path) -> Chat:
    """A stored chat whose every text field carries escape sequences."""
    chat = Chat(
        messages=[Message("user", f"question {ATTACK}")],
        generated=[Message("assistant", f"answer {ATTACK}")],
        metadata={"note": ATTACK, "tags": [f"t{ATTACK}"]},
        stop_reason="stop",
        _generator_id=f"echo!demo,prefix={ATTACK}",
    )
    with open_store(default_store) as store:
        store.save(chat, run=f"run{ATTACK}")
    return chat


def test_show_prints_stored_text_with_escapes_visible(jib: JibRunner, planted: Chat) -> None:
    result = jib("show", planted.id[:8])

    assert result.code == 0, result.stderr
    assert_no_controls(result.stdout + result.stderr)
    assert f"answer {SHOWN}" in result.stdout
    assert f"question {SHOWN}" in result.stdout
    assert f"run{SHOWN}" in result.stdout


def test_log_prints_stored_text_with_escapes_visible(jib: JibRunner, planted: Chat) -> None:
    result = jib("log")

    assert result.code == 0, result.stderr
    assert_no_controls(result.stdout + result.stderr)
    assert "answer \\x1b[2J" in result.stdout


def test_log_and_show_json_keep_the_exact_text(jib: JibRunner, planted: Chat) -> None:
    [logged] = jib("log", "--json").json()
    shown = jib("show", planted.id, "--json").json()

    assert (
        logged["generated"][0]["content"]
        == shown["generated"][0]["content"]
        == (f"answer {ATTACK}")
    )
