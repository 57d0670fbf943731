"""The shell examples of docs/batch_api.md run as written, against the batch API stub.

Each `jib …` line of the page's bash blocks runs in order, in a scratch folder holding a copy of
`examples/`, against a private store, with the stub's documented port (8303) moved to the port
the test's server got. (The page's Python examples run in tests/test_docs.py.)
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.cli.conftest import isolated_env, jib_command
from tests.support.batch_api_server import RunningBatchServer
from tests.support.docs_ports import BATCH_API_PORT, DocsPorts

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "batch_api.md"


def shell_lines() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)\n```", PAGE.read_text(), flags=re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_every_shell_line_of_the_page_runs(
    tmp_path: Path, batch_server: RunningBatchServer
) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    ports = DocsPorts.serving({BATCH_API_PORT: batch_server.url})
    env = isolated_env(tmp_path)
    lines = shell_lines()
    assert lines and all(line.startswith("jib ") for line in lines)
    for line in lines:
        argv = shlex.split(ports.apply(line))
        done = subprocess.run(
            [*jib_command(), *argv[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (line, done.stderr)
        if argv[1] == "batches" and "--all" in argv:
            assert "batch_0001" in done.stdout
    assert len(batch_server.state.created()) == 1  # the resumed run submitted nothing
