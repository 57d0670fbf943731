"""`spec=@path` in identifiers given on the command line: the file is read, its spec stored."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

import jib
from jib import InvalidGeneratorError
from jib.chat import Chat
from jib.cli._spec_files import expand_spec_file
from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.support.fault_server import RunningFaultServer

SPEC = """\
request:
  url: "{url}/chat/completions"
  transforms:
    - type: json
      pattern:
        model: "{{{{ model }}}}"
        messages: "$messages"
response:
  transforms:
    - type: jsonpath
      pattern: "$.choices[0].message.content"
"""


@pytest.fixture
def spec_file(tmp_path: Path, fault_server: RunningFaultServer) -> Path:
    """A spec for the fault server, in the folder `jib` runs in."""
    path = tmp_path / "bot.yaml"
    path.write_text(SPEC.format(url=fault_server.url))
    return path


def last_chat(store_path: Path) -> Chat:
    with open_store(store_path) as store:
        chat = store.last(rebuild_generator=False)
    assert isinstance(chat, Chat)
    return chat


def test_chat_reads_the_spec_file_and_stores_the_spec_itself(
    jib: JibRunner, spec_file: Path, fault_server: RunningFaultServer, default_store: Path
) -> None:
    result = jib("chat", "http!bot,spec=@bot.yaml", "hello file")  # relative to the cwd

    assert result.code == 0, result.stderr
    assert result.stdout == "hello file\n"
    assert fault_server.state.requests[-1]["model"] == "bot"
    identifier = last_chat(default_store).generator_id or ""
    assert "@" not in identifier
    encoded = identifier.split("spec=")[1].split(",")[0]
    spec_yaml = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    assert f"{fault_server.url}/chat/completions" in spec_yaml


def test_a_chat_made_from_a_spec_file_continues_without_the_file(
    jib: JibRunner, spec_file: Path, fault_server: RunningFaultServer, default_store: Path
) -> None:
    jib("chat", "http!bot,spec=@bot.yaml", "first")
    spec_file.unlink()

    result = jib("chat", "--continue", "second")

    assert result.code == 0, result.stderr
    assert result.stdout == "first first second\n"  # the server echoes the whole conversation


def test_absolute_and_nested_paths(jib: JibRunner, spec_file: Path, tmp_path: Path) -> None:
    nested = tmp_path / "specs" / "v2"
    nested.mkdir(parents=True)
    spec_file.rename(nested / "bot.yaml")

    relative = jib("chat", "http!bot,spec=@specs/v2/bot.yaml", "nested")
    absolute = jib("chat", f"http!bot,spec=@{nested / 'bot.yaml'}", "absolute")

    assert (relative.stdout, absolute.stdout) == ("nested\n", "absolute\n")


def test_spec_file_in_the_generator_option_and_the_environment(
    jib: JibRunner, spec_file: Path
) -> None:
    from_option = jib("chat", "-g", "http!bot,spec=@bot.yaml", "option")
    from_env = jib("chat", "env", env_update={"JIB_GENERATOR": "http!bot,spec=@bot.yaml"})

    assert (from_option.stdout, from_env.stdout) == ("option\n", "env\n")


def test_run_reads_spec_files_too(
    jib: JibRunner, spec_file: Path, prompts_file: Path, default_store: Path
) -> None:
    result = jib("run", "http!bot,spec=@bot.yaml", "-f", str(prompts_file), "--no-progress")

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        assert store.count() == 8


def test_id_and_spec_render_read_spec_files(jib: JibRunner, spec_file: Path) -> None:
    described = jib("id", "http!bot,spec=@bot.yaml", "--json").json()
    rendered = jib("spec", "render", "http!bot,spec=@bot.yaml", "--prompt", "Hi", "--json").json()

    assert described["attributes"]["spec"]["request"]["url"].endswith("/chat/completions")
    assert described["identifier"].startswith("http!bot,spec=")
    assert "@" not in described["identifier"]
    assert rendered["body"] == {"model": "bot", "messages": [{"role": "user", "content": "Hi"}]}


def test_a_missing_spec_file_names_it_and_where_relative_paths_start(jib: JibRunner) -> None:
    result = jib("chat", "http!bot,spec=@nowhere.yaml", "hi")

    assert_one_clean_error_line(
        result, "spec=@nowhere.yaml: no such file", "relative paths start from the current"
    )
    assert result.code == 2


def test_an_invalid_spec_file_says_what_is_wrong(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("request: {url: 'http://x/{{ model'}\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")

    invalid = jib("chat", "http!bot,spec=@bad.yaml", "hi")
    binary = jib("id", "http!bot,spec=@binary.yaml")

    assert_one_clean_error_line(invalid, "spec=@bad.yaml: invalid spec: request", "Jinja")
    assert_one_clean_error_line(binary, "spec=@binary.yaml: the file is not UTF-8 text")
    assert (invalid.code, binary.code) == (2, 2)


def test_a_folder_is_not_a_spec_file(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()

    result = jib("id", "http!bot,spec=@specs")

    assert_one_clean_error_line(result, "spec=@specs: no such file")


def test_a_stored_identifier_with_spec_at_a_path_is_never_read(
    jib: JibRunner, spec_file: Path, fault_server: RunningFaultServer, default_store: Path
) -> None:
    # Someone who can write to the store plants a chat whose identifier points at a local file.
    planted = Chat(
        messages=[],
        generated=[],
        metadata={},
        _generator_id=f"http!bot,spec=@{spec_file}",
    )
    with open_store(default_store) as store:
        store.save(planted)

    result = jib("chat", "--continue", "hi")

    assert result.code == 2
    assert "invalid identifier" in result.last_error_line
    assert fault_server.state.requests == []  # the file's spec was not used


def test_a_huge_file_is_refused_unread(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_bytes(b"#" * 4_000_001)

    result = jib("id", "http!bot,spec=@huge.yaml")

    assert_one_clean_error_line(result, "spec=@huge.yaml: the file is larger than 4000000 bytes")


def test_a_json_spec_file_works_as_well(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "bot.json").write_text('{"request": {"url": "http://127.0.0.1:9/{{ model }}"}}')

    described = jib("id", "http!bot,spec=@bot.json", "--json").json()

    assert described["attributes"]["spec"] == {"request": {"url": "http://127.0.0.1:9/{{ model }}"}}


# -- identifiers read from a file the user named -------------------------------------------------


def test_identifiers_without_a_spec_file_are_left_alone() -> None:
    for identifier in ("echo!demo", "http!m,spec=e30", "a,,b@", "http!m,api_key=k@y", "x@y"):
        assert expand_spec_file(identifier) == identifier


def test_an_empty_file_name_says_how_to_write_one() -> None:
    with pytest.raises(InvalidGeneratorError, match=r"spec=@ names no file; write spec=@path"):
        expand_spec_file("http!m,spec=@")


def test_a_spec_file_beside_the_file_that_names_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bot.yaml").write_text("request: {url: 'http://127.0.0.1:9/'}\n")

    expanded = expand_spec_file("http!m,spec=@specs/bot.yaml,timeout=3", base=tmp_path)

    generator = jib.get_generator(expanded)
    assert isinstance(generator, HTTPGenerator)
    assert generator.spec is not None
    assert generator.spec.request.url == "http://127.0.0.1:9/"
    assert expanded.endswith(",timeout=3")


@pytest.mark.parametrize("name", ["../outside.yaml", "/etc/hostname", "link.yaml"])
def test_a_file_named_inside_a_shared_file_must_stay_in_its_folder(
    tmp_path: Path, name: str
) -> None:
    folder = tmp_path / "dataset"
    folder.mkdir()
    (tmp_path / "outside.yaml").write_text("request: {url: 'http://127.0.0.1:9/'}\n")
    (folder / "link.yaml").symlink_to(tmp_path / "outside.yaml")

    with pytest.raises(InvalidGeneratorError, match="must be a relative path within that folder"):
        expand_spec_file(f"http!m,spec=@{name}", base=folder)
