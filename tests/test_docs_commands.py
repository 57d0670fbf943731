"""The shell examples of docs/cli.md and docs/response_cache.md run as written (those that need
no real model or server).

Each `jib …` line of the page's bash blocks runs in order, in a scratch folder holding a copy of
`examples/`, against a private store. Lines that need something only a reader has — a hosted
model, a model server, a PostgreSQL host, a placeholder id or file — are listed with the reason
instead of silently dropped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli.md"
CACHE_PAGE = ROOT / "docs" / "response_cache.md"

NEEDS_THE_READER = {
    "openai/": "a hosted model and its key",
    "ollama_chat/": "an Ollama server",
    "postgresql": "the reader's PostgreSQL host",
    "3f2a9c1e": "a placeholder chat id",
    "spec.yaml": "the reader's spec file",
    "spec=…": "a placeholder spec",
}


def shell_lines(page: Path = PAGE) -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", page.read_text(), flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def runnable(line: str) -> bool:
    # `echo … | jib …` pipes a prompt into jib, as a reader would.
    is_jib = line.startswith("jib ") or re.match(r"echo [^|]*\| jib ", line) is not None
    return is_jib and not any(marker in line for marker in NEEDS_THE_READER)


def test_every_shell_line_is_run_or_says_why_not() -> None:
    for line in shell_lines():
        if not runnable(line):
            assert line.startswith(("jib ", "export ", "OPENAI_API_KEY=", "python ")), line
            assert line.startswith("python ") or any(m in line for m in NEEDS_THE_READER), line


def run_in_order(lines: list[str], tmp_path: Path) -> dict[str, str]:
    """Run each line with bash in `tmp_path` (holding a copy of `examples/`); stdout by line."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "JIB_STORE": str(tmp_path / "jib.db"),
        "NO_COLOR": "1",
        "MY_KEY": "not-a-real-key",
    }
    outputs: dict[str, str] = {}
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"{line!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        outputs[line] = done.stdout + done.stderr
    return outputs


def test_cli_page_examples_run_in_order(tmp_path: Path) -> None:
    lines = [line for line in shell_lines() if runnable(line)]
    assert len(lines) >= 15
    run_in_order(lines, tmp_path)
    assert (tmp_path / "nightly.csv").stat().st_size > 0
    assert (tmp_path / "nightly.parquet").stat().st_size > 0
    assert len((tmp_path / "nightly.jsonl").read_text().splitlines()) == 8


def test_response_cache_page_examples_run_in_order(tmp_path: Path) -> None:
    lines = shell_lines(CACHE_PAGE)
    assert all(runnable(line) for line in lines)
    outputs = run_in_order(lines, tmp_path)
    second = next(line for line in lines if "--run tuesday" in line)
    assert "8 hits, 0 misses" in outputs[second]
    assert "8/8" in outputs["jib runs"]  # tuesday's requests, all answered from the cache
    assert "deleted 0 answers" in outputs["jib cache clear --older-than 30d"]
