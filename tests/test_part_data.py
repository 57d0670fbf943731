"""The inline data of parts swapped for references and back: exact round trips, never text."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jib import _part_data
from jib.content import ContentAudioInput, ContentFile, ContentImageUrl, ContentText
from jib.messages import Message
from jib.storage._blobs import BlobCollector

media_types = st.sampled_from(["image/png", "image/jpeg", "application/pdf", "text/plain"])
parts = st.one_of(
    st.builds(lambda text: ContentText(text), st.text(max_size=30)),
    st.builds(
        lambda data, kind: ContentImageUrl.from_bytes(data, kind),
        st.binary(max_size=64),
        media_types,
    ),
    st.builds(
        lambda data, kind: ContentFile.from_bytes(data, kind, filename="f"),
        st.binary(max_size=64),
        media_types,
    ),
    st.builds(
        lambda data, kind: ContentAudioInput.from_bytes(data, kind),
        st.binary(max_size=64),
        st.sampled_from(["wav", "mp3", "ogg", "flac"]),
    ),
    st.builds(lambda path: ContentImageUrl.from_url(f"https://example.com/{path}"), st.text("ab/")),
)
messages = st.lists(
    st.one_of(
        st.builds(lambda text: Message("user", text), st.text(max_size=30)),
        st.builds(lambda content: Message("user", content), st.lists(parts, max_size=4)),
    ),
    max_size=4,
)


def as_dicts(sent: list[Message]) -> list[dict[str, Any]]:
    return [message.to_dict() for message in sent]


@settings(max_examples=60, deadline=None)
@given(messages)
def test_files_beside_an_export_give_every_message_back_exactly(sent: list[Message]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder) / "r.jsonl"
        written = _part_data.swap_data(as_dicts(sent), _part_data.FileWriter(export))
        read = _part_data.swap_data(written, _part_data.FileReader(export.parent))

    assert read == as_dicts(sent)
    assert [Message.from_any(message) for message in read] == sent
    assert "base64" not in repr(written)


@settings(max_examples=60, deadline=None)
@given(messages)
def test_blob_references_name_each_content_by_its_hash(sent: list[Message]) -> None:
    collector = BlobCollector()
    stored, used = collector.externalise(as_dicts(sent))

    def restore(value: str, audio_format: str | None) -> str | None:
        split = _part_data.restored(value, _part_data.BLOB)
        if split is None:
            return None
        return _part_data.encoded(split[0], collector.blobs[split[1]], audio_format)

    assert _part_data.swap_data(stored, restore) == as_dicts(sent)
    assert used == set(collector.blobs)
    assert all(_part_data.digest(data) == digest for digest, data in collector.blobs.items())


@given(st.text(max_size=40))
def test_text_and_base64_jib_would_not_write_are_never_swapped(text: str) -> None:
    odd = "eB=="  # decodes to b"x", which encodes as "eA==": swapping it would change the text
    assert base64.b64decode(odd, validate=True) == b"x"
    sent = [
        {"role": "user", "content": f"data:image/png;base64,{text}"},
        {"role": "user", "content": [{"type": "text", "text": f"data:;base64,{text}"}]},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": odd}}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]},
    ]

    stored, used = BlobCollector().externalise(sent)

    assert stored is sent and used == set()
