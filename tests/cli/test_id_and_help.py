"""`jib id`, every command's help, and keeping `import jib` free of the CLI's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.cli.conftest import JibRunner, assert_one_clean_error_line


def test_id_explains_an_identifier(jib: JibRunner) -> None:
    result = jib("id", "echo!demo,prefix=>> ,temperature=0.2,stop=a;b")

    assert result.code == 0, result.stderr
    assert "echo (jib.testing.EchoGenerator)" in result.stdout
    assert "temperature = 0.2" in result.stdout
    assert "prefix = >> " in result.stdout
    assert "valid identifier" in result.stdout


def test_id_json_masks_secrets(jib: JibRunner) -> None:
    result = jib("id", "openai/gpt-4o-mini,api_key=sk-very-secret,max_connections=4", "--json")

    report = result.json()
    assert report["provider"] == "litellm"
    assert report["model"] == "openai/gpt-4o-mini"
    assert report["attributes"] == {"api_key": "***", "max_connections": 4}
    assert "sk-very-secret" not in result.stdout + result.stderr


def test_id_keeps_environment_references(jib: JibRunner) -> None:
    report = jib("id", "echo!demo,api_key=env:MY_KEY", "--json").json()

    assert report["attributes"]["api_key"] == "env:MY_KEY"
    assert report["identifier"] == "echo!demo,api_key=env:MY_KEY"


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("echo!demo,temprature=1", "Did you mean 'temperature'?"),
        ("nosuch!model", "unknown provider 'nosuch'"),
        ("echo!demo,temperature=True", "temperature"),
        ("openai/x,api_key=sk-hidden,bogus=1", "api_key=***"),
    ],
)
def test_bad_identifier_is_one_line_and_exit_2(
    jib: JibRunner, identifier: str, expected: str
) -> None:
    result = jib("id", identifier)

    assert_one_clean_error_line(result, expected)
    assert result.code == 2
    assert "sk-hidden" not in result.stderr


def test_top_level_help_lists_every_command(jib: JibRunner) -> None:
    result = jib("--help")

    assert result.code == 0
    for command in ("chat", "run", "log", "show", "export", "id", "spec"):
        assert f"  {command} " in result.stdout


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("chat", ["--system", "--param", "--continue", "--no-store", "--json", "--store"]),
        ("run", ["--prompts", "--concurrency", "--run", "--resume", "--no-progress", "--store"]),
        ("log", ["--number", "--run", "--failed", "--json"]),
        ("show", ["CHAT_ID", "--json"]),
        ("export", ["--run", "--format", "jsonl|csv|parquet", "--output"]),
        ("id", ["IDENTIFIER", "--json"]),
        ("spec render", ["SPEC", "--prompt"]),
    ],
)
def test_every_command_has_accurate_help(jib: JibRunner, command: str, options: list[str]) -> None:
    result = jib(*command.split(), "--help")

    assert result.code == 0, result.stderr
    for option in options:
        assert option in result.stdout


def test_python_dash_m_runs_the_cli(jib_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jib.cli", "--help"],
        capture_output=True,
        text=True,
        env=jib_env,
        timeout=60,
    )

    assert result.returncode == 0
    assert "Usage: jib" in result.stdout


def test_import_jib_does_not_import_the_cli_or_storage_dependencies() -> None:
    code = (
        "import json, sys, jib, jib.testing; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'typer', 'rich', 'sqlalchemy', 'pandas', 'pyarrow', 'psycopg', 'click'} "
        "or m in ('jib.cli', 'jib.storage'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert json.loads(result.stdout) == []


def test_error_lines_mask_secret_looking_values() -> None:
    from jib.cli._common import one_line

    text = "bad: 'openai/x,api_key=sk-1,token=t0k\nen' OPENAI_API_KEY=zz api_key=env:MY_KEY"

    assert one_line(text) == (
        "bad: 'openai/x,api_key=***,token=*** en' OPENAI_API_KEY=*** api_key=env:MY_KEY"
    )
