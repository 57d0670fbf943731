"""LiteLLM loads lazily and, once loaded, stays off the internet.

Each check runs in a fresh Python process, since what matters is what happens the first time.
An audit hook in that process records every socket connection and name lookup.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.support.fault_server import RunningFaultServer
from tests.support.ollama_server import RunningOllama

ROOT = Path(__file__).resolve().parents[3]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

_MARK = "JIB-RESULT "
_PRELUDE = """
import json, logging, sys
def report(data):
    print("JIB-RESULT " + json.dumps(data), flush=True)
events = []
def _audit(event, args):
    if event == "socket.connect":
        address = args[1]
        events.append(["connect", str(address[0]) if isinstance(address, tuple) else str(address)])
    elif event == "socket.getaddrinfo":
        events.append(["lookup", str(args[0])])
sys.addaudithook(_audit)
records = []
class _Keep(logging.Handler):
    def emit(self, record):
        records.append(record.getMessage())
logging.getLogger().addHandler(_Keep(logging.DEBUG))
logging.getLogger().setLevel(logging.DEBUG)
"""


def _run(code: str, **env: str) -> dict[str, Any]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LITELLM_")}
    environment.update(env)
    script = _PRELUDE + textwrap.dedent(code)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith(_MARK)]
    output: dict[str, Any] = json.loads(line[len(_MARK) :])
    output["stderr"] = result.stderr
    return output


def test_import_jib_and_parsing_identifiers_do_not_import_litellm() -> None:
    output = _run(
        """
        import jib
        generator = jib.get_generator("openai/gpt-4o-mini,temperature=0.2,max_connections=4")
        identifier, before = generator.to_identifier(), "litellm" in sys.modules
        generator.load()
        report({"identifier": identifier, "litellm": before, "loaded": "litellm" in sys.modules})
        """
    )

    assert output["identifier"] == "openai/gpt-4o-mini,max_connections=4,temperature=0.2"
    assert output["litellm"] is False
    assert output["loaded"] is True  # load() is where it comes in, if not at the first request


def test_first_litellm_calls_make_no_connection_beyond_loopback(
    fault_server: RunningFaultServer, ollama: RunningOllama
) -> None:
    output = _run(
        f"""
        import asyncio, os
        import jib
        async def main():
            openai = jib.get_generator("openai/stub,api_base={fault_server.url},api_key=sk-test")
            chat = await openai.chat("hello").run()
            completion = await openai.complete("hello").run()
            answers = [chat.content, completion.generated]
            for prefix in ("ollama_chat", "ollama"):
                local = jib.get_generator(prefix + "/tiny,api_base={ollama.url}")
                answers.append((await local.chat("hello").run()).failed)
            return answers
        answers = asyncio.run(main())
        report({{
            "answers": answers,
            "events": events,
            "records": records,
            "setting": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP"),
        }})
        """
    )

    assert output["answers"] == ["hello", "hello", False, False]
    assert output["setting"] == "True"
    assert output["events"], "the audit hook saw no connection at all"
    outside = [event for event in output["events"] if event[1] not in LOOPBACK_HOSTS]
    assert outside == []
    logged = [*output["records"], *output["stderr"].splitlines()]
    # LiteLLM says "Failed to fetch remote model cost map from https://raw.githubusercontent…"
    # and "model cost map fetch attempt 2/3 failed" when it tries (its debug log also says a
    # model is "not in model cost map", which is a lookup in the local copy).
    fetching = [
        line
        for line in logged
        if "raw.githubusercontent.com" in line
        or ("cost map" in line.lower() and any(w in line.lower() for w in ("fetch", "remote")))
    ]
    assert fetching == []


def test_a_cost_map_setting_chosen_by_the_user_is_kept(fault_server: RunningFaultServer) -> None:
    output = _run(
        f"""
        import asyncio, os
        import jib
        generator = jib.get_generator("openai/stub,api_base={fault_server.url},api_key=sk-test")
        asyncio.run(generator.chat("hello").run())
        report({{"setting": os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")}})
        """,
        LITELLM_LOCAL_MODEL_COST_MAP="TRUE",
    )

    assert output["setting"] == "TRUE"


def test_missing_litellm_gives_an_error_that_says_what_to_install() -> None:
    output = _run(
        """
        import asyncio
        sys.modules["litellm"] = None  # as if the package were not installed
        import jib
        generator = jib.get_generator("openai/gpt-4o-mini")
        chat = asyncio.run(generator.chat("hello").run(on_failed="include"))
        report({"type": type(chat.error).__name__, "message": str(chat.error)})
        """
    )

    assert output["type"] == "MissingDependencyError"
    assert 'pip install "jib[litellm]"' in output["message"]
