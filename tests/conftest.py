"""Fixtures shared by the whole suite. Area-specific fixtures live in each folder's conftest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.support.docs_ports import (
    ANTHROPIC_PORT,
    BATCH_API_PORT,
    GEMINI_PORT,
    HTTP_EXAMPLE_PORT,
    OLLAMA_PORT,
    OPENAI_PORT,
    OPENAI_TOOLS_PORT,
    WS_EXAMPLE_PORT,
    DocsPorts,
)

# Nothing in the suite may reach the internet: make Hugging Face libraries fail fast offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# LiteLLM prices an Ollama answer by asking OLLAMA_API_BASE (default http://localhost:11434) for
# the model's details, whatever `api_base` the request went to, in a blocking call on the event
# loop. Aim that lookup at a port nothing serves, so it fails at once instead of reaching a
# developer's own Ollama, or hanging on whatever else holds 11434.
os.environ["OLLAMA_API_BASE"] = "http://127.0.0.1:9"

# Hypothesis fails an example slower than 200 ms by default: a clock limit that a busy machine
# (or `-n 2` beside other work) can miss; tests that have a time budget check CPU time instead.
# Nor does it keep an example database in the checkout, which parallel runs would share.
settings.register_profile("jib", deadline=None, database=None)
settings.load_profile("jib")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny random causal LM and tokenizer saved on disk, built once per test session."""
    from tests.support.tiny_model import build_tiny_model

    yield build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def docs_servers(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DocsPorts]:
    """The self-hosted servers documentation examples name, each on a free port.

    `transformers serve` on the tiny model (named `tiny-chat`) where the docs say
    http://localhost:8000/v1, as a vLLM or other OpenAI-compatible server would be, and a server
    speaking Ollama's protocol where they say http://localhost:11434. Yields the ports they got,
    to rewrite into each example (`tests.support.docs_ports`): a developer's own vLLM or Ollama
    on the usual ports, or a second test run, is left alone.
    """
    from tests.support.ollama_server import run_ollama_server
    from tests.support.openai_server import run_transformers_serve

    log = tmp_path_factory.mktemp("docs-serve") / "server.log"
    with (
        run_transformers_serve(tiny_model_dir, log, name="tiny-chat") as openai_server,
        run_ollama_server() as ollama_server,
    ):
        yield DocsPorts.serving({OPENAI_PORT: openai_server.url, OLLAMA_PORT: ollama_server.url})


@pytest.fixture(scope="session")
def docs_stub_servers() -> Iterator[tuple[DocsPorts, list[Any]]]:
    """The protocol stub servers documentation examples name, each on a free port: Anthropic's
    Messages API where the docs say http://localhost:8300, Gemini's generateContent at 8301, an
    OpenAI server whose model calls tools at 8302 and OpenAI's and Anthropic's batch APIs at 8303
    (tests/support). Yields their ports and
    their states (to reset before each example)."""
    from tests.support.anthropic_server import run_anthropic_server
    from tests.support.batch_api_server import run_batch_api_server
    from tests.support.gemini_server import run_gemini_server
    from tests.support.openai_chat_server import run_openai_chat_server

    with (
        run_anthropic_server() as anthropic,
        run_gemini_server() as gemini,
        run_openai_chat_server() as tools,
        run_batch_api_server() as batches,
    ):
        ports = DocsPorts.serving(
            {
                ANTHROPIC_PORT: anthropic.url,
                GEMINI_PORT: gemini.url,
                OPENAI_TOOLS_PORT: tools.url,
                BATCH_API_PORT: batches.url,
            }
        )
        yield ports, [anthropic.state, gemini.state, tools.state, batches.state]


@pytest.fixture
def docs_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_dir: Path,
    docs_servers: DocsPorts,
    docs_stub_servers: tuple[DocsPorts, list[Any]],
) -> Iterator[DocsPorts]:
    """What documentation examples may rely on: a private store, the tiny model's path, and the
    servers they name (`docs_servers`, the stub servers and the HTTP example server, reset).
    Yields every server's port, to rewrite into the example."""
    from tests.generator.http.server import ensure_example_server
    from tests.generator.ws.server import ensure_ws_example_server

    example_server = ensure_example_server()
    example_server.state.reset()
    ws_example_server = ensure_ws_example_server()
    ws_example_server.state.reset()
    stub_ports, stub_states = docs_stub_servers
    for state in stub_states:
        state.reset()
    monkeypatch.setenv("JIB_STORE", str(tmp_path / "jib.db"))
    monkeypatch.setenv("JIB_TINY_MODEL", str(tiny_model_dir))
    monkeypatch.chdir(tmp_path)
    yield (
        docs_servers
        | stub_ports
        | DocsPorts.serving(
            {HTTP_EXAMPLE_PORT: example_server.url, WS_EXAMPLE_PORT: ws_example_server.url}
        )
    )
