"""Fixtures for the CLI tests: `jib` run as a real subprocess with an isolated environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.storage.postgres import empty_postgres, postgres_url
from tests.support.fault_server import RunningFaultServer, run_fault_server

__all__ = ["postgres_url"]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PROMPTS = REPO / "examples" / "prompts.txt"


def jib_command() -> list[str]:
    """The installed `jib` console script, or `python -m jib.cli` when it is not on disk."""
    script = Path(sys.executable).parent / "jib"
    if script.exists():
        return [str(script)]
    found = shutil.which("jib")
    return [found] if found else [sys.executable, "-m", "jib.cli"]


@dataclass
class Result:
    """What a `jib` process did."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as JSON."""
        return json.loads(self.stdout)

    @property
    def last_error_line(self) -> str:
        """The last line of stderr."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


JibRunner = Callable[..., Result]


def isolated_env(folder: Path) -> dict[str, str]:
    """An environment whose default store lives under `folder` (no JIB_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIB_")}
    env.update(
        {
            "XDG_DATA_HOME": str(folder / "data"),
            "HOME": str(folder / "home"),
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def make_runner(env: dict[str, str], cwd: Path) -> JibRunner:
    """A function running `jib ARGS…` in a subprocess in `cwd`, bounded by a timeout.

    `stdin="…"` feeds that text to the process; by default it reads an empty stdin.
    """

    def run(
        *args: str,
        env_update: dict[str, str] | None = None,
        timeout: float = 120,
        stdin: str | None = None,
    ) -> Result:
        completed = subprocess.run(
            [*jib_command(), *args],
            capture_output=True,
            text=True,
            env={**env, **(env_update or {})},
            cwd=cwd,
            timeout=timeout,
            **({"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}),
        )
        return Result(completed.returncode, completed.stdout, completed.stderr)

    return run


@pytest.fixture
def jib_env(tmp_path: Path) -> dict[str, str]:
    """An environment where the default store lives in this test's temporary folder."""
    return isolated_env(tmp_path)


@pytest.fixture
def default_store(tmp_path: Path) -> Path:
    """Where `jib` puts its store in `jib_env` (the default location under XDG_DATA_HOME)."""
    return tmp_path / "data" / "jib" / "jib.db"


@pytest.fixture
def jib(jib_env: dict[str, str], tmp_path: Path) -> JibRunner:
    """Run `jib ARGS…` in a subprocess (cwd: the test's temporary folder); bounded by a timeout.

    `env_update={…}` adds environment variables for one call.
    """
    return make_runner(jib_env, tmp_path)


@pytest.fixture
def prompts_file(tmp_path: Path) -> Path:
    """A copy of the example prompts file shipped in the repository (8 prompts)."""
    target = tmp_path / "prompts.txt"
    shutil.copy(EXAMPLE_PROMPTS, target)
    return target


@pytest.fixture
def fault_server() -> Iterator[RunningFaultServer]:
    """The OpenAI-protocol test server on 127.0.0.1 (echoes prompts; faults on request)."""
    with run_fault_server() as server:
        yield server


@pytest.fixture
def postgres_store(postgres_url: str) -> str:
    """The URL of an emptied PostgreSQL database (skip/fail rules in tests.storage.postgres)."""
    return empty_postgres(postgres_url)


def assert_one_clean_error_line(result: Result, *expected: str) -> None:
    """A failure reported as one `error: …` line, no traceback, non-zero exit."""
    assert result.code != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    line = result.last_error_line
    assert line.startswith("error: "), result.stderr
    for text in expected:
        assert text in line, line
