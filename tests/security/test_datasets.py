"""Datasets are data (issue 16 item 14): header checks are linear, and every line and CSV field
has a size limit, so a planted dataset ends in a clear error naming its file and line within
2 s of CPU and 200 MB, in a child process capped to that much memory (`RLIMIT_AS`).

Controls: a wide CSV, a CSV field far over Python's own 128 KiB field limit and a long JSONL line
under the limit still run as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from jib.cli._common import CliError
from jib.cli._prompts import DEFAULT_MAX_LINE, MIB, PromptsFile
from jib.storage import open_store
from tests.cli.conftest import JibRunner, assert_one_clean_error_line, isolated_env, make_runner

CPU_SECONDS = 2.0
MEGABYTES = 200
COLUMNS = 40_000

# Runs `jib ARGS…` in this process after its imports, with the address space capped at what the
# imports took plus MEGABYTES, and reports the CPU time the command itself used.
_CHILD = """
import json, resource, sys, warnings
import jib.cli._app
from jib.cli._app import main

report, megabytes, *argv = sys.argv[1:]
with open("/proc/self/status") as status:
    size = next(int(line.split()[1]) for line in status if line.startswith("VmSize:")) * 1024
cap = size + int(megabytes) * 2**20
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
before = resource.getrusage(resource.RUSAGE_SELF)
code = 0
try:
    main(argv)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
with open(report, "w") as handle:
    json.dump({"code": code, "cpu": cpu}, handle)
