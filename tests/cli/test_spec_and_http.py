"""`jib spec render`, and `jib run` through the `http!` provider against a real local server."""

from __future__ import annotations

from pathlib import Path

import pytest

from jib.generator.http import HTTPGenerator
from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line
from tests.support.fault_server import RunningFaultServer

SPEC = """
request:
  url: "http://127.0.0.1:9/v1/chat/{{ model }}"
  headers:
    Authorization: "Bearer {{ api_key }}"
    X-Static-Token: "abc123"
  transforms:
    - type: json
      pattern:
        model: "{{ model }}"
        messages: "$messages"
response:
  transforms:
    - type: jsonpath
      pattern: "$.choices[0].message.content"
"""


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


def test_render_shows_the_request_with_the_key_masked(jib: JibRunner, spec_file: Path) -> None:
    result = jib(
        "spec", "render", str(spec_file), "--prompt", "Hi there", "-m", "tiny",
        "--system", "be brief", "--api-key", "sk-render-secret",
    )  # fmt: skip

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "POST http://127.0.0.1:9/v1/chat/tiny"
    assert "Authorization: Bearer ***" in lines
    assert "X-Static-Token: ***" in lines
    assert "Content-Type: application/json" in lines
    assert '      "content": "Hi there"' in lines
    assert "sk-render-secret" not in result.stdout + result.stderr


def test_render_json_shows_where_the_key_goes(jib: JibRunner, spec_file: Path) -> None:
    request = jib("spec", "render", str(spec_file), "--prompt", "Hello", "--json").json()

    assert request["method"] == "POST"
    assert request["headers"]["Authorization"] == "Bearer <api_key>"
    assert request["body"] == {"model": "", "messages": [{"role": "user", "content": "Hello"}]}


def test_render_an_http_identifier(jib: JibRunner) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        url="http://127.0.0.1:9/v1/chat/completions",
        model="m1",
        request_body={"model": "{{ model }}", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
    )
    identifier = generator.to_identifier() + ",api_key=sk-ident-secret"

    result = jib("spec", "render", identifier, "--json")

    assert result.code == 0, result.stderr
    request = result.json()
    assert request["url"] == "http://127.0.0.1:9/v1/chat/completions"
    assert request["body"]["model"] == "m1"
    assert "sk-ident-secret" not in result.stdout


@pytest.mark.parametrize(
    ("spec_text", "expected"),
    [
        ("request: {url: 'http://x/{{ model'}\n", "invalid spec in"),
        ("response: {}\n", "invalid spec in"),
        ("request: {url: 'ftp://x/'}\n", "must render to an http(s) URL"),
    ],
)
def test_render_a_bad_spec_is_one_line(
    jib: JibRunner, tmp_path: Path, spec_text: str, expected: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(spec_text)

    result = jib("spec", "render", str(path))

    assert_one_clean_error_line(result, expected)
    assert result.code == 2


def test_render_a_missing_spec_file_is_one_line(jib: JibRunner) -> None:
    result = jib("spec", "render", "missing.yaml")

    assert_one_clean_error_line(result, "spec file 'missing.yaml' not found")
    assert result.code == 2


def test_run_through_the_http_provider_against_a_local_server(
    jib: JibRunner, fault_server: RunningFaultServer, prompts_file: Path, default_store: Path
) -> None:
    generator = HTTPGenerator.for_json_endpoint(
        url=f"{fault_server.url}/chat/completions",
        model="test-model",
        auth={"header": "Authorization", "format": "Bearer {api_key}"},
        request_body={"model": "{{ model }}", "messages": "$messages"},
        response={"content_path": "$.choices[0].message.content"},
    )
    identifier = generator.to_identifier() + ",api_key=sk-http-secret"

    result = jib("run", identifier, "-f", str(prompts_file), "-r", "http", "--no-progress")

    assert result.code == 0, result.stderr
    assert fault_server.state.headers[0]["authorization"] == "Bearer sk-http-secret"
    with open_store(default_store) as store:
        chats = store.query(run="http")
    # Chunks run concurrently, so chats are stored in the order they finish.
    assert sorted(c.content for c in chats) == sorted(prompts_file.read_text().splitlines())
    assert chats[0].generator_id == generator.to_identifier()
    raw = b"".join(p.read_bytes() for p in default_store.parent.iterdir())
    assert b"sk-http-secret" not in raw
