"""The LiteLLM path reads at most `max_response_bytes` per request (issue 16, item 7).

Before, a ~1 MB gzip answer took LiteLLM to 1.3-2.3 GB and a 1 GB SSE line to 688 MB. Here a
hostile server on 127.0.0.1 (`hostile_llm_server.py`) sends gzip bombs, endless lines, huge
bodies and endless streams to the three routes jib documents for self-hosted servers, streamed
and not, each beside a normal item of the same batch.

Those cases run in a child process (`litellm_bounds_child.py`) whose address space is capped.
Importing jib and LiteLLM costs the child about 210 MB of RSS and 260 MB of address space; after
warming its generators up (clients, threads, LiteLLM's caches) it holds about 260 MB of RSS and
580-670 MB of address space. It then caps `RLIMIT_AS` at what it has mapped plus `HEADROOM_MB`
(200 MB), so an answer that is not bounded ends in a `MemoryError` instead of a clean jib
error, and reports each case's CPU time (bounded by `CPU_SECONDS`; no wall-clock bound).

The other tests run in this process with a small bound: every provider whose route jib bounds
(docs/providers/litellm.md), decoding, and the bound's life across copies.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jib
from jib.errors import InvalidGeneratorError, JibError, ProcessingError
from jib.generator.litellm import LiteLLMGenerator
from tests.security.hostile_llm_server import RunningHostile, gzip_bomb, run_hostile_server

ROOT = Path(__file__).resolve().parents[2]
HEADROOM_MB = 200
CPU_SECONDS = 2.0
SMALL = 64 * 1024
KEY = "sk-test-key-4242"

ROUTES = ["openai", "hosted_vllm", "ollama_chat"]
HOSTILE = [
    "chat-bomb",
    "chat-line",
    "chat-big",
    "chat-declared",
    "stream-bomb",
    "stream-line",
    "stream-big",
    "stream-tiny",
    "text-bomb",
    "text-line",
]
CONTROLS = {
    "control-chat": "echo: hello",
    "control-stream": "echo: hello",
    "control-text": "echo: hello",
    "control-chat-gzip": "echo: hello gzip",
    "control-stream-gzip": "echo: hello gzip",
    "control-chat-under": "a" * 40,
    "control-chat-under-gzip": "a" * 40,
    "control-stream-under": "0000000001" + "a" * 30,
}

# Every provider whose route jib bounds, as `_clients` lists them.
BOUNDED_PROVIDERS = [
    "openai",
    "text-completion-openai",
    "perplexity",
    "deepinfra",
    "lm_studio",
    "llamafile",
    "hosted_vllm",
    "ollama",
    "ollama_chat",
    "anthropic",
    "gemini",
    "mistral",
    "groq",
    "deepseek",
    "together_ai",
    "openrouter",
    "xai",
    "fireworks_ai",
]


@pytest.fixture(scope="module")
def hostile() -> Iterator[RunningHostile]:
    gzip_bomb()  # made once, before any child's clock runs
    with run_hostile_server() as server:
        yield server


@pytest.fixture
def server(hostile: RunningHostile, monkeypatch: pytest.MonkeyPatch) -> RunningHostile:
    """The hostile server, with its counts cleared; LiteLLM's Ollama model lookups go there
    too (not to whatever listens on localhost:11434)."""
    monkeypatch.setenv("OLLAMA_API_BASE", hostile.origin)
    with hostile.state.lock:
        hostile.state.paths.clear()
    return hostile


_children: dict[str, dict[str, Any]] = {}


def child_results(server: RunningHostile, route: str) -> dict[str, Any]:
    """What the capped child reported for `route` (run once per route)."""
    if route not in _children:
        env = {
            **os.environ,
            "OLLAMA_API_BASE": server.origin,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        }
        command = [sys.executable, "-m", "tests.security.litellm_bounds_child"]
        done = subprocess.run(
            [*command, server.origin, route, str(HEADROOM_MB)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        _children[route] = json.loads(done.stdout.strip().splitlines()[-1])
    return _children[route]


# -- the capped child ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE)
@pytest.mark.parametrize("route", ROUTES)
def test_a_hostile_answer_fails_its_item_alone_within_the_budget(
    hostile: RunningHostile, route: str, case: str
) -> None:
    result = child_results(hostile, route)["cases"][case]

    assert "raised" not in result, result
    first = result["first"]
    assert first["failed"] and first["error_type"] == "ProcessingError", first
    assert "max_response_bytes=" in first["message"]
    assert result["neighbour_ok"], "the other item of the batch lost its answer"
    assert result["cpu_s"] < CPU_SECONDS, result


@pytest.mark.parametrize("case", list(CONTROLS))
@pytest.mark.parametrize("route", ROUTES)
def test_normal_answers_and_answers_just_under_the_bound_still_work(
    hostile: RunningHostile, route: str, case: str
) -> None:
    result = child_results(hostile, route)["cases"][case]

    assert "raised" not in result, result
    first = result["first"]
    assert not first["failed"], first
    assert first["content_start"].startswith(CONTROLS[case])
    assert result["neighbour_ok"]
    if "under" in case:  # within a few KiB of the bound (the padding of the answer)
        assert first["content_length"] > (300_000 if "stream" in case else 16_700_000)


@pytest.mark.parametrize("route", ROUTES)
def test_the_child_stays_within_its_headroom_of_memory(hostile: RunningHostile, route: str) -> None:
    report = child_results(hostile, route)
    peak = max(result["peak_rss_mb"] for result in report["cases"].values())

    assert peak - report["baseline"]["rss_mb"] < HEADROOM_MB, report["baseline"]


# -- every bounded route, in this process -------------------------------------------------------


def _generator(server: RunningHostile, provider: str, extra: str = "") -> jib.Generator:
    base = server.origin if provider.startswith("ollama") else f"{server.origin}/v1"
    return jib.get_generator(
        f"{provider}/m,api_base={base},api_key={KEY},max_response_bytes={SMALL}{extra}"
    )


async def _outcome(generator: jib.Generator, how: str, prompt: str) -> Any:
    if how == "stream":
        stream = generator.chat(prompt).stream(on_failed="include")
        async for _ in stream:
            pass
        return stream.chat
    if how == "text":
        return await generator.complete(prompt).run(on_failed="include")
    return await generator.chat(prompt).run(on_failed="include")


@pytest.mark.parametrize("how", ["chat", "stream", "text"])
@pytest.mark.parametrize("provider", BOUNDED_PROVIDERS)
async def test_every_bounded_route_stops_at_the_bound(
    server: RunningHostile, provider: str, how: str
) -> None:
    record = await _outcome(_generator(server, provider), how, "line")

    assert record.failed and isinstance(record.error, ProcessingError), record.error
    assert f"max_response_bytes={SMALL} " in str(record.error)
    assert KEY not in str(record.error)
    # Not retried: the same answer would come back.
    assert sum(server.state.paths.values()) - server.state.paths["/api/show"] == 1


@pytest.mark.parametrize("how", ["chat", "stream", "text"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate", "rawdeflate"])
async def test_encoded_answers_decode_as_before(
    server: RunningHostile, encoding: str, how: str
) -> None:
    record = await _outcome(_generator(server, "openai"), how, f"hello {encoding}")

    assert not record.failed, record.error
    assert record.content == f"echo: hello {encoding}"


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm", "ollama_chat"])
async def test_decompressed_bytes_count_towards_the_bound(
    server: RunningHostile, provider: str
) -> None:
    generator = _generator(server, provider)
    under = await _outcome(generator, "chat", f"under:{SMALL} gzip")
    bomb = await _outcome(generator, "chat", "bomb")

    assert not under.failed and len(under.content) > SMALL - 4096, under.error
    assert bomb.failed and isinstance(bomb.error, ProcessingError)
    assert "(its bytes after decompression, plus 512 for each line)" in str(bomb.error)


async def test_each_line_of_a_stream_counts_towards_the_bound(server: RunningHostile) -> None:
    generator = _generator(server, "openai")
    under = await _outcome(generator, "stream", f"under:{SMALL}")
    tiny = await _outcome(generator, "stream", "tiny")

    assert not under.failed, under.error
    assert tiny.failed and isinstance(tiny.error, ProcessingError)
    assert str(tiny.error) == (
        f"the response stream is over max_response_bytes={SMALL} (its bytes after "
        "decompression, plus 512 for each line); stopped reading it"
    )


async def test_a_declared_length_over_the_bound_fails_before_reading(
    server: RunningHostile,
) -> None:
    record = await _outcome(_generator(server, "hosted_vllm"), "chat", "declared")

    assert isinstance(record.error, ProcessingError)
    assert str(record.error) == (
        f"the response body is {10 * (1 << 30)} bytes; max_response_bytes={SMALL}"
    )


async def test_an_encoding_jib_cannot_bound_is_refused(server: RunningHostile) -> None:
    record = await _outcome(_generator(server, "openai"), "chat", "br")

    assert isinstance(record.error, ProcessingError)
    assert str(record.error) == (
        "the server answered with Content-Encoding 'br', which jib did not ask for and cannot "
        "decode within max_response_bytes"
    )


@pytest.mark.parametrize("provider", ["openai", "ollama_chat"])
async def test_a_body_that_does_not_decode_is_a_jib_error(
    server: RunningHostile, provider: str
) -> None:
    record = await _outcome(_generator(server, provider), "chat", "corrupt")

    assert record.failed and isinstance(record.error, JibError)
    assert not isinstance(record.error, ProcessingError)


# -- the bound's life ---------------------------------------------------------------------------


def test_max_response_bytes_defaults_to_16_mib_and_must_be_positive() -> None:
    assert LiteLLMGenerator(model="m").max_response_bytes == 16 * 1024 * 1024
    generator = jib.get_generator("openai/m,max_response_bytes=1024")
    assert generator.to_identifier() == "openai/m,max_response_bytes=1024"
    for value in ("0", "-1", "many"):
        with pytest.raises(InvalidGeneratorError, match="max_response_bytes"):
            jib.get_generator(f"openai/m,max_response_bytes={value}")


async def test_copies_and_pickles_keep_their_own_bound(server: RunningHostile) -> None:
    generator = _generator(server, "openai")
    assert not (await _outcome(generator, "chat", "hello")).failed  # clients now exist

    restored = pickle.loads(pickle.dumps(generator))
    larger = generator.model_copy(update={"max_response_bytes": 4 * SMALL})

    twice = f"under:{2 * SMALL}"
    assert isinstance((await _outcome(restored, "chat", "line")).error, ProcessingError)
    assert not (await _outcome(larger, "chat", twice)).failed
    assert isinstance((await _outcome(generator, "chat", twice)).error, ProcessingError)


async def test_other_users_of_litellm_keep_their_own_clients(server: RunningHostile) -> None:
    import litellm

    generator = _generator(server, "openai")
    bounded = await _outcome(generator, "chat", f"under:{4 * SMALL}")

    response = await litellm.acompletion(
        model="openai/m",
        api_base=f"{server.origin}/v1",
        api_key=KEY,
        messages=[{"role": "user", "content": f"under:{4 * SMALL}"}],
    )

    assert isinstance(bounded.error, ProcessingError)
    assert len(response.choices[0].message.content) > 3 * SMALL
    assert litellm.aclient_session is None


async def test_a_provider_litellm_does_not_know_fails_as_before(server: RunningHostile) -> None:
    generator = jib.get_generator("nosuchprovider/m,max_retries=0")

    chat = await generator.chat("hello").run(on_failed="include")

    assert chat.failed and isinstance(chat.error, JibError), chat.error


async def test_a_per_call_ssl_verify_gets_its_own_bounded_client(server: RunningHostile) -> None:
    generator = _generator(server, "hosted_vllm")
    params = jib.GenerateParams(extra={"ssl_verify": False})

    normal = await generator.chat("hello", params).run(on_failed="include")
    hostile = await generator.chat("line", params).run(on_failed="include")

    assert normal.content == "echo: hello"
    assert isinstance(hostile.error, ProcessingError)
