"""The README's two set-up commands stay true: the main job runs as written, CI runs the tests."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SETUP = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
COMMANDS = re.findall(r"```bash\n(.*?)\n```", SETUP, flags=re.DOTALL)


def test_the_readme_has_exactly_two_setup_commands() -> None:
    assert len(COMMANDS) == 2
    install_and_run, install_and_test = COMMANDS
    assert ".venv/bin/jib run " in install_and_run
    assert install_and_test == "bash scripts/test.sh"


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


def test_main_job_runs_as_written_into_the_default_store(tmp_path: Path) -> None:
    main_job = COMMANDS[0].split("&&")[-1].strip()
    argv = shlex.split(main_job)
    assert argv[0] == ".venv/bin/jib"
    argv[0] = str(Path(sys.executable).with_name("jib"))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_DATA_HOME": "", "NO_COLOR": "1"}
    env.pop("JIB_STORE", None)
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    store = tmp_path / ".local" / "share" / "jib" / "jib.db"
    assert store.exists()
    prompts = (ROOT / "examples" / "prompts.txt").read_text().splitlines()
    count = sum(1 for line in prompts if line.strip())
    output = done.stdout + done.stderr
    assert f"{count}/{count} done, 0 failed" in output
    assert "openai/gpt-4o-mini" in output  # the real identifiers to swap in


def test_the_main_jobs_offline_commands_run_and_the_second_run_is_cached(tmp_path: Path) -> None:
    main_job = README.split("## The main job", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```text\n(.*?)\n```", main_job, flags=re.DOTALL)[0]
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert lines[0].endswith("--cache") and lines[-1].endswith("--cache")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {**os.environ, "JIB_STORE": str(tmp_path / "jib.db"), "NO_COLOR": "1"}
    jib = str(Path(sys.executable).with_name("jib"))
    outputs = []
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "jib"
        done = subprocess.run(
            [jib, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{line}: {done.stderr}"
        outputs.append(done.stdout + done.stderr)
    prompts = (ROOT / "examples" / "dataset.jsonl").read_text().splitlines()
    count = 2 * sum(1 for line in prompts if line.strip())  # two generators
    assert f"{count} hits, 0 misses" in outputs[-1]
