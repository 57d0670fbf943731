"""Documentation examples name the ports a reader's servers use; the tests' servers take free ones.

The README and docs/ say `http://localhost:8000/v1` (vLLM, `transformers serve`),
`http://localhost:11434` (Ollama) and `http://127.0.0.1:8765` (jib's HTTP example server),
because that is what a reader types; and `http://localhost:8300` (Anthropic's Messages API),
`http://localhost:8301/v1beta` (Gemini's generateContent) and `http://localhost:8302/v1` (an
OpenAI server whose model calls tools), the stub servers of `tests/support` a reader starts with
`python -m tests.support.anthropic_server` and the like. The test suite starts its servers on
free ports instead, so it runs beside a developer's own vLLM or Ollama and twice at once, and
rewrites the port of each such URL in an example (its code and its `#>` output alike) to the
port the server got:

    ports = DocsPorts.serving({8000: "http://127.0.0.1:41234/v1", 11434: ...})
    ports.apply("api_base=http://localhost:8000/v1")  # 'api_base=http://localhost:41234/v1'

Only a URL's port on loopback (`localhost` or `127.0.0.1`) is rewritten, and only for the
documented ports: `http://host:8000/v1` in prose, or a port nothing serves, is left as written.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from pytest_examples import CodeExample

__all__ = [
    "ANTHROPIC_PORT",
    "BATCH_API_PORT",
    "GEMINI_PORT",
    "HTTP_EXAMPLE_PORT",
    "OLLAMA_PORT",
    "OPENAI_PORT",
    "OPENAI_TOOLS_PORT",
    "WS_EXAMPLE_PORT",
    "DocsPorts",
]

OPENAI_PORT = 8000
"""The port docs give an OpenAI-compatible server (`transformers serve`, vLLM)."""
OLLAMA_PORT = 11434
"""The port docs give an Ollama server (Ollama's own default)."""
HTTP_EXAMPLE_PORT = 8765
"""The port docs give jib's HTTP example server (`python -m tests.generator.http.server`)."""
ANTHROPIC_PORT = 8300
"""The port docs give the Anthropic Messages API stub
(`python -m tests.support.anthropic_server`)."""
GEMINI_PORT = 8301
"""The port docs give the Gemini generateContent stub (`python -m tests.support.gemini_server`)."""
WS_EXAMPLE_PORT = 8766
"""The port docs give jib's WebSocket example server (`python -m tests.generator.ws.server`)."""
OPENAI_TOOLS_PORT = 8302
"""The port docs give the OpenAI server whose model calls tools
(`python -m tests.support.openai_chat_server`)."""

BATCH_API_PORT = 8303
"""The port docs give the stub of OpenAI's and Anthropic's batch APIs
(`python -m tests.support.batch_api_server`)."""

_LOOPBACK_URL = re.compile(r"(?P<head>://(?:localhost|127\.0\.0\.1):)(?P<port>\d+)(?!\d)")


@dataclasses.dataclass(frozen=True)
class DocsPorts:
    """Which port the tests' server really has, for each port the docs name."""

    actual: Mapping[int, int]

    @classmethod
    def serving(cls, urls: Mapping[int, str]) -> DocsPorts:
        """For each documented port, the server answering in its place, by URL."""
        actual = {}
        for documented, url in urls.items():
            port = urlsplit(url).port
            if port is None:
                raise ValueError(f"{url!r} names no port")
            actual[documented] = port
        return cls(actual)

    def apply(self, text: str) -> str:
        """`text` with each loopback URL on a documented port moved to the server's port."""

        def moved(match: re.Match[str]) -> str:
            port = self.actual.get(int(match["port"]))
            return match[0] if port is None else f"{match['head']}{port}"

        return _LOOPBACK_URL.sub(moved, text)

    def example(self, example: CodeExample) -> CodeExample:
        """A copy of `example` whose source talks to the tests' servers.

        The `#>` lines are rewritten too, so an example that prints a URL still matches.
        """
        return dataclasses.replace(example, source=self.apply(example.source))

    def __or__(self, other: DocsPorts) -> DocsPorts:
        return DocsPorts({**self.actual, **other.actual})
