"""VLLMGenerator: identifiers, the calls it makes to a `vllm.LLM`, and the mapping of its outputs.

vLLM cannot run here (no GPU, no CPU wheel), so most tests hand `from_obj` a small engine that
follows vLLM's documented offline API: `LLM.generate(prompts, sampling_params, use_tqdm=)` and
`LLM.chat(messages, sampling_params, use_tqdm=)` returning one `RequestOutput` per prompt, each
holding `CompletionOutput`s with `text`, `token_ids`, `finish_reason` and `stop_reason`. The
real-engine test at the end runs only where vllm and a GPU are present.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import subprocess
import sys
import threading
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jib import (
    BadRequestError,
    ContentAudioInput,
    ContentFile,
    ContentImageUrl,
    ContentText,
    ContextLengthError,
    FunctionCall,
    FunctionDefinition,
    GenerateParams,
    InvalidGeneratorError,
    Message,
    MissingDependencyError,
    ProviderError,
    ToolCall,
    ToolDefinition,
    get_generator,
)
from jib.generator.vllm import VLLMGenerator

VLLM_INSTALLED = importlib.util.find_spec("vllm") is not None


# -- a stand-in engine with vLLM's shapes ------------------------------------------------------


@dataclass(kw_only=True)
class SamplingParams:
    """vLLM's `SamplingParams` fields jib may set, with vLLM's defaults; unknown keys fail."""

    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: list[str] | None = None
    max_tokens: int | None = 16


@dataclass
class CompletionOutput:
    """vLLM's `CompletionOutput`: one generated sequence."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestOutput:
    """vLLM's `RequestOutput`: the outputs for one prompt."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool


@dataclass
class ModelConfig:
    model: str
    is_multimodal_model: bool | None = None


@dataclass
class LLMEngine:
    model_config: ModelConfig


@dataclass
class FakeLLM:
    """Answers each prompt with its words reversed, honouring max_tokens and stop like vLLM.

    A prompt longer than `max_model_len` words fails the whole call with vLLM's own message.
    """

    max_model_len: int = 32
    calls: list[tuple[str, list[Any], list[SamplingParams]]] = field(default_factory=list)
    tools: list[list[dict[str, Any]] | None] = field(default_factory=list)
    reply: str | None = None
    fail_with: Exception | None = None
    drop_last_output: bool = False
    before_generate: Callable[[], None] | None = None
    llm_engine: LLMEngine = field(default_factory=lambda: LLMEngine(ModelConfig("org/fake-model")))

    def generate(
        self,
        prompts: list[str],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
    ) -> list[RequestOutput]:
        return self._run("generate", prompts, sampling_params)

    def chat(
        self,
        messages: list[list[dict[str, Any]]],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        *,
        use_tqdm: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> list[RequestOutput]:
        self.tools.append(tools)
        return self._run("chat", messages, sampling_params)

    def _run(
        self,
        method: str,
        prompts: list[Any],
        sampling: SamplingParams | list[SamplingParams] | None,
    ) -> list[RequestOutput]:
        if self.before_generate is not None:
            self.before_generate()
        sampling_list = sampling if isinstance(sampling, list) else [sampling or SamplingParams()]
        if len(sampling_list) == 1:
            sampling_list = sampling_list * len(prompts)
        assert len(sampling_list) == len(prompts)
        self.calls.append((method, list(prompts), sampling_list))
        if self.fail_with is not None:
            raise self.fail_with
        outputs = []
        for number, (prompt, params) in enumerate(zip(prompts, sampling_list, strict=True)):
            text = prompt if isinstance(prompt, str) else render(prompt)
            words = text.split()
            if len(words) > self.max_model_len:
                raise ValueError(
                    f"The decoder prompt (length {len(words)}) is longer than the maximum model "
                    f"length of {self.max_model_len}. Make sure that `max_model_len` is no smaller "
                    "than the number of text tokens."
                )
            if self.reply is not None:
                outputs.append(scripted(str(number), words, self.reply))
                continue
            outputs.append(answer(str(number), words, params))
        return outputs[:-1] if self.drop_last_output else outputs


def render(conversation: list[dict[str, Any]]) -> str:
    """The stand-in's chat template (a part counts as one word, as its type)."""
    words = []
    for message in conversation:
        content = message["content"]
        if not isinstance(content, str):
            content = " ".join(part.get("text", part["type"]) for part in content)
        words.append(f"{message['role']} {content}")
    return " ".join(words) + " assistant"


