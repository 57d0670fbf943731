"""Servers the remote-provider tests (LiteLLM, `openai!`) share, on 127.0.0.1, one per session.

- `openai_server`: `transformers serve` running the tiny random model (a real OpenAI-compatible
  server; slow to start, so one per session).
- `fault_server`: an OpenAI-protocol server that injects faults and counts concurrent requests;
  each test gets it with its recordings cleared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fault_server import RunningFaultServer, run_fault_server
from tests.support.openai_server import RunningServer, run_transformers_serve


@pytest.fixture(scope="session")
def openai_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """`transformers serve` on the tiny model, for the whole session."""
    log = tmp_path_factory.mktemp("transformers-serve") / "server.log"
    with run_transformers_serve(tiny_model_dir, log) as server:
        yield server


@pytest.fixture(scope="session")
def _fault_server_session() -> Iterator[RunningFaultServer]:
    with run_fault_server() as server:
        yield server


@pytest.fixture
def fault_server(_fault_server_session: RunningFaultServer) -> RunningFaultServer:
    """The fault-injecting OpenAI-protocol server, with its recordings cleared."""
    _fault_server_session.state.reset()
    return _fault_server_session
