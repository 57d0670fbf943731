"""Every Python example in the README and docs/ runs, and prints what it says it prints.

Examples are copied verbatim by readers, so they run as written: offline generators need
nothing, and examples that name self-hosted servers run against servers the `docs_servers`
fixture starts (`transformers serve` on a tiny model, a server speaking Ollama's protocol, and
the HTTP example server).

Those servers take free ports, not the ones the docs name: a developer running vLLM on 8000 or
Ollama on 11434 (jib's own users), or a second test run, must not collide with the suite. Before
an example runs, the port of each loopback URL it names (`http://localhost:8000/v1`,
`http://localhost:11434`, `http://127.0.0.1:8765`) is replaced by the port the matching server
got, in its code and in its `#>` output alike (`tests.support.docs_ports`). That keeps the docs
reading exactly as a reader types them, with the servers' usual ports; reading the URL from an
environment variable instead would put `os.environ[...]` into every example a reader copies.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from tests.support.docs_ports import DocsPorts

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("example", list(find_examples(*map(str, SOURCES))), ids=str)
def test_docs_example_runs_and_prints_what_it_claims(
    example: CodeExample, eval_example: EvalExample, docs_environment: DocsPorts
) -> None:
    eval_example.run_print_check(docs_environment.example(example))


def test_docs_ports_move_only_loopback_urls_on_documented_ports() -> None:
    ports = DocsPorts({8000: 41001, 11434: 41002, 8765: 41003})

    assert ports.apply("api_base=http://localhost:8000/v1,x=1") == (
        "api_base=http://localhost:41001/v1,x=1"
    )
    assert ports.apply('"http://127.0.0.1:8765/v1" http://localhost:11434') == (
        '"http://127.0.0.1:41003/v1" http://localhost:41002'
    )
    unchanged = "http://host:8000/v1 http://localhost:80001 http://127.0.0.1:9/ port 8000"
    assert ports.apply(unchanged) == unchanged