def answer(request_id: str, words: list[str], params: SamplingParams) -> RequestOutput:
    reply = list(reversed(words)) * 4
    finish_reason, stop_reason = "length", None
    limit = params.max_tokens or len(reply)
    if len(reply) <= limit:
        finish_reason = "stop"
    reply = reply[:limit]
    text = " ".join(reply)
    for stop in params.stop or ():
        if stop in text:
            text, finish_reason, stop_reason = text[: text.index(stop)], "stop", stop
            reply = text.split()
    completion = CompletionOutput(
        0, text, list(range(len(reply))), finish_reason=finish_reason, stop_reason=stop_reason
    )
    return RequestOutput(
        request_id, " ".join(words), list(range(len(words))), None, [completion], True
    )


def scripted(request_id: str, words: list[str], reply: str) -> RequestOutput:
    """An answer of `reply`, as a model trained to write it would give it."""
    completion = CompletionOutput(
        0, reply, list(range(len(reply.split()))), finish_reason="stop", stop_reason=None
    )
    return RequestOutput(
        request_id, " ".join(words), list(range(len(words))), None, [completion], True
    )


def fake_generator(llm: FakeLLM | None = None, **attributes: Any) -> VLLMGenerator:
    return VLLMGenerator.from_obj(
        llm or FakeLLM(), sampling_params_class=SamplingParams, **attributes
    )


# -- identifiers -------------------------------------------------------------------------------

SPEC_IDENTIFIER = (
    "vllm!TinyLlama/TinyLlama-1.1B-Chat-v1.0,gpu_memory_utilization=0.3,trust_remote_code=True"
)


def test_spec_identifier_parses_and_round_trips_without_vllm() -> None:
    generator = get_generator(SPEC_IDENTIFIER)
    assert isinstance(generator, VLLMGenerator)
    assert generator.model == "TinyLlama/TinyLlama-1.1B-Chat-v1.0"
    assert generator.gpu_memory_utilization == 0.3
    assert generator.trust_remote_code is True
    assert generator.to_identifier() == SPEC_IDENTIFIER
    assert not generator.is_loaded


def test_engine_arguments_come_from_the_identifier() -> None:
    generator = get_generator(
        "vllm!Qwen/Qwen2.5-0.5B-Instruct,gpu_memory_utilization=0.5,max_model_len=4096,"
        "dtype=float16,temperature=0"
    )
    assert isinstance(generator, VLLMGenerator)
    assert generator.engine_arguments() == {
        "model": "Qwen/Qwen2.5-0.5B-Instruct",
        "gpu_memory_utilization": 0.5,
        "max_model_len": 4096,
        "dtype": "float16",
    }
    assert get_generator(generator.to_identifier()) == generator


def test_engine_kwargs_round_trip_and_reach_the_engine() -> None:
    generator = VLLMGenerator(model="m", engine_kwargs={"swap_space": 2, "kv_cache_dtype": "fp8"})
    again = get_generator(generator.to_identifier())
    assert again == generator
    assert isinstance(again, VLLMGenerator)
    assert again.engine_arguments() == {"model": "m", "swap_space": 2, "kv_cache_dtype": "fp8"}


