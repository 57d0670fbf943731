"""`jib run --tools FILE` (the calls a model makes are recorded, none run) and `--schema
FILE|JSON` (sent as `response_format`, every answer validated, the valid ones counted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jib.chat import Chat
from jib.cli._common import CliError
from jib.cli._schema import SCHEMA_ERROR, AnswerSchema
from jib.messages import Message
from jib.storage import open_store
from tests.cli.answer_server import answer_server, bodies, identifier
from tests.cli.conftest import JibRunner, assert_one_clean_error_line

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {"name": "get_time", "parameters": {"type": "object", "properties": {}}}
CITY = {
    "title": "City",
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name"],
}


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def summary_row(stdout: str) -> dict[str, str]:
    """The summary's header and its one generator row, as a dict (identifiers have no spaces)."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("generator"))
    names = lines[at].replace("tool calls", "tool_calls").replace("tokens in/out", "tokens")
    return dict(zip(names.split(), lines[at + 1].split(), strict=True))


def test_tools_go_to_the_model_and_its_calls_are_recorded_not_run(
    jib: JibRunner, tmp_path: Path
) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([WEATHER, TIME]))
    prompts = write_lines(
        tmp_path / "p.jsonl",
        ['call:get_weather {"city": "Paris"};get_time {}', "What is the time?"],
    )
    with answer_server() as server:
        result = jib(
            "run", identifier(server), "-f", str(prompts), "--tools", str(tools), "--no-progress"
        )

    assert result.code == 0, result.stderr
    assert summary_row(result.stdout)["tool_calls"] == "1"
    sent = bodies(server)
    assert len(sent) == 2  # one request per line: no call was run and answered
    expected = [WEATHER, {"type": "function", "function": TIME}]
    assert all(body["tools"] == expected for body in sent)
    assert all(message["role"] == "user" for body in sent for message in body["messages"])


def test_a_tools_file_may_be_yaml_holding_a_tools_key(jib: JibRunner, tmp_path: Path) -> None:
    tools = tmp_path / "tools.yaml"
    tools.write_text(
        "tools:\n"
        "  - name: get_time\n"
        "    description: The time now.\n"
        "    parameters: {type: object, properties: {}}\n"
    )
    with answer_server() as server:
        result = jib(
            "run", identifier(server), "-f", "-", "--tools", str(tools), "--no-progress",
            stdin="call:get_time\n",
        )  # fmt: skip

    assert result.code == 0, result.stderr
    [body] = bodies(server)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The time now.",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"type": "function"}', "must hold a list of tools"),
        ("[]", "must hold a list of tools"),
        ('[{"type": "function", "function": {}}]', "tool 1: function.name: Field required"),
        ('[{"name": "a"}, {"name": "a"}]', "tools 1 and 2 are both named 'a'"),
        ('[{"name": "has space"}]', "tool 1: function.name: String should match pattern"),
        ("[1]", "tool 1 is not an object"),
        ("[{", "is not JSON"),
    ],
)
def test_a_malformed_tools_file_is_one_line_before_anything_is_sent(
    jib: JibRunner, tmp_path: Path, content: str, expected: str
) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(content)

    result = jib("run", "echo!demo", "-f", "-", "--tools", str(tools), stdin="hi\n")

    assert_one_clean_error_line(result, f"--tools {tools}", expected)
    assert result.code == 2


def test_a_missing_tools_file_is_one_line(jib: JibRunner) -> None:
    result = jib("run", "echo!demo", "-f", "-", "--tools", "nope.json", stdin="hi\n")

    assert_one_clean_error_line(result, "--tools nope.json: no such file")


