"""Fixtures shared by the whole suite. Area-specific fixtures live in each folder's conftest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Nothing in the suite may reach the internet: make Hugging Face libraries fail fast offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny random causal LM and tokenizer saved on disk, built once per test session."""
    from tests.support.tiny_model import build_tiny_model

    yield build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def docs_servers(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The self-hosted servers documentation examples name, on their usual ports.

    `transformers serve` on the tiny model (named `tiny-chat`) at http://localhost:8000/v1, as a
    vLLM or other OpenAI-compatible server would be, and a server speaking Ollama's protocol at
    http://localhost:11434. Examples then read exactly as they would against real servers.
    """
    from tests.support.ollama_server import run_ollama_server
    from tests.support.openai_server import run_transformers_serve

    log = tmp_path_factory.mktemp("docs-serve") / "server.log"
    with (
        run_transformers_serve(tiny_model_dir, log, port=8000, name="tiny-chat"),
        run_ollama_server(11434),
    ):
        yield


@pytest.fixture
def docs_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, docs_servers: None
) -> Iterator[None]:
    """What documentation examples may rely on: a private store, the tiny model's path, and the
    HTTP example server on 127.0.0.1:8765."""
    from tests.generator.http.server import ensure_example_server

    ensure_example_server().state.reset()
    monkeypatch.setenv("JIB_STORE", str(tmp_path / "jib.db"))
    monkeypatch.setenv("JIB_TINY_MODEL", str(tiny_model_dir))
    monkeypatch.chdir(tmp_path)
    yield