@pytest.mark.parametrize(
    ("identifier", "key"),
    [
        ("vllm!m,gpu_memory_utilization=1.5", "gpu_memory_utilization"),
        ("vllm!m,gpu_memory_utilization=lots", "gpu_memory_utilization"),
        ("vllm!m,max_model_len=0", "max_model_len"),
        ("vllm!m,trust_remote_code=2", "trust_remote_code"),
        ("vllm!m,batch_size=4", "batch_size"),
    ],
)
def test_bad_engine_attribute_is_rejected_by_name(identifier: str, key: str) -> None:
    with pytest.raises(InvalidGeneratorError, match=key):
        get_generator(identifier)


# -- generation through from_obj ---------------------------------------------------------------


async def test_texts_go_in_one_generate_call_with_per_item_sampling_params() -> None:
    llm = FakeLLM()
    generator = fake_generator(llm, params=GenerateParams(top_p=0.9))
    params = [
        generator.params.merge_with(GenerateParams(temperature=0, max_tokens=3)),
        generator.params.merge_with(GenerateParams(seed=1, stop=["b"], extra={"min_p": 0.1})),
        generator.params,
    ]

    results = await generator.generate_texts(["a b c", "c b a", "x y"], params)

    assert len(llm.calls) == 1
    method, prompts, sampling = llm.calls[0]
    assert (method, prompts) == ("generate", ["a b c", "c b a", "x y"])
    assert sampling == [
        SamplingParams(temperature=0, top_p=0.9, max_tokens=3),
        SamplingParams(top_p=0.9, seed=1, stop=["b"], min_p=0.1, max_tokens=256),
        SamplingParams(top_p=0.9, max_tokens=256),
    ]
    assert [getattr(r, "text", None) for r in results] == ["c b a", "a ", "y x y x y x y x"]


async def test_outputs_map_to_stop_reason_usage_and_extra() -> None:
    generator = fake_generator()
    length, stopped, finished = await generator.generate_texts(
        ["a b c", "c b a", "hello"],
        [
            GenerateParams(max_tokens=2),
            GenerateParams(stop=["a"]),
            GenerateParams(max_tokens=10),
        ],
    )
    assert not isinstance(length, BaseException)
    assert (length.text, length.stop_reason) == ("c b", "length")
    assert length.usage is not None
    assert (length.usage.input_tokens, length.usage.output_tokens) == (3, 2)
    assert not isinstance(stopped, BaseException)
    assert (stopped.stop_reason, stopped.extra["matched_stop"]) == ("stop", "a")
    assert not isinstance(finished, BaseException)
    assert (finished.stop_reason, finished.extra["finish_reason"]) == ("stop", "stop")


