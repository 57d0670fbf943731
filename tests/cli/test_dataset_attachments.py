"""`jib run` datasets with parts and attachments, and the trust rule for what a line may name:
files inside the dataset's folder only, and no URL for a generator that fetches from this
machine, unless the user allows it. A refused line fails alone; the others run."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from jib.cli._attachments import RefusedAttachmentError
from jib.cli._dataset_files import DataAllowances, fetches_urls, url_refusal
from jib.identifiers import get_generator
from jib.messages import Message
from jib.storage import open_store
from tests.cli.answer_server import answer_server, bodies, identifier, last_user_text
from tests.cli.conftest import JibRunner, assert_one_clean_error_line

PNG = b"\x89PNG\r\n\x1a\n-the-cat"
SECRET = b"\x89PNG\r\n\x1a\n-a-secret-outside-the-dataset"
REMOTE = "https://images.example.com/cat.png"


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def data_url(data: bytes, mimetype: str = "image/png") -> str:
    return f"data:{mimetype};base64,{base64.b64encode(data).decode()}"


def sent_text(body: dict[str, Any]) -> str:
    return last_user_text(body)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A dataset folder holding `images/cat.png` and `report.pdf`, and a secret beside it."""
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "cat.png").write_bytes(PNG)
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 report")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "secret.png").write_bytes(SECRET)
    return folder


def test_a_line_attaches_files_from_its_folder_and_sends_parts_as_written(
    jib: JibRunner, dataset: Path
) -> None:
    prompts = write_lines(
        dataset / "eval.jsonl",
        [
            {"id": "a", "prompt": "Look", "attachments": ["images/cat.png", "report.pdf"]},
            {
                "id": "b",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Inline"},
                            {
                                "type": "image_url",
                                "image_url": {"url": data_url(PNG), "detail": "low"},
                            },
                        ],
                    }
                ],
            },
            {
                "id": "c",
                "messages": [
                    {"role": "system", "content": "Be brief"},
                    {"role": "user", "content": "Both"},
                ],
                "attachments": "images/cat.png",
            },
        ],
    )
    with answer_server() as server:
        result = jib("run", identifier(server), "-f", str(prompts), "--no-progress", "-c", "1")

    assert result.code == 0, result.stderr
    by_text = {sent_text(body): body["messages"] for body in bodies(server)}
    assert by_text["Look"][-1]["content"] == [
        {"type": "text", "text": "Look"},
        {"type": "image_url", "image_url": {"url": data_url(PNG)}},
        {
            "type": "file",
            "file": {
                "file_data": data_url(b"%PDF-1.4 report", "application/pdf"),
                "filename": "report.pdf",
            },
        },
    ]
    assert by_text["Inline"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": data_url(PNG), "detail": "low"},
    }
    system, user = by_text["Both"]
    assert system == {"role": "system", "content": "Be brief"}
    assert [part["type"] for part in user["content"]] == ["text", "image_url"]


def test_files_outside_the_datasets_folder_are_refused_and_fail_their_line_only(
    jib: JibRunner, dataset: Path, tmp_path: Path, default_store: Path
) -> None:
    secret = tmp_path / "private" / "secret.png"
    (dataset / "images" / "link.png").symlink_to(secret)
    prompts = write_lines(
        dataset / "eval.jsonl",
        [
            {"id": "good", "prompt": "fine", "attachments": ["images/cat.png"]},
            {"id": "up", "prompt": "up", "attachments": ["../private/secret.png"]},
            {"id": "absolute", "prompt": "absolute", "attachments": [str(secret)]},
            {"id": "link", "prompt": "link", "attachments": ["images/link.png"]},
        ],
    )
    with answer_server() as server:
        result = jib(
            "run", identifier(server), "-f", str(prompts), "--no-progress", "-r", "r", "-c", "1"
        )
        sent = [sent_text(body) for body in bodies(server)]
        with open_store(default_store) as store:
            chats = {c.metadata["prompt_id"]: c for c in store.query(run="r", failed=True)}
        # Allowed by the user, the refused lines are sent (`--resume --retry-failed` runs them).
        again = jib(
            "run", identifier(server), "-f", str(prompts), "--no-progress", "-r", "r", "--resume",
            "--retry-failed", "--allow-path", str(tmp_path / "private"),
        )  # fmt: skip

    assert_one_clean_error_line(result, "3 of 4 chats failed", "RefusedAttachmentError")
    assert "note: 3 line(s) of eval.jsonl attach files outside its folder" in result.stderr
    assert "(lines 2, 3, 4); allow a folder with --allow-path DIR" in result.stderr
    assert sent == ["fine"]
    secret_text = base64.b64encode(SECRET).decode()
    assert all(secret_text not in request.body.decode() for request in server.requests[:1])
    reasons = {
        "up": "refused attachment '../private/secret.png' of eval.jsonl line 2, read from data: "
        "a dataset may attach files inside its own folder",
        "absolute": f"refused attachment '{secret}' of eval.jsonl line 3",
        "link": "refused attachment 'images/link.png' of eval.jsonl line 4, read from data",
    }
    for prompt_id, reason in reasons.items():
        chat = chats[prompt_id]
        assert chat.failed and chat.generated == []
        assert str(chat.error).startswith("RefusedAttachmentError: ")
        assert reason in str(chat.error)
        assert "allow the folder it is in with --allow-path DIR" in str(chat.error)
    assert "it holds '..'" in str(chats["up"].error)
    assert "it is an absolute path" in str(chats["absolute"].error)
    assert "a symbolic link leads out of it" in str(chats["link"].error)

    assert again.code == 0, again.stderr
    assert "outside its folder" not in again.stderr
    assert sorted(sent_text(body) for body in bodies(server)[1:]) == ["absolute", "link", "up"]
    assert all(secret_text in request.body.decode() for request in server.requests[1:])


