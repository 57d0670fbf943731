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


PROVIDER_MODULES = [
    "jib.generator.http",
    "jib.generator.litellm",
    "jib.generator.transformers",
    "jib.generator.vllm",
]


def test_import_jib_generator_loads_no_provider_module() -> None:
    code = (
        "import sys, jib, jib.generator\n"
        f"print([m for m in {[*PROVIDER_MODULES, *HEAVY]!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_seeds_generator_names_resolve_after_a_bare_import_without_heavy_packages() -> None:
    code = (
        "import sys, jib\n"
        "assert 'jib.generator.http' not in sys.modules\n"
        "print(jib.HTTPGenerator.__name__, jib.LiteLLMGenerator.__name__,\n"
        "      jib.TransformersGenerator.__name__, jib.VLLMGenerator.__name__)\n"
        "g = jib.generator\n"
        "print(g.HTTPGenerator is jib.HTTPGenerator, g.LiteLLMGenerator is jib.LiteLLMGenerator,\n"
        "      g.TransformersGenerator is jib.TransformersGenerator,\n"
        "      g.VLLMGenerator is jib.VLLMGenerator)\n"
        "print(g.HookAction.RETRY == 'retry', sorted(a.value for a in g.HookAction))\n"
        "print([m for m in ('httpx', 'litellm', 'torch', 'transformers', 'vllm') "
        "if m in sys.modules])\n"
        "print(set(g.__all__) <= set(dir(g)), 'generator' in dir(jib))\n"
        "try:\n"
        "    g.NoSuchGenerator\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "HTTPGenerator LiteLLMGenerator TransformersGenerator VLLMGenerator",
        "True True True True",
        "True ['continue', 'raise', 'retry']",
        "[]",
        "True True",
        "module 'jib.generator' has no attribute 'NoSuchGenerator'",
    ]
