"""Fixtures for the batch API tests: a server speaking OpenAI's and Anthropic's batch APIs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.batch_api_server import RunningBatchServer, run_batch_api_server


@pytest.fixture
def batch_server() -> Iterator[RunningBatchServer]:
    """A fresh batch API server on a free port (OpenAI's at `{url}/v1`, Anthropic's at `url`)."""
    with run_batch_api_server() as server:
        yield server


def identifiers(server: RunningBatchServer, key: str = "sk-test") -> dict[str, str]:
    """An identifier per provider for `server`, with `key`."""
    return {
        "openai": f"openai!gpt-4o-mini,api_base={server.url}/v1,api_key={key}",
        "anthropic": f"anthropic/claude-sonnet-4-5,api_base={server.url},api_key={key}",
    }
