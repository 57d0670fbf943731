"""`ws!` against a real WebSocket chatbot: whole answers, skipped frames, the three ways an
answer ends, dropped connections retried, sessions, identifiers and spec files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import jib
from jib.cli._spec_files import expand_spec_file
from jib.errors import ProcessingError, ProviderConnectionError, ProviderTimeoutError
from jib.generator.ws import WSGenerator, WSSpec
from tests.generator.ws.server import RunningWSServer

SKIP_TYPING_AND_ACKS = {"regex": '"type": *"(typing|ack)"'}


def chat_spec(url: str, **response: Any) -> dict[str, Any]:
    """The spec of the `/chat` route: JSON frames, chunks joined, `{"type": "end"}` ends."""
    return {
        "request": {"url": f"{url}/chat", "message": {"text": "$content"}},
        "response": {
            "transforms": [{"type": "jsonpath", "pattern": "$.text"}],
            "skip": SKIP_TYPING_AND_ACKS,
            "done": {"jsonpath": "$.type", "equals": "end"},
            **response,
        },
    }


async def test_batch_of_100_chats_comes_back_whole_with_a_fifth_of_connections_dropped(
    ws_server: RunningWSServer,
) -> None:
    spec = chat_spec(ws_server.url)
    spec["request"]["url"] += "?drop=5"  # every 5th connection breaks half-way through
    generator = WSGenerator(model="bot", spec=spec, retry_backoff=0)

    prompts = [f"prompt number {i}" for i in range(100)]
    chats = await generator.chat().run_batch(prompts)

    assert [chat.content for chat in chats] == [f"You said: {p}" for p in prompts]
    assert not any(chat.failed for chat in chats)
    state = ws_server.state
    assert state.dropped == state.connections // 5 >= 20
    assert state.connections == 100 + state.dropped  # each drop retried once, on a new one
    assert len(state.received) == state.connections  # one prompt per connection
    assert set(state.received) == set(prompts)
    assert sum((chat.attempts or 0) - 1 for chat in chats) == state.dropped


async def test_typing_indicators_acks_and_pings_are_not_part_of_the_answer(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(model="bot", spec=chat_spec(ws_server.url))

    chat = await generator.chat("a rather long prompt, split over many frames")

    assert chat.content == "You said: a rather long prompt, split over many frames"
    assert chat.extra["frames"] > 10  # typing, the pieces, the ack and the end


async def test_a_frame_that_is_not_the_answer_and_not_skipped_fails_saying_to_set_skip(
    ws_server: RunningWSServer,
) -> None:
    spec = chat_spec(ws_server.url)
    del spec["response"]["skip"]
    generator = WSGenerator(model="bot", spec=spec, max_retries=0)

    with pytest.raises(ProcessingError, match=r"set response\.skip"):
        await generator.chat("hi").run()


async def test_done_by_marker_keeps_the_text_before_the_marker(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(
        model="bot",
        spec={
            "request": {"url": f"{ws_server.url}/marker", "message": "{{ content }}"},
            "response": {"skip": {"regex": r"^\.\.\.$"}, "done": {"marker": "[END]"}},
        },
    )

    chats = await generator.chat().run_batch(["one", "two two"])

    assert [chat.content for chat in chats] == ["You said: one", "You said: two two"]


async def test_done_by_idle_gap_ends_the_answer_when_the_bot_goes_quiet(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(
        model="bot",
        spec={
            "request": {"url": f"{ws_server.url}/idle", "message": "{{ content }}"},
            "response": {"idle_timeout": 0.3},
        },
    )

    chat = await generator.chat("quiet after this")

    assert chat.content == "You said: quiet after this"


async def test_an_answer_that_never_ends_runs_into_the_request_timeout(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(
        model="bot",
        spec={
            "request": {"url": f"{ws_server.url}/idle", "message": "{{ content }}"},
            "response": {"done": {"marker": "[END]"}},
        },
    )

    with pytest.raises(ProviderTimeoutError):
        await generator.chat("hi").with_(timeout=0.5).run()


async def test_done_by_regex_condition(ws_server: RunningWSServer) -> None:
    spec = chat_spec(ws_server.url, done={"regex": '"type": *"end"'})
    generator = WSGenerator(model="bot", spec=spec)

    assert (await generator.chat("regex")).content == "You said: regex"


async def test_a_connection_dropped_mid_answer_fails_retryable_when_retries_are_off(
    ws_server: RunningWSServer,
) -> None:
    spec = chat_spec(ws_server.url)
    spec["request"]["url"] += "?drop=1"  # every connection breaks
    generator = WSGenerator(model="bot", spec=spec, max_retries=0)

    with pytest.raises(
        ProviderConnectionError, match="closed while the answer was awaited"
    ) as info:
        await generator.chat("hi").run()
    assert info.value.retryable


async def test_session_connection_carries_a_conversation_and_only_the_new_message(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(
        model="bot",
        spec={
            "request": {
                "url": f"{ws_server.url}/session",
                "message": "{{ content }}",
                "connection": "session",
            },
            "response": {"done": {"marker": "[END]"}},
        },
    )

    chat = await generator.chat("first")
    for word in ("second", "third"):
        chat = await chat.continue_(word)
    other = await generator.chat("another conversation")

    assert chat.content == "turn 3: You said: third"
    assert other.content == "turn 1: You said: another conversation"
    assert ws_server.state.connections == 2  # one per conversation
    assert ws_server.state.received == ["first", "second", "third", "another conversation"]
    await generator.aclose()


async def test_chat_connection_opens_one_connection_per_turn(ws_server: RunningWSServer) -> None:
    generator = WSGenerator(
        model="bot",
        spec={
            "request": {"url": f"{ws_server.url}/session", "message": "{{ content }}"},
            "response": {"done": {"marker": "[END]"}},
        },
    )

    chat = await generator.chat("first")
    chat = await chat.continue_("second")

    assert chat.content == "turn 1: You said: second"
    assert ws_server.state.connections == 2


async def test_identifier_round_trips_and_the_rebuilt_generator_answers(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(model="bot", spec=chat_spec(ws_server.url), max_connections=4)

    identifier = generator.to_identifier()
    rebuilt = jib.get_generator(identifier)

    assert identifier.startswith("ws!bot,spec=")
    assert isinstance(rebuilt, WSGenerator)
    assert rebuilt == generator
    assert rebuilt.to_identifier() == identifier
    assert (await rebuilt.chat("again")).content == "You said: again"


async def test_stored_chat_reloads_its_ws_generator(ws_server: RunningWSServer) -> None:
    generator = WSGenerator(model="bot", spec=chat_spec(ws_server.url))
    chat = await generator.chat("keep me")

    reloaded = jib.Chat.from_json(chat.to_json())

    assert isinstance(reloaded.generator, WSGenerator)
    assert reloaded.generator.spec == generator.spec


async def test_spec_file_is_read_as_a_websocket_spec(
    ws_server: RunningWSServer, tmp_path: Path
) -> None:
    spec_file = tmp_path / "bot.yaml"
    spec_file.write_text(WSSpec.model_validate(chat_spec(ws_server.url)).to_yaml())

    generator = jib.get_generator(expand_spec_file(f"ws!bot,spec=@{spec_file}"))

    assert isinstance(generator, WSGenerator)
    assert (await generator.chat("from a file")).content == "You said: from a file"


def test_http_spec_file_is_still_read_as_an_http_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "http.yaml"
    spec_file.write_text("request: {url: 'http://127.0.0.1:9/x'}\n")

    generator = jib.get_generator(expand_spec_file(f"http!x,spec=@{spec_file}"))

    assert type(generator).__name__ == "HTTPGenerator"


async def test_completion_sends_the_text_as_the_content(ws_server: RunningWSServer) -> None:
    generator = WSGenerator(model="bot", spec=chat_spec(ws_server.url))

    completion = await generator.complete("plain text").run()

    assert completion.content == "You said: plain text"


async def test_a_frame_over_max_response_bytes_fails_without_retries(
    ws_server: RunningWSServer,
) -> None:
    generator = WSGenerator(model="bot", spec=chat_spec(ws_server.url), max_response_bytes=10)

    chat = await generator.chat("hi").run(on_failed="include")

    assert isinstance(chat.error, ProcessingError)
    assert "over max_response_bytes=10" in str(chat.error)
    assert chat.attempts == 1


async def test_an_answer_over_max_response_bytes_fails(ws_server: RunningWSServer) -> None:
    generator = WSGenerator(
        model="bot",
        spec={
            "request": {"url": f"{ws_server.url}/idle", "message": "{{ content }}"},
            "response": {"idle_timeout": 0.5},
        },
        max_response_bytes=20,
    )

    chat = await generator.chat("a prompt long enough to pass twenty").run(on_failed="include")

    assert isinstance(chat.error, ProcessingError)
    assert "over max_response_bytes=20" in str(chat.error)


async def test_stream_gives_each_piece_as_its_frame_arrives(ws_server: RunningWSServer) -> None:
    generator = WSGenerator(model="bot", spec=chat_spec(ws_server.url))

    stream = generator.chat("stream this answer, please").stream()
    deltas = [delta async for delta in stream]

    assert len(deltas) > 3
    assert "".join(deltas) == "You said: stream this answer, please"
    assert stream.chat.content == "You said: stream this answer, please"


async def test_stream_is_not_retried_once_pieces_were_given_out(
    ws_server: RunningWSServer,
) -> None:
    spec = chat_spec(ws_server.url)
    spec["request"]["url"] += "?drop=1"  # every connection breaks half-way through
    generator = WSGenerator(model="bot", spec=spec)
    given_out: list[str] = []

    async def read_stream() -> None:
        async for delta in generator.chat("a prompt long enough for several pieces").stream():
            given_out.append(delta)

    with pytest.raises(ProviderConnectionError) as info:
        await read_stream()

    assert given_out  # text already shown cannot be taken back, so no second answer is mixed in
    assert info.value.attempts == 1
    assert ws_server.state.connections == 1


def test_spec_render_shows_the_handshake_and_the_frame_with_the_key_masked(
    tmp_path: Path,
) -> None:
    import json
    import os
    import subprocess
    import sys

    (tmp_path / "bot.yaml").write_text(
        "request:\n"
        "  url: wss://bot.example.com/chat\n"
        "  headers: {Authorization: 'Bearer {{ api_key }}'}\n"
        "  message: {text: $content}\n"
        "response: {done: {jsonpath: $.type, equals: end}}\n"
    )
    env = {**os.environ, "JIB_STORE": str(tmp_path / "jib.db"), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "jib.cli", "spec", "render", "ws!bot,spec=@bot.yaml"]
    command += ["--prompt", "Hi", "--api-key", "sk-render-secret-1234", "--json"]

    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    rendered = json.loads(done.stdout)
    assert rendered["method"] == "GET"
    assert rendered["url"] == "wss://bot.example.com/chat"
    assert rendered["headers"] == {"Authorization": "Bearer ***"}
    assert rendered["body"] == {"text": "Hi"}
    assert "sk-render-secret-1234" not in done.stdout
