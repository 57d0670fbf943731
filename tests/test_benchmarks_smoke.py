"""The benchmarks run: the stub speaks OpenAI's protocol, and each `--smoke` run completes.

The figures themselves are not tested (ratios are not timed tests). The transport smoke run only
has to measure or skip every client, fail none (a wrong answer fails a client), send the image
with every image chat, and write its JSON and its page; the main job's smoke run has to store
and read back every chat of every client (jib `openai!`, jib `echo!`, the floor script), into
SQLite and, when a server is given, PostgreSQL, and write its JSON and its page; the response
cache's smoke run has to fill the cache, then answer every prompt from it with no request.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
ANSWER = "Hello from the stub."


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    """The benchmark stub in its own process; its base URL (without /v1)."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(BENCHMARKS / "openai_stub.py"),
            "--port",
            "0",
            "--chunk-delay-ms",
            "5",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), line
        yield line.removeprefix("listening on ")
    finally:
        process.terminate()
        process.wait(timeout=10)


def events(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def load_script(name: str) -> Any:
    """A sibling script of `benchmarks/` as a module (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stub_answers_chat_and_text_completions_as_json(stub: str) -> None:
    chat = httpx.post(f"{stub}/v1/chat/completions", json={"model": "m", "messages": []}).json()
    text = httpx.post(f"{stub}/v1/completions", json={"model": "m", "prompt": "hi"}).json()

    assert chat["choices"][0]["message"] == {"role": "assistant", "content": ANSWER}
    assert chat["choices"][0]["finish_reason"] == "stop"
    assert chat["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    assert chat["model"] == "m"
    assert text["choices"][0]["text"] == ANSWER
    assert text["object"] == "text_completion"


def test_stub_streams_server_sent_events_with_usage_and_done(stub: str) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = httpx.post(f"{stub}/v1/chat/completions", json=body)

    assert response.headers["content-type"] == "text/event-stream"
    sent = events(response.text)
    assert sent[-1] == "[DONE]"
    chunks = [json.loads(event) for event in sent[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == ANSWER
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 9


def test_stub_streams_text_completions_without_usage_unless_asked(stub: str) -> None:
    body = {"model": "m", "prompt": "hi", "stream": True}
    sent = events(httpx.post(f"{stub}/v1/completions", json=body).text)

    chunks = [json.loads(event) for event in sent[:-1]]
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks) == ANSWER
    assert all("usage" not in chunk for chunk in chunks)


def test_stub_answers_a_chat_carrying_a_1_mib_image_and_counts_its_bytes(stub: str) -> None:
    image = base64.b64encode(bytes(range(256)) * 4096).decode("ascii")
    parts = [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
    ]
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": parts}]}).encode()
    before = httpx.get(f"{stub}/stub/stats").json()

    answer = httpx.post(
        f"{stub}/v1/chat/completions",
        content=body,
        headers={"Content-Type": "application/json"},
    )

    after = httpx.get(f"{stub}/stub/stats").json()
    assert len(image) == 1_398_104
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"] == ANSWER
    assert after["completions"] - before["completions"] == 1
    assert after["completion_bytes"] - before["completion_bytes"] == len(body)


def test_stub_records_when_it_sent_a_slow_streams_first_chunk(stub: str) -> None:
    body = {"model": "slow-stream", "messages": [{"role": "user", "content": "key 1"}]}
    asked = time.monotonic()
    with httpx.stream(
        "POST", f"{stub}/v1/chat/completions", json={**body, "stream": True}
    ) as response:
        lines = response.iter_lines()
        first = next(lines)
        received = time.monotonic()
        rest = list(lines)

    sent = httpx.get(f"{stub}/stub/first-chunks").json()
    assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"]["content"] == "Hello"
    assert "data: [DONE]" in rest
    # Stamped on the client's clock, between the request going out and its first chunk arriving.
    assert asked <= sent["key 1"] <= received
    assert httpx.post(f"{stub}/stub/reset").json() == {"reset": True}
    assert httpx.get(f"{stub}/stub/first-chunks").json() == {}


def test_stub_rejects_what_it_cannot_answer_with_openai_style_errors(stub: str) -> None:
    missing = httpx.get(f"{stub}/v1/models")
    wrong_method = httpx.get(f"{stub}/v1/chat/completions")
    not_json = httpx.post(f"{stub}/v1/chat/completions", content=b"{nope")
    not_object = httpx.post(f"{stub}/v1/chat/completions", content=b"[1, 2]")

    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no route GET /v1/models"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["message"] == "/v1/chat/completions takes POST, not GET"
    for response in (not_json, not_object):
        assert response.status_code == 400
        assert response.json()["error"]["message"] == "the request body is not a JSON object"


def test_stub_asks_for_a_content_length_on_chunked_bodies(stub: str) -> None:
    def chunked() -> Iterator[bytes]:
        yield b'{"model": "m"}'

    response = httpx.post(f"{stub}/v1/chat/completions", content=chunked())

    assert response.status_code == 411
    assert response.json()["error"]["message"] == (
        "send the request body with a Content-Length header"
    )


def test_report_of_a_result_from_before_the_image_measurement_says_it_was_not_measured() -> None:
    # `run_all.py --report-only` reads whatever transport.json is on disk, perhaps an old one.
    report = load_script("transport_report")
    result = json.loads((BENCHMARKS / "results" / "transport.json").read_text())
    result.pop("image", None)

    rows = report.acceptance_rows(result)
    page = report.markdown(result, "chart.png", None)

    name = "CPU per request with a 1 MiB image, jib `openai!` / raw aiohttp"
    assert [name, "—", "≤ 1.5×", "not measured: this result predates the image measurement"] in rows
    assert "## A chat carrying" not in page


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_smoke_run_measures_or_skips_every_client_and_writes_its_json(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "transport.py"), "--smoke", "--out-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "transport_smoke.json").read_text())
    batch = result["batch"]
    assert batch["failed"] == {}
    measured = {cell["client"] for cell in batch["cells"]}
    assert {"raw_aiohttp", "httpx", "openai_sdk", "litellm", "jib_litellm", "jib_http"} <= measured
    assert "jib_openai" in measured | set(batch["skipped"])
    assert result["first_delta"]["failed"] == {}
    assert result["run_batch_rss"]["failed"] == {}
    assert result["imports"]["failed"] == {}
    image = result["image"]
    assert image["failed"] == {}
    assert image["skipped"] == {}
    rows = {row["client"]: row for row in image["rows"]}
    assert set(rows) == {"raw_aiohttp", "jib_openai"}
    for row in rows.values():
        # Every one of the 20 chats answered right (a worker fails on a wrong answer), and the
        # stub received the image's base64 (1,398,104 bytes) with every chat.
        assert row["requests"] == 20
        assert row["cpu_us_per_request"] > 0
        assert 1_398_104 < row["body_bytes_per_request"] < 1_400_000
    page = (tmp_path / "transport_smoke.md").read_text()
    assert "## Acceptance (issues 11 and 18)" in page
    check = "CPU per request with a 1 MiB image, jib `openai!` / raw aiohttp, 8 in flight"
    assert f"| {check} |" in page
    assert "## A chat carrying a 1 MiB image" in page
    assert "```python" not in page


def test_main_job_report_says_why_postgresql_was_not_measured() -> None:
    report = load_script("main_job_report")
    row = {"chats": 10, "runs": 1, "wall_s": 2.0, "cpu_s": 1.0, "chats_per_s": 5.0}
    result = {
        "rows": [
            {**row, "client": "floor", "store": "sqlite"},
            {**row, "client": "jib_openai", "store": "sqlite", "wall_s": 3.0, "cpu_s": 2.0},
        ],
        "failed": {"jib_echo/sqlite": "exit status 1: boom"},
        "stores": ["sqlite"],
        "postgres_note": "skipped: no PostgreSQL (give --postgres URL)",
    }

    checks = {check["check"]: check for check in report.acceptance(result)}

    assert checks["wall time, jib `openai!` / floor, SQLite"]["shown"] == "1.50×"
    assert checks["wall time, jib `openai!` / floor, SQLite"]["result"] == "pass"
    assert checks["CPU time, jib `openai!` / floor, SQLite"]["result"] == "**FAIL**"
    assert checks["chats/s, jib `echo!`, SQLite"]["result"] == ("**failed**: exit status 1: boom")
    assert checks["wall time, jib `openai!`, PostgreSQL / SQLite"]["result"] == (
        "not measured: no PostgreSQL (give --postgres URL)"
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_main_job_smoke_run_stores_every_chat_of_every_client_and_writes_its_json(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "main_job.py"), "--smoke", "--out-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=550,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "main_job_smoke.json").read_text())
    assert result["failed"] == {}
    # PostgreSQL runs when $JIB_TEST_POSTGRES_URL names a server, else it says why not.
    if "postgres" not in result["stores"]:
        assert result["postgres_note"].startswith("skipped: no PostgreSQL")
    rows = {(row["client"], row["store"]): row for row in result["rows"]}
    clients = ("floor", "jib_openai", "jib_echo")
    assert set(rows) == {(client, store) for client in clients for store in result["stores"]}
    for row in rows.values():
        # Read back from the run's own store: 300 chats, one per prompt, each answer right.
        assert row["stored_chats"] == [300]
        assert row["wall_s"] > 0
        assert row["cpu_s"] > 0
        assert row["peak_rss_mb"] > 0
    page = (tmp_path / "main_job_smoke.md").read_text()
    assert "## Acceptance (issue 19)" in page
    assert "| wall time, jib `openai!` / floor, SQLite |" in page


def test_response_cache_smoke_run_sends_nothing_the_second_time_and_writes_its_json(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [
            *(sys.executable, str(BENCHMARKS / "response_cache.py")),
            *("--smoke", "--out-dir", str(tmp_path)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=550,
        check=False,
    )

    # The benchmark checks each run itself: every chat stored and right, marked as cached in
    # the cached re-run, and the stub's count of requests (all of them, then none).
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "response_cache_smoke.json").read_text())
    (scenarios,) = result["rounds_figures"]
    assert set(scenarios) == {"instant", "model"}  # the stub answering at once, and later
    for figures in scenarios.values():
        sent = [figures[run]["requests"] for run in ("plain", "filling", "cached")]
        assert sent == [300, 300, 0]
    assert len(result["acceptance"]) == 3
    assert not (tmp_path / "benchmarks.md").exists()  # a smoke run leaves the docs alone
