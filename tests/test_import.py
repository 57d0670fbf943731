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


def test_public_names_load_on_first_use_and_pipelines_bind_themselves() -> None:
    code = (
        "import asyncio, sys, jib\n"
        "assert 'jib.generator.base' not in sys.modules\n"
        "from jib.testing import EchoGenerator\n"
        "print(asyncio.run(EchoGenerator(model='e').chat('hi').run()).content)\n"
        "print(set(jib.__all__) <= set(dir(jib)))\n"
        "try:\n"
        "    jib.nonexistent\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "hi",
        "True",
        "module 'jib' has no attribute 'nonexistent'",
    ]
