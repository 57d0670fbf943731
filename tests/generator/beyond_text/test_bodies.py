"""`openai!`'s request bodies: inline payloads copied in rather than escaped, the same bytes
`json.dumps` writes; and sent whole through either transport."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import jib
from jib import ContentAudioInput, ContentFile, ContentImageUrl, ContentText, Message
from jib.generator.openai._bodies import INLINE_MIN, PayloadBytes, encode_body
from jib.generator.openai._protocol import chat_body
from tests.support.scripted_server import Answer, ReceivedRequest, http_answer, serve_script

COMPLETION = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
}


def _joined(body: Any) -> bytes:
    return body if isinstance(body, bytes) else b"".join(body)


media = st.sampled_from(["image/png", "image/jpeg", 'image/we"ird', "image/ünï"])
payload = st.binary(min_size=0, max_size=3 * INLINE_MIN)
parts = st.one_of(
    st.text().map(ContentText),
    st.builds(lambda data, kind: ContentImageUrl.from_bytes(data, kind), payload, media),
    st.builds(lambda data: ContentAudioInput.from_bytes(data, "wav"), payload),
    st.builds(
        lambda data, name: ContentFile.from_bytes(data, "application/pdf", filename=name),
        payload,
        st.none() | st.text(max_size=10),
    ),
)
messages = st.lists(
    st.one_of(
        st.builds(Message, st.sampled_from(["system", "user"]), st.text()),
        st.builds(Message, st.just("user"), st.lists(parts, max_size=4)),
    ),
    min_size=1,
    max_size=4,
)


@given(messages)
def test_a_body_with_inline_payloads_is_exactly_what_json_dumps_writes(
    chat: list[Message],
) -> None:
    body = chat_body("m", chat, jib.GenerateParams(temperature=0.5, extra={"x": "ü\n"}))
    kept = PayloadBytes()

    first = encode_body(body, payloads=kept)
    again = encode_body(body, payloads=kept)

    expected = json.dumps(body).encode()
    assert _joined(first) == expected
    assert _joined(again) == expected
    assert json.loads(_joined(first)) == body


def test_payloads_kept_as_bytes_stay_within_their_limit() -> None:
    kept = PayloadBytes(limit=10_000)
    values = [f"data:image/png;base64,{'A' * 4000}{n}==" for n in range(5)]

    for value in values:
        assert kept.get(value, 22) == value[22:].encode()

    assert kept.get(values[-1], 22) is kept.get(values[-1], 22)  # kept
    assert sum(len(kept.get(v, 22)) for v in values[-2:]) <= 10_000


def test_messages_given_in_extra_are_escaped_as_json_always_is() -> None:
    raw = {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "\n" * 5000}}],
    }
    body = {"model": "m", "messages": [raw]}

    assert _joined(encode_body(body, from_parts=False)) == json.dumps(body).encode()


async def test_an_inline_image_arrives_whole_directly_and_through_a_proxy() -> None:
    image = ContentImageUrl.from_bytes(bytes(range(256)) * 64, "image/png")  # 16 KiB
    messages = [Message("user", [ContentText("What is it?"), image])]

    def answer(request: ReceivedRequest, reply: Answer) -> None:
        reply.write(http_answer(200, COMPLETION))

    with serve_script(answer) as server:
        direct = jib.get_generator(f"openai!m,api_base={server.url}")
        proxied = jib.get_generator(f"openai!m,api_base=http://models.test/v1,proxy={server.url}")
        for generator in (direct, proxied):
            chat = await generator.chat(messages).run()
            assert chat.content == "ok"

    expected = json.dumps(chat_body("m", messages, jib.GenerateParams())).encode()
    assert [request.body for request in server.requests] == [expected, expected]
    assert server.requests[1].path == "http://models.test/v1/chat/completions"
    assert [r.headers["content-length"] for r in server.requests] == [str(len(expected))] * 2