def test_schema_goes_as_response_format_and_each_answer_is_validated(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    schema = tmp_path / "city.schema.json"
    schema.write_text(json.dumps(CITY))
    prompts = write_lines(
        tmp_path / "p.jsonl",
        [
            {"id": "valid", "prompt": 'say:{"name": "Paris", "population": 2100000}'},
            {"id": "fenced", "prompt": 'say:```json\n{"name": "Rome"}\n```'},
            {"id": "wrong", "prompt": 'say:{"name": 3}'},
            {"id": "prose", "prompt": "say:Paris, of course."},
        ],
    )
    with answer_server() as server:
        result = jib(
            "run", identifier(server), "-f", str(prompts), "--schema", str(schema),
            "--no-progress", "-r", "cities",
        )  # fmt: skip

    assert result.code == 0, result.stderr
    row = summary_row(result.stdout)
    assert (row["ok"], row["valid"]) == ("4", "2")
    for body in bodies(server):
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": CITY},
        }
    with open_store(default_store) as store:
        chats = {c.metadata["prompt_id"]: c for c in store.query(run="cities")}
    assert all(not chat.failed for chat in chats.values())
    assert SCHEMA_ERROR not in chats["valid"].extra
    assert SCHEMA_ERROR not in chats["fenced"].extra
    assert chats["wrong"].extra[SCHEMA_ERROR] == "$.name: 3 is not of type 'string'"
    assert chats["prose"].extra[SCHEMA_ERROR].startswith("the answer is not JSON (")

    shown = jib("show", chats["wrong"].id)
    assert "schema     not valid: $.name: 3 is not of type 'string'" in shown.stdout
    compared = jib("compare", "-r", "cities", "-F", "jsonl")
    answers = {
        line["prompt_id"]: next(iter(line["answers"].values()))
        for line in map(json.loads, compared.stdout.splitlines())
    }
    assert answers["wrong"]["schema_error"] == "$.name: 3 is not of type 'string'"
    assert "schema_error" not in answers["valid"]


def test_the_summary_counts_valid_answers_per_generator(jib: JibRunner, tmp_path: Path) -> None:
    prompts = write_lines(tmp_path / "p.jsonl", ['{"name": "Paris"}', '{"name": 1}', "Paris"])

    result = jib(
        "run", "echo!demo", "-f", str(prompts), "--no-progress",
        "--schema", json.dumps(CITY),
    )  # fmt: skip

    assert result.code == 0, result.stderr
    row = summary_row(result.stdout)
    assert (row["ok"], row["failed"], row["valid"]) == ("3", "0", "1")


def test_a_schema_file_may_be_yaml(tmp_path: Path) -> None:
    schema = tmp_path / "answer.yaml"
    schema.write_text("type: object\nproperties:\n  ok: {type: boolean}\nrequired: [ok]\n")

    loaded = AnswerSchema.load(str(schema))

    assert loaded.name == "answer"
    assert loaded.response_format["json_schema"]["schema"]["required"] == ["ok"]
    assert loaded.check('{"ok": true}') == ({"ok": True}, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"type": "nope"}', "--schema is not a valid JSON Schema: 'nope' is not valid"),
        ('{"type": ', "--schema is not JSON"),
        ("nope.json", "--schema nope.json: no such file"),
    ],
)
def test_a_bad_schema_is_one_line_before_anything_is_sent(
    jib: JibRunner, value: str, expected: str
) -> None:
    result = jib("run", "echo!demo", "-f", "-", "--schema", value, stdin="hi\n")

    assert_one_clean_error_line(result, expected)
    assert result.code == 2


def test_a_schema_must_be_an_object(tmp_path: Path) -> None:
    schema = tmp_path / "list.json"
    schema.write_text("[1, 2]")

    with pytest.raises(CliError, match="must be a JSON Schema object"):
        AnswerSchema.load(str(schema))


def test_an_answer_is_checked_whole_and_references_stay_inside_the_schema() -> None:
    schema = AnswerSchema.load(
        json.dumps(
            {
                "$defs": {"city": {"type": "object", "required": ["name"]}},
                "type": "array",
                "items": {"$ref": "#/$defs/city"},
            }
        )
    )
    assert schema.check('[{"name": "Paris"}]') == ([{"name": "Paris"}], None)
    assert schema.check('[{"name": "Paris"}, {}]') == (
        None,
        "$[1]: 'name' is a required property",
    )
    assert schema.check('Here: [{"name": "Paris"}]')[1] == (
        "the answer is not JSON (Expecting value)"
    )
    deep = "[" * 500 + "]" * 500
    assert "nested 500 levels deep" in (schema.check(deep)[1] or "")

    remote = AnswerSchema.load('{"$ref": "https://schemas.example.com/city.json"}')
    value, problem = remote.check("{}")
    assert value is None and problem is not None
    assert problem.startswith("the schema refers to what it does not hold")


def test_apply_sets_the_output_or_says_why_not() -> None:
    schema = AnswerSchema.load(json.dumps(CITY))
    good = Chat(
        messages=[Message("user", "x")], generated=[Message("assistant", '{"name": "Oslo"}')]
    )
    bad = Chat(messages=[Message("user", "x")], generated=[Message("assistant", "{}")])

    assert schema.apply(good) is True and good.output == {"name": "Oslo"}
    assert schema.apply(bad) is False and bad.output is None
    assert bad.extra[SCHEMA_ERROR] == "$: 'name' is a required property"
