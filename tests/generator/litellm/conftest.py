"""Servers only the LiteLLM tests talk to, on 127.0.0.1 and stopped after the session.

- `ollama`: a server speaking Ollama's wire protocol (Ollama itself is not installable here),
  shared by the session; each test gets it with its recordings cleared.

`openai_server` and `fault_server` are shared with the `openai!` tests: see
tests/generator/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.ollama_server import RunningOllama, run_ollama_server


@pytest.fixture(scope="session")
def _ollama_session() -> Iterator[RunningOllama]:
    with run_ollama_server() as server:
        yield server


@pytest.fixture
def ollama(_ollama_session: RunningOllama) -> RunningOllama:
    """The Ollama-protocol server, with its recordings cleared and no truncation."""
    _ollama_session.state.reset()
    return _ollama_session
