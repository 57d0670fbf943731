"""The examples in docs/providers/http.md run as written against the example server.

They name `http://127.0.0.1:8765`; `ensure_example_server()` serves
`tests/generator/http/server.py` on a free port, which is put into each example before it runs
(see tests/test_docs.py for why). By hand: `python -m tests.generator.http.server`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from tests.generator.http.server import ensure_example_server
from tests.support.docs_ports import HTTP_EXAMPLE_PORT, DocsPorts

DOC = Path(__file__).resolve().parents[3] / "docs" / "providers" / "http.md"


@pytest.mark.parametrize("example", list(find_examples(str(DOC))), ids=str)
def test_http_docs_example_runs_and_prints_what_it_claims(
    example: CodeExample, eval_example: EvalExample
) -> None:
    server = ensure_example_server()
    server.state.reset()
    ports = DocsPorts.serving({HTTP_EXAMPLE_PORT: server.url})
    eval_example.run_print_check(ports.example(example))