"""


@pytest.fixture
def jib(tmp_path: Path) -> JibRunner:
    """`jib ARGS…` in a subprocess whose default store is under `tmp_path`."""
    return make_runner(isolated_env(tmp_path), tmp_path)


@pytest.fixture
def default_store(tmp_path: Path) -> Path:
    """Where `jib` keeps its store in that environment."""
    return tmp_path / "data" / "jib" / "jib.db"


@dataclass
class Capped:
    """What `jib` did in a capped child: exit code, CPU seconds, stderr."""

    code: int
    cpu: float
    stderr: str

    @property
    def last_error_line(self) -> str:
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""


def run_capped(tmp_path: Path, *args: str) -> Capped:
    """`jib ARGS…` in a child capped to MEGABYTES above its imports (see `_CHILD`)."""
    report = tmp_path / "report.json"
    env = {**isolated_env(tmp_path), "MALLOC_ARENA_MAX": "2"}
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(report), str(MEGABYTES), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert report.exists(), completed.stderr
    result = json.loads(report.read_text())
    return Capped(result["code"], result["cpu"], completed.stderr)


def assert_clean_usage_error(result: Capped, *expected: str) -> None:
    assert result.code == 2, result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr
    line = result.last_error_line
    assert line.startswith("error: "), result.stderr
    for text in expected:
        assert text in line, line
    assert result.cpu <= CPU_SECONDS, f"{result.cpu:.2f}s of CPU"


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- the header check is linear ------------------------------------------------------------------


def wide_header(repeat: str | None = None) -> str:
    names = ["prompt", *(f"c{i}" for i in range(1, COLUMNS))]
    if repeat is not None:
        names.append(repeat)
    return ",".join(names)


def test_a_header_of_40k_columns_with_a_repeat_is_refused_within_the_budget(
    tmp_path: Path,
) -> None:
    dataset = write_lines(tmp_path / "wide.csv", wide_header(repeat="c7"), "hi" + "," * COLUMNS)

    result = run_capped(tmp_path, "run", "echo!demo", "-f", str(dataset))

    assert_clean_usage_error(result, "wide.csv line 1: the header row repeats ['c7']")


def test_a_missing_column_among_40k_is_named_without_listing_them_all(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(COLUMNS)]
    dataset = write_lines(tmp_path / "wide.csv", ",".join(names), ",".join(names))

    result = run_capped(tmp_path, "run", "echo!demo", "-f", str(dataset), "--column", "nope")

    assert_clean_usage_error(result, "no column 'nope'", "(40,000 in all)")
    assert len(result.last_error_line) < 1000


def test_control_a_valid_csv_of_40k_columns_is_read_with_every_column(tmp_path: Path) -> None:
    dataset = write_lines(tmp_path / "wide.csv", wide_header(), "hello" + ",x" * (COLUMNS - 1))

    [prompt] = list(PromptsFile(dataset))

    assert prompt.messages[0].content == "hello"
    assert len(prompt.metadata) == COLUMNS - 1 and prompt.metadata["c39999"] == "x"


# -- every line and field has a size limit ---------------------------------------------------------


def test_a_200_mb_jsonl_line_is_refused_within_the_budget(tmp_path: Path) -> None:
    dataset = tmp_path / "big.jsonl"
    with open(dataset, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"prompt": "first"}) + "\n")
        handle.write('{"prompt": "')
        chunk = "a" * MIB
        for _ in range(200):
            handle.write(chunk)
        handle.write('"}\n')

    result = run_capped(tmp_path, "run", "echo!demo", "-f", str(dataset))

    assert_clean_usage_error(
        result,
        "big.jsonl line 2 is longer than 16 MiB (16,777,216 characters), the limit for a line",
        "--max-line-mib",
    )


def test_a_csv_field_over_the_limit_is_refused_naming_its_line(tmp_path: Path) -> None:
    dataset = write_lines(tmp_path / "big.csv", "id,prompt", "a,short", "b," + "x" * (2 * MIB))

    result = run_capped(tmp_path, "run", "echo!demo", "-f", str(dataset), "--max-line-mib", "1")

    assert_clean_usage_error(result, "big.csv line 3 is longer than 1 MiB")


def test_a_quoted_csv_field_over_the_limit_across_short_lines_is_refused(tmp_path: Path) -> None:
    many_lines = "\n".join(["y" * 1000] * 1100)  # 1.1 MB in lines of 1,000 characters
    dataset = write_lines(tmp_path / "multi.csv", "id,prompt", f'a,"{many_lines}"', "b,fine")

    result = run_capped(tmp_path, "run", "echo!demo", "-f", str(dataset), "--max-line-mib", "1")

    assert_clean_usage_error(
        result, "multi.csv line", "a field is longer than 1 MiB (1,048,576 characters)"
    )


def test_control_a_csv_field_over_128_kib_runs_as_a_prompt(
    jib: JibRunner, tmp_path: Path, default_store: Path
) -> None:
    big = "z" * (512 * 1024)  # Python's csv module refuses fields over 128 KiB by default
    dataset = write_lines(tmp_path / "big.csv", "id,prompt", f"q1,{big}")

    result = jib("run", "echo!demo", "-f", str(dataset), "-r", "big")

    assert result.code == 0, result.stderr
    with open_store(default_store) as store:
        [chat] = store.query(run="big", rebuild_generator=False)
    assert chat.content == big


def test_control_a_long_jsonl_line_under_the_limit_is_read(tmp_path: Path) -> None:
    long_prompt = "w" * (4 * MIB)
    dataset = write_lines(tmp_path / "long.jsonl", json.dumps({"id": "x", "prompt": long_prompt}))

    [prompt] = list(PromptsFile(dataset))

    assert prompt.messages[0].content == long_prompt


def test_the_limit_is_settable_and_checked(tmp_path: Path) -> None:
    dataset = write_lines(tmp_path / "d.txt", "short", "l" * 100)

    assert PromptsFile(dataset).count == 2
    assert DEFAULT_MAX_LINE == 16 * MIB
    with pytest.raises(CliError, match=r"d\.txt line 2 is longer than 99 characters"):
        PromptsFile(dataset, max_line=99)
    assert PromptsFile(dataset, max_line=101).count == 2  # the newline is not counted
    with pytest.raises(CliError, match="at least 1 character"):
        PromptsFile(dataset, max_line=0)


def test_the_limit_applies_to_stdin_too(jib: JibRunner) -> None:
    result = jib("run", "echo!demo", "-f", "-", "--max-line-mib", "1", stdin="v" * (MIB + 10))

    assert_one_clean_error_line(result, "stdin line 1 is longer than 1 MiB")


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="needs /proc and rlimits (Linux)")
def test_control_an_ordinary_run_fits_in_the_capped_child(tmp_path: Path) -> None:
    dataset = write_lines(tmp_path / "d.jsonl", json.dumps({"id": "a", "prompt": "hello"}))

    result = run_capped(tmp_path, "run", "echo!demo", "-f", str(dataset), "-r", "ok")

    assert result.code == 0, result.stderr
