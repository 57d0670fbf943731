"""`jib chat -a FILE|URL`: files become parts by their type, and what jib cannot send is refused
before anything is sent."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from jib.cli._attachments import (
    MAX_ATTACHMENT_BYTES,
    AttachmentError,
    part_from_source,
)
from jib.content import ContentAudioInput, ContentFile, ContentImageUrl
from tests.cli.answer_server import answer_server, bodies, identifier
from tests.cli.conftest import JibRunner, assert_one_clean_error_line

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
WAV = b"RIFF$\x00\x00\x00WAVEfmt "


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "cat.png").write_bytes(PNG)
    (tmp_path / "photo.JPG").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "report.pdf").write_bytes(PDF)
    (tmp_path / "notes.md").write_text("# Notes\n")
    (tmp_path / "clip.wav").write_bytes(WAV)
    (tmp_path / "clip.flac").write_bytes(b"fLaC")
    (tmp_path / "voice.m4a").write_bytes(b"....ftypM4A ")
    (tmp_path / "movie.mp4").write_bytes(b"....ftypisom")
    (tmp_path / "archive.zip").write_bytes(b"PK\x03\x04")
    (tmp_path / "blob").write_bytes(b"\x00\x01")
    return tmp_path


def test_each_file_becomes_the_part_its_type_says(files: Path) -> None:
    image = part_from_source(str(files / "cat.png"))
    assert isinstance(image, ContentImageUrl)
    assert (image.mimetype, image.data) == ("image/png", PNG)
    jpeg = part_from_source(str(files / "photo.JPG"))
    assert isinstance(jpeg, ContentImageUrl) and jpeg.mimetype == "image/jpeg"
    document = part_from_source(str(files / "report.pdf"))
    assert isinstance(document, ContentFile)
    assert (document.mimetype, document.filename, document.data) == (
        "application/pdf",
        "report.pdf",
        PDF,
    )
    notes = part_from_source(str(files / "notes.md"))
    assert isinstance(notes, ContentFile) and notes.mimetype == "text/markdown"
    clip = part_from_source(str(files / "clip.wav"))
    assert isinstance(clip, ContentAudioInput)
    assert (clip.format, clip.bytes) == ("wav", WAV)
    flac = part_from_source(str(files / "clip.flac"))
    assert isinstance(flac, ContentAudioInput) and flac.format == "flac"


def test_urls_are_passed_on_typed_by_their_suffix() -> None:
    image = part_from_source("https://example.com/img/cat.webp?size=2")
    assert image == ContentImageUrl("https://example.com/img/cat.webp?size=2")
    document = part_from_source("https://example.com/papers/a%20b.pdf")
    assert document == ContentFile("https://example.com/papers/a%20b.pdf", "a b.pdf")
    inline = part_from_source("data:image/png;base64," + base64.b64encode(PNG).decode())
    assert isinstance(inline, ContentImageUrl) and inline.data == PNG


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("movie.mp4", "jib cannot send 'MOVIE' (video/mp4); it attaches images, audio in wav"),
        ("archive.zip", "jib cannot send 'MOVIE' (application/zip)"),
        ("blob", "cannot tell what 'MOVIE' is from its name"),
        ("voice.m4a", "is audio/mp4: jib sends audio as wav, mp3, ogg or flac; convert it"),
        ("missing.png", "'MOVIE': no such file"),
    ],
)
def test_what_jib_cannot_send_is_refused_with_what_it_can(
    files: Path, name: str, expected: str
) -> None:
    source = str(files / name)
    with pytest.raises(AttachmentError) as caught:
        part_from_source(source)
    assert expected.replace("MOVIE", source) in str(caught.value)


def test_audio_by_url_and_untyped_urls_are_refused() -> None:
    with pytest.raises(AttachmentError, match="audio is sent inline; download it"):
        part_from_source("https://example.com/clip.mp3")
    with pytest.raises(AttachmentError, match=r"cannot tell what 'https://example\.com/i' is"):
        part_from_source("https://example.com/i")
    with pytest.raises(AttachmentError, match="broken base64"):
        part_from_source("data:image/png;base64,%%%")


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as handle:  # sparse: nothing is written, nothing is read
        handle.truncate(MAX_ATTACHMENT_BYTES + 1)

    with pytest.raises(AttachmentError, match="jib attaches files of at most 50 MiB"):
        part_from_source(str(huge))


def test_jib_chat_attaches_files_to_the_prompt(jib: JibRunner, files: Path) -> None:
    with answer_server() as server:
        result = jib(
            "chat", identifier(server), "What are these?", "-a", "cat.png", "--attach",
            str(files / "report.pdf"), "-a", "clip.wav", "-a", "https://example.com/dog.png",
        )  # fmt: skip

    assert result.code == 0, result.stderr
    assert result.stdout == "got 5 parts: text, image_url, file, input_audio, image_url\n"
    [body] = bodies(server)
    text, image, document, audio, remote = body["messages"][-1]["content"]
    assert text == {"type": "text", "text": "What are these?"}
    assert image["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert document["file"] == {
        "file_data": "data:application/pdf;base64," + base64.b64encode(PDF).decode(),
        "filename": "report.pdf",
    }
    assert audio["input_audio"] == {"data": base64.b64encode(WAV).decode(), "format": "wav"}
    assert remote["image_url"] == {"url": "https://example.com/dog.png"}


def test_jib_chat_without_attachments_sends_a_plain_string(jib: JibRunner) -> None:
    with answer_server() as server:
        result = jib("chat", "--no-stream", identifier(server), "Hello", "--no-store")

    assert result.code == 0, result.stderr
    assert bodies(server)[0]["messages"] == [{"role": "user", "content": "Hello"}]


def test_jib_chat_prints_the_tool_calls_of_an_answer(jib: JibRunner) -> None:
    with answer_server() as server:
        result = jib("chat", identifier(server), 'call:get_weather {"city": "Paris"}')

    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == '-> get_weather({"city": "Paris"})'


@pytest.mark.parametrize(
    ("name", "expected"), [("movie.mp4", "jib cannot send"), ("nope.png", "no such file")]
)
def test_jib_chat_refuses_an_attachment_before_sending_anything(
    jib: JibRunner, files: Path, name: str, expected: str
) -> None:
    with answer_server() as server:
        result = jib("chat", identifier(server), "Look", "-a", name)

    assert_one_clean_error_line(result, "error: -a: ", expected, name)
    assert result.code == 2
    assert server.requests == []