async def test_chat_goes_in_one_chat_call_with_message_dicts() -> None:
    llm = FakeLLM()
    generator = fake_generator(llm)
    chats = await generator.chat().run_batch(
        [["hi there"], [Message("system", "be brief"), Message("user", "why")]]
    )

    assert len(llm.calls) == 1
    method, conversations, _ = llm.calls[0]
    assert method == "chat"
    assert conversations == [
        [{"role": "user", "content": "hi there"}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why"}],
    ]
    assert chats[0].last.role == "assistant"
    assert chats[0].content.startswith("assistant there hi user")
    assert chats[1].usage is not None
    assert chats[1].usage.input_tokens == 6


async def test_too_long_prompt_fails_only_its_item() -> None:
    llm = FakeLLM(max_model_len=5)
    generator = fake_generator(llm)
    long_prompt = " ".join(["w"] * 6)

    results = await generator.generate_texts(
        ["a b", long_prompt, "c d"], [GenerateParams(max_tokens=2)] * 3
    )

    assert isinstance(results[1], ContextLengthError)
    assert "maximum model length of 5" in str(results[1])
    assert [getattr(r, "text", None) for r in (results[0], results[2])] == ["b a", "d c"]
    assert [len(prompts) for _, prompts, _ in llm.calls] == [3, 1, 1, 1]


async def test_invalid_sampling_param_fails_only_its_item() -> None:
    llm = FakeLLM()
    generator = fake_generator(llm)
    results = await generator.generate_texts(
        ["a b", "c d"], [GenerateParams(extra={"no_such_option": 1}), GenerateParams()]
    )
    assert isinstance(results[0], BadRequestError)
    assert "no_such_option" in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert [prompts for _, prompts, _ in llm.calls] == [["c d"]]


async def test_engine_failure_fails_every_item_without_retrying() -> None:
    llm = FakeLLM(fail_with=RuntimeError("CUDA error: an illegal memory access"))
    generator = fake_generator(llm)
    results = await generator.generate_texts(["a", "b"], [GenerateParams()] * 2)
    assert all(isinstance(r, ProviderError) and not r.retryable for r in results)
    assert "illegal memory access" in str(results[0])
    assert len(llm.calls) == 1


async def test_an_engine_returning_too_few_outputs_fails_the_batch() -> None:
    generator = fake_generator(FakeLLM(drop_last_output=True))
    results = await generator.generate_texts(["a", "b"], [GenerateParams()] * 2)
    assert all(isinstance(r, ProviderError) for r in results)
    assert "1 outputs for a batch of 2" in str(results[0])


async def test_wrappers_apply_once_per_batch() -> None:
    calls: list[int] = []

    def count(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(items: list[Any]) -> Any:
            calls.append(len(items))
            return await call(items)

        return counted

    generator = fake_generator().wrap(count)
    await generator.generate_texts(["a", "b", "c"], [GenerateParams()] * 3)
    assert calls == [3]


async def test_generation_runs_off_the_event_loop() -> None:
    generating = threading.Event()
    loop_ran = threading.Event()

    def wait_for_the_loop() -> None:
        generating.set()
        assert loop_ran.wait(timeout=30), "the event loop was blocked during generation"

    generator = fake_generator(FakeLLM(before_generate=wait_for_the_loop))

    async def on_the_loop() -> None:
        # Resumes only if the loop is free while generate() waits in its thread.
        assert await asyncio.to_thread(generating.wait, 30)
        loop_ran.set()

    completion, _ = await asyncio.gather(generator.complete("a b").run(), on_the_loop())
    assert completion.content.startswith("b a")


def test_from_obj_names_the_model_and_round_trips() -> None:
    generator = fake_generator(gpu_memory_utilization=0.4)
    assert generator.model == "org/fake-model"
    assert generator.is_loaded
    assert generator.to_identifier() == "vllm!org/fake-model,gpu_memory_utilization=0.4"


async def test_from_obj_takes_the_engine_by_keyword_too() -> None:
    llm = FakeLLM()
    generator = VLLMGenerator.from_obj(llm=llm, sampling_params_class=SamplingParams)
    assert generator == fake_generator(llm)
    assert (await generator.complete("a b", GenerateParams(max_tokens=2))).content == "b a"


def test_from_obj_rejects_objects_that_cannot_generate() -> None:
    with pytest.raises(InvalidGeneratorError, match="no generate"):
        VLLMGenerator.from_obj(object(), sampling_params_class=SamplingParams)


async def test_unload_drops_the_engine_for_every_copy() -> None:
    generator = fake_generator()
    copy = generator.wrap(lambda call: call)
    assert isinstance(copy, VLLMGenerator)
    assert copy.is_loaded
    assert generator.unload() is generator
    assert not copy.is_loaded
    assert generator.unload() is generator  # nothing loaded: still fine


async def test_unload_waits_for_the_generation_in_progress() -> None:
    generating = threading.Event()
    release = threading.Event()

    def hold() -> None:
        generating.set()
        assert release.wait(timeout=30)

    generator = fake_generator(FakeLLM(before_generate=hold))
    task = asyncio.create_task(generator.complete("a b").run())
    assert await asyncio.to_thread(generating.wait, 30)
    unloading = threading.Thread(target=generator.unload)
    unloading.start()
    unloading.join(timeout=0.2)
    assert unloading.is_alive()  # the engine is not torn down under a running batch
    assert generator.is_loaded

    release.set()
    completion = await task
    await asyncio.to_thread(unloading.join, 30)
    assert not unloading.is_alive()
    assert not generator.is_loaded
    assert completion.content.startswith("b a")


# -- building the engine lazily ---------------------------------------------------------------


@dataclass
class FakeVLLM:
    """Stands in for the `vllm` package, which cannot be installed here.

    It has `LLM` (building a `FakeLLM`), `SamplingParams`, and the teardown functions of
    `vllm.distributed.parallel_state`.
    """

    engines: list[dict[str, Any]] = field(default_factory=list)
    teardowns: list[str] = field(default_factory=list)
    refuse: bool = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        vllm = types.ModuleType("vllm")
        vllm.LLM = self.build  # type: ignore[attr-defined]
        vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
        parallel_state = types.ModuleType("vllm.distributed.parallel_state")
        for name in ("destroy_model_parallel", "destroy_distributed_environment"):
            setattr(parallel_state, name, functools.partial(self.teardowns.append, name))
        monkeypatch.setitem(sys.modules, "vllm", vllm)
        monkeypatch.setitem(sys.modules, "vllm.distributed", types.ModuleType("vllm.distributed"))
        monkeypatch.setitem(sys.modules, "vllm.distributed.parallel_state", parallel_state)

    def build(self, **kwargs: Any) -> FakeLLM:
        if self.refuse:
            raise ValueError(f"Invalid repository ID or local directory: {kwargs['model']!r}")
        self.engines.append(kwargs)
        return FakeLLM(llm_engine=LLMEngine(ModelConfig(kwargs["model"])))


async def test_engine_is_built_lazily_from_the_identifier(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeVLLM()
    fake.install(monkeypatch)
    generator = get_generator(SPEC_IDENTIFIER + ",max_model_len=2048")
    assert isinstance(generator, VLLMGenerator)
    assert fake.engines == []

    completion = await generator.complete("a b", GenerateParams(max_tokens=2))

    assert fake.engines == [
        {
            "model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            "trust_remote_code": True,
            "gpu_memory_utilization": 0.3,
            "max_model_len": 2048,
        }
    ]
    assert completion.content == "b a"
    generator.unload()
    assert fake.teardowns == ["destroy_model_parallel", "destroy_distributed_environment"]
    assert not generator.is_loaded


def test_engine_refusing_the_model_is_an_invalid_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeVLLM(refuse=True)
    fake.install(monkeypatch)
    generator = get_generator("vllm!no/such-model")
    with pytest.raises(InvalidGeneratorError, match="no/such-model"):
        generator.load()


# -- without vllm ------------------------------------------------------------------------------


@pytest.mark.skipif(VLLM_INSTALLED, reason="vllm is installed")
def test_missing_vllm_names_the_extra() -> None:
    generator = get_generator(SPEC_IDENTIFIER)
    with pytest.raises(MissingDependencyError, match=r'pip install "jib\[vllm\]"'):
        generator.load()
    with pytest.raises(MissingDependencyError, match=r'pip install "jib\[vllm\]"'):
        VLLMGenerator.from_obj(FakeLLM())
    with pytest.raises(MissingDependencyError, match="vllm") as info:
        asyncio.run(generator.complete("hi").run())
    assert isinstance(info.value.__cause__, ImportError)


_BLOCKED = """
import json, sys
sys.modules["vllm"] = None
from jib import MissingDependencyError, get_generator
generator = get_generator("vllm!m,max_model_len=128").unload()
try:
    generator.load()
except MissingDependencyError as exc:
    print(json.dumps({"identifier": generator.to_identifier(), "error": str(exc)}))
"""


def test_missing_vllm_names_the_extra_even_where_it_is_installed() -> None:
    result = subprocess.run([sys.executable, "-c", _BLOCKED], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identifier"] == "vllm!m,max_model_len=128"
    assert 'pip install "jib[vllm]"' in report["error"]


# -- the real engine ---------------------------------------------------------------------------


def _gpu_available() -> bool:
    if not VLLM_INSTALLED:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="needs vllm and a GPU")
async def test_real_engine_generates_a_batch(tiny_model_dir: Path) -> None:
    model = os.environ.get("JIB_VLLM_MODEL", str(tiny_model_dir))
    generator = VLLMGenerator(model=model, gpu_memory_utilization=0.3, max_model_len=256)
    try:
        completions = await generator.complete("").run_batch(
            ["hello world", "the quick brown fox"],
            [GenerateParams(temperature=0, max_tokens=4)] * 2,
        )
        chat = await generator.chat("hello", GenerateParams(temperature=0, max_tokens=4))
    finally:
        generator.unload()
    assert all(c.usage and 0 < c.usage.output_tokens <= 4 for c in completions)
    assert chat.stop_reason in ("stop", "length")


# -- beyond text: parts and tools through LLM.chat ---------------------------------------------

CAPITAL = ToolDefinition(
    function=FunctionDefinition(
        name="capital",
        description="The capital of a country.",
        parameters={"type": "object", "properties": {"country": {"type": "string"}}},
    )
)
CLOCK = ToolDefinition(function=FunctionDefinition(name="clock"))
WITH_TOOLS = GenerateParams(tools=[CAPITAL])
HERMES_CALL = '<tool_call>\n{"name": "capital", "arguments": {"country": "France"}}\n</tool_call>'


async def test_parts_go_to_llm_chat_in_the_openai_shape_without_cache_marks() -> None:
    llm = FakeLLM()
    generator = fake_generator(llm)
    marked = {"type": "ephemeral"}
    image = ContentImageUrl.from_bytes(b"\x89PNG", "image/png", detail="low")
    audio = ContentAudioInput.from_bytes(b"RIFF", "wav")
    conversation = [
        Message("system", "be brief", cache_control=marked),
        Message("user", [ContentText("what is this", marked), image, audio]),
    ]

    chat = await generator.chat(conversation, GenerateParams(max_tokens=4))

    (method, (sent,), _) = llm.calls[0]
    assert method == "chat"
    assert sent == [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": image.url, "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            ],
        },
    ]
    assert llm.tools == [None]  # no tools: LLM.chat is called as before
    assert chat.content == "assistant input_audio image_url this"


async def test_tools_go_to_llm_chat_and_a_hermes_call_comes_back() -> None:
    llm = FakeLLM(reply="Checking. " + HERMES_CALL)
    generator = fake_generator(llm)

    chat = await generator.chat("capital of France?", WITH_TOOLS)

    assert llm.tools == [[CAPITAL.to_dict()]]
    assert chat.stop_reason == "tool_calls"
    assert chat.content == "Checking."
    (call,) = chat.last.tool_calls
    assert (call.function.name, call.parsed_arguments()) == ("capital", {"country": "France"})
    assert chat.extra["finish_reason"] == "stop"  # vLLM's own, kept


async def test_a_mistral_call_with_its_marker_decoded_away_comes_back() -> None:
    llm = FakeLLM(reply='[{"name": "capital", "arguments": {"country": "Peru"}}]')
    chat = await fake_generator(llm).chat("capital of Peru?", WITH_TOOLS)
    assert [c.parsed_arguments() for c in chat.last.tool_calls] == [{"country": "Peru"}]
    assert chat.content == ""


async def test_each_set_of_tools_gets_its_own_chat_call() -> None:
    llm = FakeLLM()
    generator = fake_generator(llm)
    both = GenerateParams(tools=[CAPITAL, CLOCK])
    await generator.generate_messages(
        [[Message("user", f"q{n}")] for n in range(5)],
        [WITH_TOOLS, GenerateParams(), both, WITH_TOOLS, GenerateParams()],
    )
    assert [len(prompts) for _, prompts, _ in llm.calls] == [2, 2, 1]
    assert llm.tools == [[CAPITAL.to_dict()], None, [CAPITAL.to_dict(), CLOCK.to_dict()]]
    first = [conversation[0]["content"] for conversation in llm.calls[0][1]]
    assert first == ["q0", "q3"]


async def test_a_tool_round_goes_back_in_the_openai_shape() -> None:
    llm = FakeLLM(reply="Paris it is.")
    call = ToolCall("abc123def", FunctionCall("capital", '{"country": "France"}'))
    conversation = [
        Message("user", "capital of France?"),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", "Paris", tool_call_id="abc123def"),
    ]

    chat = await fake_generator(llm).chat(conversation, WITH_TOOLS)

    assert llm.calls[0][1][0][1:] == [
        {"role": "assistant", "content": "", "tool_calls": [call.to_dict()]},
        {"role": "tool", "content": "Paris", "tool_call_id": "abc123def"},
    ]
    assert (chat.content, chat.stop_reason, chat.last.tool_calls) == ("Paris it is.", "stop", ())


async def test_tool_choice_none_sends_no_tools_and_reads_no_calls() -> None:
    llm = FakeLLM(reply=HERMES_CALL)
    params = WITH_TOOLS.merge_with(GenerateParams(tool_choice="none"))
    chat = await fake_generator(llm).chat("hi", params)
    assert llm.tools == [None]
    assert chat.last.tool_calls == ()
    assert chat.content == HERMES_CALL


@pytest.mark.parametrize(
    ("part", "said"),
    [
        (ContentFile.from_bytes(b"%PDF-1.7", "application/pdf"), "takes no files"),
        (ContentImageUrl.from_url("https://example.com/cat.png"), "fetch remote URLs"),
    ],
)
async def test_parts_llm_chat_cannot_take_fail_before_generating(part: Any, said: str) -> None:
    llm = FakeLLM()
    results = await fake_generator(llm).generate_messages(
        [[Message("user", ["look", part])], [Message("user", "hello")]], [GenerateParams()] * 2
    )
    assert isinstance(results[0], BadRequestError)
    assert "[vllm] message 1 (user), part 2 is" in str(results[0])
    assert said in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert [prompts for _, prompts, _ in llm.calls] == [[[{"role": "user", "content": "hello"}]]]


async def test_a_text_only_engine_refuses_an_image() -> None:
    config = ModelConfig("org/text-model", is_multimodal_model=False)
    llm = FakeLLM(llm_engine=LLMEngine(config))
    image = ContentImageUrl.from_bytes(b"\x89PNG", "image/png")
    (result,) = await fake_generator(llm).generate_messages(
        [[Message("user", ["look", image])]], [GenerateParams()]
    )
    assert isinstance(result, BadRequestError)
    assert "an image (image_url, image/png, 4 B): this model is text-only" in str(result)
    assert llm.calls == []


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (GenerateParams(response_format={"type": "json_object"}), "response_format"),
        (GenerateParams(tool_choice="required"), "tool_choice=required"),
        (GenerateParams(parallel_tool_calls=False), "parallel_tool_calls=False"),
    ],
)
async def test_params_llm_chat_cannot_honour_fail_before_generating(
    params: GenerateParams, named: str
) -> None:
    llm = FakeLLM()
    (result,) = await fake_generator(llm).generate_messages(
        [[Message("user", "hi")]], [WITH_TOOLS.merge_with(params)]
    )
    assert isinstance(result, BadRequestError)
    assert named in str(result)
    assert "vllm!" in str(result)
    assert llm.calls == []


@pytest.mark.parametrize(
    ("params", "named"),
    [
        (WITH_TOOLS, "tools in a completion"),
        (GenerateParams(response_format={"type": "json_object"}), "response_format"),
    ],
)
async def test_a_completion_refuses_tools_and_response_format(
    params: GenerateParams, named: str
) -> None:
    llm = FakeLLM()
    results = await fake_generator(llm).generate_texts(["a b", "c d"], [params, GenerateParams()])
    assert isinstance(results[0], BadRequestError)
    assert named in str(results[0])
    assert not isinstance(results[1], BaseException)
    assert [prompts for _, prompts, _ in llm.calls] == [["c d"]]
