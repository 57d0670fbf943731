"""Every Python example in the README and docs/ runs, and prints what it says it prints.

Examples are copied verbatim by readers, so they run as written: offline generators need
nothing, and examples that name self-hosted servers (`http://localhost:8000/v1`,
`http://localhost:11434`) run against local servers the `docs_servers` fixture starts on those
ports.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_examples import CodeExample, EvalExample, find_examples

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("example", list(find_examples(*map(str, SOURCES))), ids=str)
def test_docs_example_runs_and_prints_what_it_claims(
    example: CodeExample, eval_example: EvalExample, docs_environment: None
) -> None:
    eval_example.run_print_check(example)
