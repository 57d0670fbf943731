"""`jib spec import`: a spec and an identifier from a copied request, secrets left out, and the
identifier running `jib run` against a chatbot on 127.0.0.1 that wants a session cookie and a
CSRF token (signed in already: the copy carries the session; logging in is a step's job)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from jib.storage import open_store
from jib.trust import TrustPolicy
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.support.recording_server import RecordingServer, serve_recording

SESSION = "session=9f2c1e7a4b3d5e6f; theme=dark"
CSRF = "csrf-4d1f8a"


@pytest.fixture
def chatbot() -> Iterator[RecordingServer]:
    """A chatbot that answers (`{"reply", "echo"}`) only with the session cookie and CSRF
    token; 403 otherwise."""
    with serve_recording(require={"cookie": SESSION, "x-csrf-token": CSRF}) as running:
        yield running


def copied_from_dev_tools(url: str) -> str:
    host = url.removeprefix("http://")
    return (
        f"POST /api/chat HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0\r\n"
        "Accept: application/json\r\n"
        "Accept-Encoding: gzip, deflate, br, zstd\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-CSRF-Token: {CSRF}\r\n"
        f"Origin: http://{host}\r\n"
        f"Referer: http://{host}/chat\r\n"
        f"Cookie: {SESSION}\r\n"
        "Content-Length: 41\r\n"
        "\r\n"
        f"message={{PROMPT}}&csrf_token={CSRF}&lang=en\r\n"
    )


def test_import_prints_the_spec_and_identifier_and_says_which_variable_to_set(
    jib: JibRunner, chatbot: RecordingServer, tmp_path: Path
) -> None:
    (tmp_path / "copied.txt").write_text(copied_from_dev_tools(chatbot.url))

    result = jib("spec", "import", "copied.txt", "--response-path", "$.echo")

    assert result.code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "# spec"
    assert "  url: http://127.0.0.1:" in result.stdout
    assert "    Cookie: '{{ api_key }}'" in result.stdout
    assert "message={{ content | urlencode }}&csrf_token=" in result.stdout
    assert lines[-2] == "# identifier"
    assert lines[-1].startswith("http!target,")
    assert ",api_key=env:JIB_TARGET_KEY" in lines[-1]
    assert ",spec=" in lines[-1]
    assert "set JIB_TARGET_KEY to its value (the Cookie header's whole value" in result.stderr
    spec = lines[-1].split(",spec=", 1)[1].split(",", 1)[0]
    decoded = base64.urlsafe_b64decode(spec + "=" * (-len(spec) % 4)).decode()
    assert "csrf_token=csrf-4d1f8a" in decoded  # a CSRF token is not a credential
    for text in (result.stdout, result.stderr, decoded):
        assert "9f2c1e7a4b3d5e6f" not in text


def test_an_imported_identifier_runs_100_prompts(
    jib: JibRunner, chatbot: RecordingServer, tmp_path: Path, default_store: Path
) -> None:
    (tmp_path / "copied.txt").write_text(copied_from_dev_tools(chatbot.url))
    prompts = [f'prompt {n}: "quotes" & ampersands = {n}+{n} é' for n in range(100)]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    imported = jib("spec", "import", "copied.txt", "--response-path", "$.echo", "-o", "bot.yaml")
    assert imported.code == 0, imported.stderr
    identifier = imported.stdout.strip().splitlines()[-1]
    assert identifier == "http!target,api_key=env:JIB_TARGET_KEY,spec=@bot.yaml"

    result = jib(
        "run",
        identifier,
        "--prompts",
        "prompts.txt",
        "-r",
        "copied",
        "--no-progress",
        env_update={"JIB_TARGET_KEY": SESSION},
    )

    assert result.code == 0, result.stderr
    assert len(chatbot.requests) == 100
    assert all(request.header("cookie") == SESSION for request in chatbot.requests)
    assert all(request.form()["csrf_token"] == [CSRF] for request in chatbot.requests)
    allowed = TrustPolicy(allow_env={"JIB_TARGET_KEY"})
    with open_store(default_store, trusted=allowed) as store:
        chats = store.query(run="copied")
    assert sorted(chat.content for chat in chats) == sorted(prompts)
    raw = b"".join(path.read_bytes() for path in default_store.parent.iterdir())
    assert b"9f2c1e7a4b3d5e6f" not in raw


def test_without_the_variable_the_run_says_what_is_missing(
    jib: JibRunner, chatbot: RecordingServer, tmp_path: Path
) -> None:
    (tmp_path / "copied.txt").write_text(copied_from_dev_tools(chatbot.url))
    identifier = jib("spec", "import", "copied.txt").stdout.strip().splitlines()[-1]

    result = jib("chat", identifier, "hello")

    assert result.code != 0
    assert "JIB_TARGET_KEY" in result.stderr
    assert chatbot.requests == []


def test_import_for_a_login_step_leaves_cookies_and_csrf_tokens_to_state(
    jib: JibRunner, chatbot: RecordingServer, tmp_path: Path
) -> None:
    (tmp_path / "copied.txt").write_text(copied_from_dev_tools(chatbot.url))

    result = jib(
        "spec",
        "import",
        "copied.txt",
        "--no-cookies",
        "--from-state",
        "X-CSRF-Token=csrf",
        "--from-state",
        "csrf_token=csrf",
    )

    assert result.code == 0, result.stderr
    spec = yaml.safe_load(result.stdout.split("# identifier")[0])
    assert spec["request"]["headers"]["X-CSRF-Token"] == "{{ state.csrf }}"
    body = spec["request"]["transforms"][0]["pattern"]
    assert (
        body == "message={{ content | urlencode }}&csrf_token={{ state.csrf | urlencode }}&lang=en"
    )
    assert "Cookie" not in result.stdout
    assert "api_key" not in result.stdout
    assert CSRF not in result.stdout
    assert result.stderr == ""


def test_import_a_curl_command_as_json(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "curl.sh").write_text(
        "curl 'https://bot.test/v1/chat' -k \\\n"
        "  -H 'Authorization: Bearer sk-curl-secret-77' \\\n"
        '  --data-raw \'{"q":"{PROMPT}"}\'\n'
    )

    result = jib("spec", "import", "curl.sh", "--json", "--key-env", "BOT_KEY", "-m", "bot")

    assert result.code == 0, result.stderr
    data = result.json()
    assert data["spec"]["request"]["headers"]["Authorization"] == "Bearer {{ api_key }}"
    assert data["spec"]["request"]["transforms"][0]["pattern"] == {"q": "$content"}
    assert data["identifier"].startswith("http!bot,")
    assert ",verify=False," in data["identifier"]
    assert ",api_key=env:BOT_KEY" in data["identifier"]
    assert data["secrets"] == [
        {
            "where": "the Authorization header",
            "reference": "api_key",
            "hint": 'the value after "Bearer "',
        }
    ]
    assert "sk-curl-secret-77" not in result.stdout + result.stderr


def test_import_reads_standard_input(jib: JibRunner) -> None:
    result = jib("spec", "import", "-", stdin="GET /q?text={PROMPT} HTTP/1.1\nHost: a.test\n")

    assert result.code == 0, result.stderr
    assert "url: https://a.test/q?text={{ content | urlencode }}" in result.stdout


def test_import_a_copy_without_a_marker_is_one_error_line(jib: JibRunner, tmp_path: Path) -> None:
    (tmp_path / "copied.txt").write_text("POST /chat HTTP/1.1\nHost: a.test\n\nhello")

    result = jib("spec", "import", "copied.txt")

    assert_one_clean_error_line(result, "there is no {PROMPT} marker in the copied request")
    assert result.code == 2


def test_import_a_missing_file_is_one_error_line(jib: JibRunner) -> None:
    result = jib("spec", "import", "missing.txt")

    assert_one_clean_error_line(result, "copied request file 'missing.txt' not found")
    assert result.code == 2
