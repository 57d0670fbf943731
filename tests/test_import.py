"""`import jib` stays light: no heavy or provider-only packages at import time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = [
    "litellm",
    "torch",
    "transformers",
    "vllm",
    "httpx",
    "jinja2",
    "sqlalchemy",
    "typer",
    "rich",
    "pandas",
    "asyncio",
]


def test_import_jib_does_not_import_heavy_packages() -> None:
    code = f"import sys, jib; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_identifier_of_a_local_model_needs_no_torch() -> None:
    code = (
        "import sys, jib; g = jib.get_generator('vllm!m,gpu_memory_utilization=0.3'); "
        "print(g.to_identifier()); print([m for m in ('torch', 'vllm', 'transformers') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["vllm!m,gpu_memory_utilization=0.3", "[]"]
