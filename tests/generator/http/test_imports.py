"""The HTTP provider imports httpx only when it sends, and nothing heavy with `import jib`."""

from __future__ import annotations

import subprocess
import sys


def test_http_identifiers_parse_without_importing_httpx() -> None:
    code = (
        "import sys, jib\n"
        "assert 'jinja2' not in sys.modules and 'httpx' not in sys.modules\n"
        "g = jib.get_generator('http!m,spec=' + 'request: {url: \"http://127.0.0.1:9/\"}'"
        ".replace(' ', '%20').replace(',', '%2C'))\n"
        "print(jib.get_generator(g.to_identifier()) == g, 'httpx' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "True False"