def test_allow_path_lets_a_line_attach_files_in_that_folder(
    jib: JibRunner, dataset: Path, tmp_path: Path
) -> None:
    prompts = write_lines(
        dataset / "eval.jsonl",
        [{"prompt": "up", "attachments": ["../private/secret.png"]}],
    )
    with answer_server() as server:
        result = jib(
            "run", identifier(server), "-f", str(prompts), "--no-progress",
            "--allow-path", str(tmp_path / "private"),
        )  # fmt: skip

    assert result.code == 0, result.stderr
    [body] = bodies(server)
    assert body["messages"][-1]["content"][1]["image_url"]["url"] == data_url(SECRET)


def test_a_missing_or_unsendable_attachment_stops_the_run_before_anything_is_sent(
    jib: JibRunner, dataset: Path
) -> None:
    (dataset / "movie.mp4").write_bytes(b"....ftypisom")
    for attachments, expected in [
        (["images/dog.png"], "eval.jsonl line 2: attachment 'images/dog.png': no such file"),
        (["movie.mp4"], "jib cannot send eval.jsonl line 2: attachment 'movie.mp4' (video/mp4)"),
        ([3], "eval.jsonl line 2: 'attachments' must be a list of file paths"),
    ]:
        prompts = write_lines(
            dataset / "eval.jsonl",
            [{"prompt": "fine"}, {"prompt": "broken", "attachments": attachments}],
        )
        with answer_server() as server:
            result = jib("run", identifier(server), "-f", str(prompts), "--no-progress")

        assert_one_clean_error_line(result, expected)
        assert result.code == 2
        assert server.requests == []


def test_attachments_need_a_user_message(jib: JibRunner, dataset: Path) -> None:
    prompts = write_lines(
        dataset / "eval.jsonl",
        [{"messages": [{"role": "system", "content": "x"}], "attachments": ["report.pdf"]}],
    )
    result = jib("run", "echo!demo", "-f", str(prompts))

    assert_one_clean_error_line(result, "line 1: attachments go with a user message")


def test_a_lines_url_goes_to_openai_as_it_is_but_not_to_a_generator_that_fetches_it(
    jib: JibRunner, tmp_path: Path
) -> None:
    prompts = write_lines(
        tmp_path / "eval.jsonl",
        [
            {"id": "text", "prompt": "plain"},
            {"id": "url", "prompt": "remote", "attachments": [REMOTE]},
        ],
    )
    with answer_server() as server:
        # LiteLLM downloads an image URL itself for some providers: the line is refused.
        litellm = f"openai/m,api_base={server.url}/v1,api_key=sk-local,max_retries=0"
        refused = jib("run", litellm, "-f", str(prompts), "--no-progress", "-r", "l")
        passed_on = jib("run", identifier(server), "-f", str(prompts), "--no-progress")

    assert_one_clean_error_line(refused, "1 of 2 chats failed", "RefusedAttachmentError")
    assert "--allow-fetch images.example.com" in refused.stderr
    texts = [sent_text(body) for body in bodies(server)]
    assert texts.count("plain") == 2 and texts.count("remote") == 1  # `openai!` got it
    [remote] = [body for body in bodies(server) if sent_text(body) == "remote"]
    assert remote["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": REMOTE},
    }
    assert passed_on.code == 0, passed_on.stderr
    assert "refused the URLs of eval.jsonl line 2, read from data" in refused.last_error_line
    assert "litellm!openai/m would fetch them from this machine" in refused.last_error_line


@pytest.mark.parametrize(
    ("identifier_text", "fetches"),
    [
        ("transformers!/models/vision", True),
        ("vllm!/models/vision", True),
        ("openai/gpt-4o-mini", True),  # LiteLLM
        ("openai!gpt-4o-mini", False),
        ("echo!demo", False),
    ],
)
def test_which_generators_fetch_a_parts_url_from_this_machine(
    identifier_text: str, fetches: bool
) -> None:
    generator = get_generator(identifier_text)
    messages = [Message("user", ["Look", {"type": "image_url", "image_url": {"url": REMOTE}}])]
    none = DataAllowances()

    assert fetches_urls(generator) is fetches
    refusal = url_refusal(messages, generator, none, "eval.jsonl line 7")
    assert (refusal is not None) is fetches
    if refusal is not None:
        assert isinstance(refusal, RefusedAttachmentError)
        assert "refused the URLs of eval.jsonl line 7" in str(refusal)
        assert "--allow-fetch images.example.com" in str(refusal)
    for allowed in (["images.example.com"], ["*"]):
        allowances = DataAllowances.of([], allowed)
        assert url_refusal(messages, generator, allowances, "eval.jsonl line 7") is None
    inline = [Message("user", ["Look", {"type": "image_url", "image_url": {"url": data_url(PNG)}}])]
    assert url_refusal(inline, generator, none, "eval.jsonl line 7") is None


def test_attachments_of_a_dataset_on_stdin_are_relative_to_the_current_folder(
    jib: JibRunner, tmp_path: Path
) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    lines = [
        {"prompt": "here", "attachments": ["cat.png"]},
        {"prompt": "up", "attachments": ["../x.png"]},
    ]
    with answer_server() as server:
        result = jib(
            "run", identifier(server), "-f", "-", "--no-progress",
            stdin="".join(json.dumps(line) + "\n" for line in lines),
        )  # fmt: skip

    assert_one_clean_error_line(result, "1 of 2 chats failed", "refused attachment '../x.png'")
    [body] = bodies(server)
    assert body["messages"][-1]["content"][1]["image_url"]["url"] == data_url(PNG)
