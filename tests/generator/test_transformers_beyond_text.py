"""TransformersGenerator beyond text: tools through the chat template, tool calls read back,
images through a real (tiny, random) vision-language model's processor, and clear errors for
what a model cannot take — raised before anything is generated.

The tiny models answer random words, so the tests that need a tool call have the test's own
model object write one: its `generate` runs, then the test writes the call's tokens over the
row it generated (the tokenizer knows them as added tokens), as a trained model would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from jib import (
    BadRequestError,
    ContentAudioInput,
    ContentFile,
    ContentImageUrl,
    ContentText,
    FunctionCall,
    FunctionDefinition,
    GenerateParams,
    InvalidGeneratorError,
    Message,
    ToolCall,
    ToolDefinition,
    get_generator,
)
from jib.generator.transformers import TransformersGenerator
from tests.support.tiny_model import TOOL_CHAT_TEMPLATE, build_tiny_vision_model

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

GREEDY = GenerateParams(temperature=0, max_tokens=8)
CAPITAL = ToolDefinition(
    function=FunctionDefinition(
        name="capital",
        description="The capital of a country.",
        parameters={"type": "object", "properties": {"country": {"type": "string"}}},
    )
)
TOOLS = GREEDY.merge_with(GenerateParams(tools=[CAPITAL]))
CALL_JSON = '{"name": "capital", "arguments": {"country": "france"}}'
CALL_TOKENS = ["<tool_call>", CALL_JSON, "</tool_call>"]


def png(width: int = 16, height: int = 16) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


class Generate:
    """Wraps a model's `generate` (the test's own model object): records each call, and can
    write scripted text over the rows it generates, ended by the end-of-sequence token."""

    def __init__(self, model: Any, tokenizer: Any, script: str | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self._generate = model.generate
        self._tokenizer = tokenizer
        self._script = script
        model.generate = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        output = self._generate(*args, **kwargs)
        if self._script is not None:
            ids = self._tokenizer(self._script, add_special_tokens=False)["input_ids"]
            ids = [*ids, self._tokenizer.eos_token_id]
            width = kwargs["input_ids"].shape[1]
            assert output.shape[1] - width >= len(ids), "max_tokens too low for the script"
            output = output.clone()
            output[:, width : width + len(ids)] = torch.tensor(ids)
        return output

    @property
    def prompts(self) -> list[list[list[int]]]:
        """The token ids of each call's rows, padding removed."""
        rows = []
        for call in self.calls:
            ids, mask = call["input_ids"].tolist(), call["attention_mask"].tolist()
            pairs = zip(ids, mask, strict=True)
            rows.append([[t for t, m in zip(r, k, strict=True) if m] for r, k in pairs])
        return rows


