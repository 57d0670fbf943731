"""The protocol servers the beyond-text tests share, each on a free port of 127.0.0.1, one per
session (per xdist worker), reset before every test; and the chat the golden tests send.

- `anthropic_server`: Anthropic's Messages API (`tests/support/anthropic_server.py`);
- `gemini_server`: Gemini's generateContent (`tests/support/gemini_server.py`);
- `openai_chat_server`: OpenAI's chat completions with a model that calls tools
  (`tests/support/openai_chat_server.py`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.anthropic_server import RunningAnthropicServer, run_anthropic_server
from tests.support.gemini_server import RunningGeminiServer, run_gemini_server
from tests.support.openai_chat_server import RunningOpenAIChatServer, run_openai_chat_server


@pytest.fixture(scope="session")
def _anthropic_session() -> Iterator[RunningAnthropicServer]:
    with run_anthropic_server() as server:
        yield server


@pytest.fixture(scope="session")
def _gemini_session() -> Iterator[RunningGeminiServer]:
    with run_gemini_server() as server:
        yield server


@pytest.fixture(scope="session")
def _openai_chat_session() -> Iterator[RunningOpenAIChatServer]:
    with run_openai_chat_server() as server:
        yield server


@pytest.fixture
def anthropic_server(_anthropic_session: RunningAnthropicServer) -> RunningAnthropicServer:
    """The Anthropic Messages API server, its recordings, cache and script cleared."""
    _anthropic_session.state.reset()
    return _anthropic_session


@pytest.fixture
def gemini_server(_gemini_session: RunningGeminiServer) -> RunningGeminiServer:
    """The Gemini generateContent server, its recordings and script cleared."""
    _gemini_session.state.reset()
    return _gemini_session


@pytest.fixture
def openai_chat_server(_openai_chat_session: RunningOpenAIChatServer) -> RunningOpenAIChatServer:
    """The OpenAI chat completions server, its recordings, cache, script and switches cleared."""
    _openai_chat_session.state.reset()
    return _openai_chat_session
