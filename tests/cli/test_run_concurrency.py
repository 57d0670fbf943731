"""`jib run -c N` keeps N requests in flight unless the identifier caps them: the real CLI in a
subprocess, against an OpenAI-protocol server on 127.0.0.1 that holds its answers until enough
requests are in flight (so what it counts is what the client sent at once)."""

from __future__ import annotations

from pathlib import Path

from jib import get_generator
from jib.storage import open_store
from tests.cli.conftest import JibRunner
from tests.support.holding_server import Holding, holding_server


def write_prompts(folder: Path, count: int) -> Path:
    path = folder / "prompts.txt"
    path.write_text("".join(f"prompt {n}\n" for n in range(count)))
    return path


def target(server: Holding, *options: str) -> str:
    return ",".join((f"openai!m,api_base={server.url}/v1,api_key=x,max_retries=0", *options))


def test_concurrency_raises_the_requests_in_flight_of_an_uncapped_identifier(
    jib: JibRunner, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path, 64)
    with holding_server(hold_for=32) as server:
        result = jib("run", target(server), "-f", str(prompts), "-c", "32", "--no-progress")
    assert result.code == 0, result.stderr
    assert server.posts == 64
    assert server.peak > 10  # the default max_connections no longer caps the run
    assert server.peak == 32


def test_max_connections_in_the_identifier_is_kept_whatever_the_concurrency(
    jib: JibRunner, tmp_path: Path
) -> None:
    prompts = write_prompts(tmp_path, 24)
    with holding_server(hold_for=32) as server:
        capped = target(server, "max_connections=4")
        result = jib("run", capped, "-f", str(prompts), "-c", "32", "--no-progress")
    assert result.code == 0, result.stderr
    assert server.posts == 24
    assert server.peak == 4


def test_the_stored_identifier_does_not_change_so_resume_with_another_concurrency_matches(
    jib: JibRunner, tmp_path: Path
) -> None:
    store = str(tmp_path / "jib.db")
    prompts = write_prompts(tmp_path, 40)
    with holding_server(hold_for=32) as server:
        identifier = target(server)
        first = jib("run", identifier, "-f", str(prompts), "-r", "r", "-c", "32", "--store", store)
        assert first.code == 0, first.stderr
        assert server.peak == 32
        prompts = write_prompts(tmp_path, 50)  # ten more lines; the first forty keep their ids
        resumed = ("-r", "r", "--resume", "--store", store)
        second = jib("run", identifier, "-f", str(prompts), "-c", "16", *resumed)
        assert second.code == 0, second.stderr
    assert server.posts == 50  # the forty stored were skipped
    with open_store(store) as chat_store:
        chats = chat_store.query(run="r")
    assert len(chats) == 50
    unchanged = get_generator(identifier).to_identifier()
    assert "max_connections" not in unchanged
    assert {chat.generator_id for chat in chats} == {unchanged}
