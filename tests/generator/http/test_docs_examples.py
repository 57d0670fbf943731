"""The examples in docs/providers/http.md run as written against the example server.

They name `http://127.0.0.1:8765`, where `ensure_example_server()` serves
`tests/generator/http/server.py` (run it by hand with `python -m tests.generator.http.server`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

from tests.generator.http.server import ensure_example_server

DOC = Path(__file__).resolve().parents[3] / "docs" / "providers" / "http.md"


@pytest.mark.parametrize("example", list(find_examples(str(DOC))), ids=str)
def test_http_docs_example_runs_and_prints_what_it_claims(
    example: CodeExample, eval_example: EvalExample
) -> None:
    ensure_example_server().state.reset()
    eval_example.run_print_check(example)