@pytest.fixture
def tool_tokenizer(tiny_model_dir: Path) -> Any:
    """The tiny model's tokenizer with a tool-aware chat template and the call's tokens."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = TOOL_CHAT_TEMPLATE
    tokenizer.add_tokens(CALL_TOKENS)
    return tokenizer


def tool_generator(
    tiny_model_dir: Path, tokenizer: Any, script: str | None = None
) -> tuple[TransformersGenerator, Generate]:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    model.resize_token_embeddings(len(tokenizer))  # the call's tokens, added to the tokenizer
    spy = Generate(model, tokenizer, script)
    return TransformersGenerator.from_obj(model=model, tokenizer=tokenizer), spy


def rendered_ids(tokenizer: Any, messages: list[dict[str, Any]], **kwargs: Any) -> list[int]:
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False, **kwargs
    )
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids


# -- tools -------------------------------------------------------------------------------------


async def test_tools_reach_the_chat_template_and_the_call_comes_back(
    tiny_model_dir: Path, tool_tokenizer: Any
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer, " ".join(CALL_TOKENS))

    chat = await generator.chat("what is the capital of france", TOOLS)

    question = [{"role": "user", "content": "what is the capital of france"}]
    assert spy.prompts == [[rendered_ids(tool_tokenizer, question, tools=[CAPITAL.to_dict()])]]
    assert spy.prompts[0][0] != rendered_ids(tool_tokenizer, question)
    assert chat.stop_reason == "tool_calls"
    assert chat.content == ""
    (call,) = chat.last.tool_calls
    assert call.function == FunctionCall("capital", '{"country": "france"}')
    assert call.parsed_arguments() == {"country": "france"}
    assert len(call.id) == 9


async def test_text_around_a_call_is_the_content(tiny_model_dir: Path, tool_tokenizer: Any) -> None:
    generator, _ = tool_generator(
        tiny_model_dir, tool_tokenizer, "hello world " + " ".join(CALL_TOKENS)
    )
    chat = await generator.chat("hi", TOOLS)
    assert chat.content == "hello world"
    assert [call.function.name for call in chat.last.tool_calls] == ["capital"]


async def test_a_tool_round_goes_back_through_the_template_with_arguments_as_objects(
    tiny_model_dir: Path, tool_tokenizer: Any
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer)
    call = ToolCall("abc123def", FunctionCall("capital", '{"country": "france"}'))
    conversation = [
        Message("user", "what is the capital of france"),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", "paris", tool_call_id="abc123def"),
    ]

    chat = await generator.chat(conversation, TOOLS)

    assert not chat.failed
    expected = [
        {"role": "user", "content": "what is the capital of france"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "abc123def",
                    "type": "function",
                    "function": {"name": "capital", "arguments": {"country": "france"}},
                }
            ],
        },
        {"role": "tool", "content": "paris", "tool_call_id": "abc123def"},
    ]
    assert spy.prompts == [[rendered_ids(tool_tokenizer, expected, tools=[CAPITAL.to_dict()])]]
    words = tool_tokenizer.convert_ids_to_tokens(spy.prompts[0][0])
    assert words.count("france") == 2  # asked about, then the call's argument
    assert "paris" in words


async def test_without_tools_a_tool_call_text_stays_text(
    tiny_model_dir: Path, tool_tokenizer: Any
) -> None:
    script = " ".join(CALL_TOKENS)
    generator, _ = tool_generator(tiny_model_dir, tool_tokenizer, script)
    chat = await generator.chat("hi", GREEDY)
    assert chat.last.tool_calls == ()
    assert chat.stop_reason == "stop"
    assert "<tool_call>" in chat.content


async def test_tool_choice_none_hides_the_tools_and_reads_no_calls(
    tiny_model_dir: Path, tool_tokenizer: Any
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer, " ".join(CALL_TOKENS))
    chat = await generator.chat("hi", TOOLS.merge_with(GenerateParams(tool_choice="none")))
    assert spy.prompts == [[rendered_ids(tool_tokenizer, [{"role": "user", "content": "hi"}])]]
    assert chat.last.tool_calls == ()
    assert "<tool_call>" in chat.content


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (GenerateParams(tool_choice="required"), "tool_choice=required"),
        (
            GenerateParams(tool_choice={"type": "function", "function": {"name": "capital"}}),
            'tool_choice={"type": "function"',
        ),
        (GenerateParams(parallel_tool_calls=False), "parallel_tool_calls=False"),
        (GenerateParams(response_format={"type": "json_object"}), "response_format"),
        (GenerateParams(modalities=["text", "audio"]), "modalities"),
    ],
)
async def test_params_a_chat_template_cannot_honour_fail_before_generating(
    tiny_model_dir: Path, tool_tokenizer: Any, params: GenerateParams, named: str
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer)
    results = await generator.generate_messages(
        [[Message("user", "hi")], [Message("user", "hello")]], [TOOLS.merge_with(params), TOOLS]
    )
    assert isinstance(results[0], BadRequestError)
    assert named in str(results[0])
    assert "[transformers]" in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert [len(rows) for rows in spy.prompts] == [1]  # only the other item was generated


async def test_tools_for_a_template_that_never_reads_them_are_refused(
    tiny_model_dir: Path,
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)  # no tools in it
    generator, spy = tool_generator(tiny_model_dir, tokenizer)
    results = await generator.generate_messages([[Message("user", "hi")]], [TOOLS])
    assert isinstance(results[0], BadRequestError)
    assert "takes no tools" in str(results[0])
    assert "capital" in str(results[0])
    assert spy.calls == []


# -- parts on a text-only model ----------------------------------------------------------------


async def test_a_text_only_model_refuses_an_image_naming_the_part(
    tiny_model_dir: Path, tool_tokenizer: Any
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer)
    image = ContentImageUrl.from_bytes(png(), "image/png")
    results = await generator.generate_messages(
        [
            [Message("system", "be brief"), Message("user", ["what is in this image", image])],
            [Message("user", "hello world")],
        ],
        [GREEDY, GREEDY],
    )

    error = results[0]
    assert isinstance(error, BadRequestError)
    assert "message 2 (user), part 2 is an image (image_url, image/png" in str(error)
    assert "text-only" in str(error)
    assert not isinstance(results[1], BaseException)
    assert [len(rows) for rows in spy.prompts] == [1]


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        (ContentAudioInput.from_bytes(b"RIFF0000WAVE", "wav"), "an audio clip (input_audio, wav"),
        (ContentFile.from_bytes(b"%PDF-1.7", "application/pdf"), "a file (file, application/pdf"),
    ],
)
async def test_a_text_only_model_refuses_audio_and_files(
    tiny_model_dir: Path, tool_tokenizer: Any, part: Any, kind: str
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer)
    results = await generator.generate_messages([[Message("user", ["hi", part])]], [GREEDY])
    assert isinstance(results[0], BadRequestError)
    assert kind in str(results[0])
    assert spy.calls == []


async def test_text_parts_render_as_the_plain_text_and_cache_marks_stay_out(
    tiny_model_dir: Path, tool_tokenizer: Any
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer)
    marked = {"type": "ephemeral"}
    parts = Message("user", [ContentText("hello", marked), "world"], cache_control=marked)
    await generator.generate_messages([[parts], [Message("user", "hello\nworld")]], [GREEDY] * 2)
    (first, second) = spy.prompts[0]
    assert first == second


# -- a vision-language model -------------------------------------------------------------------


@pytest.fixture(scope="module")
def vision_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vision_model(tmp_path_factory.mktemp("tiny-vision-model"))


def vision_generator(path: Path) -> tuple[TransformersGenerator, Generate, Any]:
    processor = transformers.AutoProcessor.from_pretrained(path)
    model = transformers.AutoModelForImageTextToText.from_pretrained(path).eval()
    spy = Generate(model, processor.tokenizer)
    return TransformersGenerator.from_obj(model, processor=processor), spy, processor


def image_question() -> list[Message]:
    image = ContentImageUrl.from_bytes(png(), "image/png")
    return [Message("user", [image, "what is in this image"])]


async def test_a_vision_model_loads_by_identifier_and_reads_an_image(
    vision_model_dir: Path,
) -> None:
    generator = get_generator(f"transformers!{vision_model_dir}")
    assert isinstance(generator, TransformersGenerator)
    try:
        chat = await generator.chat(image_question(), GREEDY)
        processor = generator.get_processor()
    finally:
        generator.unload()

    assert processor is not None
    assert not chat.failed
    assert chat.usage is not None
    # <s> user, four image tokens (16x16 pixels in 8x8 patches), five words, </s>, <s> assistant
    assert chat.usage.input_tokens == 2 + 4 + 5 + 1 + 2
    assert 0 < chat.usage.output_tokens <= 8


async def test_images_go_through_the_processor_and_their_pixels_reach_generate(
    vision_model_dir: Path,
) -> None:
    generator, spy, processor = vision_generator(vision_model_dir)
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")

    chats = await generator.chat().run_batch(
        [image_question(), ["hello"], ["what is the capital of france"]], [GREEDY] * 3
    )

    assert all(not chat.failed for chat in chats)
    with_pixels = [call for call in spy.calls if "pixel_values" in call]
    assert len(with_pixels) == 1  # the conversation with an image is generated alone
    (call,) = with_pixels
    assert tuple(call["pixel_values"].shape) == (1, 3, 16, 16)
    assert call["input_ids"].tolist()[0].count(image_token) == 4
    expected = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "url": image_question()[0].content_parts[0].url},
                    {"type": "text", "text": "what is in this image"},
                ],
            }
        ],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert call["input_ids"].tolist() == expected["input_ids"].tolist()
    assert torch.equal(call["pixel_values"], expected["pixel_values"])
    text_calls = [call for call in spy.calls if "pixel_values" not in call]
    assert [call["input_ids"].shape[0] for call in text_calls] == [2]  # text still batched


async def test_from_obj_takes_a_processor_given_as_the_tokenizer(vision_model_dir: Path) -> None:
    processor = transformers.AutoProcessor.from_pretrained(vision_model_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(vision_model_dir).eval()
    generator = TransformersGenerator.from_obj(model, processor)
    assert generator.get_processor() is processor
    assert generator.get_model_and_tokenizer() == (model, processor.tokenizer)
    assert not (await generator.chat(image_question(), GREEDY)).failed


def test_from_obj_needs_a_tokenizer_or_a_processor(vision_model_dir: Path) -> None:
    model = transformers.AutoModelForImageTextToText.from_pretrained(vision_model_dir)
    with pytest.raises(InvalidGeneratorError, match="tokenizer"):
        TransformersGenerator.from_obj(model)


@pytest.mark.parametrize(
    ("part", "said"),
    [
        (ContentAudioInput.from_bytes(b"RIFF0000WAVE", "wav"), "processor takes no audio"),
        (ContentFile.from_bytes(b"%PDF-1.7", "application/pdf"), "takes no files"),
        (ContentImageUrl.from_url("https://example.com/cat.png"), "does not fetch remote URLs"),
        (ContentImageUrl.from_bytes(b"hello", "text/plain"), "text/plain, not an image type"),
    ],
)
async def test_a_vision_model_refuses_what_its_processor_cannot_take(
    vision_model_dir: Path, part: Any, said: str
) -> None:
    generator, spy, _ = vision_generator(vision_model_dir)
    results = await generator.generate_messages(
        [[Message("user", ["what is this", part])], image_question()], [GREEDY] * 2
    )
    assert isinstance(results[0], BadRequestError)
    assert "message 1 (user), part 2" in str(results[0])
    assert said in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert len(spy.calls) == 1


async def test_a_processor_failure_fails_only_its_item(vision_model_dir: Path) -> None:
    generator, spy, _ = vision_generator(vision_model_dir)
    broken = ContentImageUrl.from_bytes(b"not a png at all", "image/png")
    results = await generator.generate_messages(
        [[Message("user", [broken, "what"])], [Message("user", "hello")]], [GREEDY] * 2
    )
    assert isinstance(results[0], BadRequestError)
    assert "processor could not read this conversation's images or audio" in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert len(spy.calls) == 1


async def test_a_processor_error_quotes_little_of_the_data(vision_model_dir: Path) -> None:
    generator, _, _ = vision_generator(vision_model_dir)
    broken = ContentImageUrl.from_bytes(b"x" * 100_000, "image/png")
    (result,) = await generator.generate_messages([[Message("user", [broken])]], [GREEDY])
    assert isinstance(result, BadRequestError)
    assert len(str(result)) < 600


def test_tool_template_requires_arguments_as_objects(tiny_model_dir: Path) -> None:
    """The test template itself: given arguments as text, it fails (so the round-trip test above
    proves jib hands it objects)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    call = {"type": "function", "function": {"name": "capital", "arguments": json.dumps({})}}
    with pytest.raises(Exception, match="items"):
        tokenizer.apply_chat_template(
            [{"role": "assistant", "content": "", "tool_calls": [call]}],
            chat_template=TOOL_CHAT_TEMPLATE,
            tokenize=False,
        )


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (TOOLS, "tools in a completion"),
        (GenerateParams(response_format={"type": "json_object"}), "response_format"),
    ],
)
async def test_a_completion_refuses_tools_and_response_format(
    tiny_model_dir: Path, tool_tokenizer: Any, params: GenerateParams, named: str
) -> None:
    generator, spy = tool_generator(tiny_model_dir, tool_tokenizer)
    results = await generator.generate_texts(["hello", "hello"], [params, GREEDY])
    assert isinstance(results[0], BadRequestError)
    assert named in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert [len(rows) for rows in spy.prompts] == [1]
