"""What `jib run` loads: only its own subcommand's code, none of the storage's PostgreSQL or
record-validation machinery for a SQLite run, and the garbage collector left as it was found
(running, nothing frozen, its thresholds as they were)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import isolated_env

NOT_FOR_A_RUN = [
    "jib.cli.batches",
    "jib.cli.cache",
    "jib.cli.chat",
    "jib.cli.compare",
    "jib.cli.export",
    "jib.cli.ident",
    "jib.cli.log",
    "jib.cli.report",
    "jib.cli.runs",
    "jib.cli.spec",
    "jib.cli.spec_import",
    "jib._records",
    "rich.progress",
    "sqlalchemy.dialects.postgresql",
]


def _in_process(tmp_path: Path, argv: list[str]) -> list[str]:
    """`jib.cli.main(argv)` in a fresh interpreter; what it printed after, line by line."""
    code = (
        "import gc, sys\n"
        "before = gc.get_threshold()\n"
        "from jib.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code or 0)\n"
        f"print(sorted(m for m in {NOT_FOR_A_RUN!r} if m in sys.modules))\n"
        "print(gc.isenabled(), gc.get_freeze_count(), gc.get_threshold() == before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-3:]


def test_a_run_loads_only_what_it_uses(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\nworld\n", encoding="utf-8")
    store = tmp_path / "jib.db"
    argv = ["run", "echo!demo", "--prompts", str(prompts), "--store", str(store), "--no-progress"]

    assert _in_process(tmp_path, argv) == ["exit 0", "[]", "True 0 True"]
    assert store.exists()


def test_help_and_usage_errors_leave_the_collector_running(tmp_path: Path) -> None:
    assert _in_process(tmp_path, ["--help"])[::2] == ["exit 0", "True 0 True"]
    assert _in_process(tmp_path, ["rnu"]) == ["exit 2", "[]", "True 0 True"]
    assert _in_process(tmp_path, ["run", "--bogus"])[::2] == ["exit 2", "True 0 True"]
