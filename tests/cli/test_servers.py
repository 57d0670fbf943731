"""`jib` against real servers on 127.0.0.1: an OpenAI-protocol server, and none at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.support.fault_server import RunningFaultServer
from tests.support.openai_server import free_port

SECRET = "sk-cli-SECRET-5f3a9c"


def test_run_against_a_server_bounds_concurrency_and_never_stores_the_key(
    jib: JibRunner, fault_server: RunningFaultServer, tmp_path: Path, default_store: Path
) -> None:
    fault_server.state.reset(delay=0.2)
    prompts = tmp_path / "p.txt"
    # The 401 answer echoes the key back, as OpenAI does.
    prompts.write_text("".join(f"prompt {i}\n" for i in range(6)) + "fail:401\n")
    identifier = f"openai/test-model,api_base={fault_server.url},api_key={SECRET}"

    result = jib("run", identifier, "-f", str(prompts), "-c", "2", "-r", "srv", "--no-progress")

    assert_one_clean_error_line(result, "1 of 7 chats failed", "AuthenticationError")
    assert 1 <= fault_server.state.max_in_flight <= 2
    assert len(fault_server.state.requests) == 7
    with open_store(default_store) as store:
        chats = store.query(run="srv", rebuild_generator=False)
    assert sorted(c.content for c in chats if not c.failed) == [f"prompt {i}" for i in range(6)]
    assert SECRET not in result.stdout + result.stderr
    assert "Give Feedback" not in result.stdout
    raw = b"".join(p.read_bytes() for p in default_store.parent.iterdir())
    assert b"prompt 5" in raw
    assert SECRET.encode() not in raw


def test_chat_against_a_server(
    jib: JibRunner, fault_server: RunningFaultServer, default_store: Path
) -> None:
    identifier = f"openai/test-model,api_base={fault_server.url}"

    result = jib("chat", identifier, "hello from the cli", env_update={"OPENAI_API_KEY": SECRET})

    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "hello from the cli"
    assert fault_server.state.headers[0]["authorization"] == f"Bearer {SECRET}"
    with open_store(default_store) as store:
        [chat] = store.query()
    assert chat.generator_id == identifier


def test_chat_with_an_unreachable_server_is_one_line_and_json_stays_valid(
    jib: JibRunner, default_store: Path
) -> None:
    identifier = f"openai/test-model,api_base=http://127.0.0.1:{free_port()}/v1,api_key={SECRET}"

    result = jib("chat", identifier, "hello", "-p", "timeout=10", "--json")

    assert_one_clean_error_line(result, "ProviderConnectionError")
    assert result.code == 1
    # LiteLLM prints a "Give Feedback / Get Help" banner to stdout on errors; the CLI turns it
    # off, so stdout stays one JSON document.
    record = result.json()
    assert record["failed"] is True
    assert record["error"]["type"] == "ProviderConnectionError"
    assert SECRET not in result.stdout + result.stderr
    with open_store(default_store) as store:
        assert store.count(failed=True) == 1


def test_run_with_an_unreachable_server_records_failures_and_says_so(
    jib: JibRunner, prompts_file: Path, default_store: Path
) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        url=f"http://127.0.0.1:{free_port()}/v1/chat/completions",
        request_body={"messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
    )
    generator.max_retries = 0

    result = jib("run", generator.to_identifier(), "-f", str(prompts_file), "-r", "down")

    assert_one_clean_error_line(result, "8 of 8 chats failed", "ProviderConnectionError")
    with open_store(default_store) as store:
        assert store.count(run="down", failed=True) == 8


@pytest.mark.slow
def test_chat_against_transformers_serve(
    jib: JibRunner, tiny_model_dir: Path, tmp_path: Path, default_store: Path
) -> None:
    from tests.support.openai_server import run_transformers_serve

    with run_transformers_serve(tiny_model_dir, tmp_path / "serve.log") as server:
        identifier = f"openai/{server.model},api_base={server.url},api_key=none,max_tokens=5"
        result = jib("chat", identifier, "Hello", "--json")

    assert result.code == 0, result.stderr
    assert result.json()["generated"][0]["role"] == "assistant"
    with open_store(default_store) as store:
        [chat] = store.query()
    assert not chat.failed
    assert chat.usage is not None and chat.usage.output_tokens > 0


def test_a_chat_retried_by_jib_shows_its_attempts(
    jib: JibRunner, fault_server: RunningFaultServer
) -> None:
    # The server answers 429 twice, then the prompt; jib retries by default.
    identifier = f"openai/test-model,api_base={fault_server.url},api_key={SECRET}"

    chat = jib("chat", "--no-stream", "--json", identifier, "flaky:2:cli")
    shown = jib("show", chat.json()["id"])

    assert chat.code == 0, chat.stderr
    assert chat.json()["generated"][0]["content"] == "flaky:2:cli"
    assert chat.json()["attempts"] == 3
    assert shown.code == 0, shown.stderr
    assert [line.split() for line in shown.stdout.splitlines() if "attempts" in line] == [
        ["attempts", "3"]
    ]
