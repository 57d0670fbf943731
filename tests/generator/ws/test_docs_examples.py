"""The examples of docs/providers/ws.md run as written against the example WebSocket bot.

Its Python examples run with every docs page (tests/test_docs.py, which starts the bot and moves
`ws://127.0.0.1:8766` to its port); here: the spec file and the `jib` command lines, in a
scratch folder, the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from pytest_examples import find_examples

from tests.generator.ws.server import ensure_ws_example_server
from tests.support.docs_ports import WS_EXAMPLE_PORT, DocsPorts

DOC = Path(__file__).resolve().parents[3] / "docs" / "providers" / "ws.md"


def test_ws_page_has_python_examples_for_the_docs_suite() -> None:
    assert len(list(find_examples(str(DOC)))) >= 5


def test_ws_page_spec_file_and_commands_run(tmp_path: Path) -> None:
    server = ensure_ws_example_server()
    ports = DocsPorts.serving({WS_EXAMPLE_PORT: server.url})
    text = DOC.read_text()
    spec_files = re.findall(r"```yaml\n# (\S+\.yaml)\n(.*?)```", text, flags=re.DOTALL)
    assert spec_files, "the page shows a spec file"
    for name, body in spec_files:
        (tmp_path / name).write_text(ports.apply(body))
    blocks = re.findall(r"```bash\n(.*?)\n```", text, flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    assert lines
    env = {**os.environ, "JIB_STORE": str(tmp_path / "jib.db"), "NO_COLOR": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(DOC.parents[2] / "src"), env.get("PYTHONPATH", "")])
    for line in lines:
        assert line.startswith("jib "), line
        command = [sys.executable, "-m", "jib.cli", *shlex.split(ports.apply(line))[1:]]
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        assert "You said: Hello" in done.stdout
