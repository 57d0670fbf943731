"""TransformersGenerator on a real (tiny, random) Llama model: loading, batching, params, errors."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jib import (
    BadRequestError,
    ContextLengthError,
    GenerateParams,
    GeneratorWarning,
    InvalidGeneratorError,
    Message,
    ServerError,
    get_generator,
)
from jib.generator.transformers import TransformersGenerator

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

GREEDY = GenerateParams(temperature=0, max_tokens=6)
# Eight prompts of different token lengths (the tokenizer is word-level: one word, one token).
MIXED_PROMPTS = [
    "the",
    "hello world",
    "one two three",
    "red green blue yellow",
    "the quick brown fox jumps",
    "what is the capital of france",
    "say hello to the user and answer",
    "one two three four five six seven eight",
]


class CallCounter:
    """Wraps a model's `generate` (the test's own model object) to record each call's batch."""

    def __init__(self, model: Any) -> None:
        self.batch_sizes: list[int] = []
        self.new_tokens: list[int] = []
        self.kwargs: list[dict[str, Any]] = []
        self._generate = model.generate
        model.generate = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs["input_ids"]
        self.batch_sizes.append(input_ids.shape[0])
        self.kwargs.append(kwargs)
        output = self._generate(*args, **kwargs)
        self.new_tokens.append(output.shape[1] - input_ids.shape[1])
        return output


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    """The tiny model's tokenizer, loaded independently of jib to compute expectations."""
    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> Iterator[TransformersGenerator]:
    """A generator built from an identifier, loaded once for the module."""
    built = get_generator(f"transformers!{tiny_model_dir}")
    assert isinstance(built, TransformersGenerator)
    yield built.load()
    built.unload()


def fresh_model(path: Path) -> Any:
    """A model object the test owns (so it may instrument it)."""
    return transformers.AutoModelForCausalLM.from_pretrained(path).eval()


def raw_greedy(model: Any, tokenizer: Any, prompt_ids: list[int], new_tokens: int) -> list[int]:
    """What plain transformers generates greedily for one unpadded prompt."""
    with torch.inference_mode():
        output = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    generated: list[int] = output[0, len(prompt_ids) :].tolist()
    return generated


# -- identifiers (no model loaded) -------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier",
    [
        "transformers!meta-llama/Meta-Llama-3-8B-Instruct",
        "transformers!Qwen/Qwen2.5-0.5B-Instruct,batch_size=16,device_map=auto,"
        "torch_dtype=bfloat16,trust_remote_code=True,temperature=0.2",
        "transformers!/models/local%2Cmodel,revision=main,attn_implementation=sdpa",
    ],
)
def test_identifier_round_trips_without_loading(identifier: str) -> None:
    generator = get_generator(identifier)
    assert isinstance(generator, TransformersGenerator)
    assert generator.to_identifier() == identifier
    assert not generator.is_loaded


def test_identifier_attributes_are_typed() -> None:
    generator = get_generator("transformers!m,batch_size=4,trust_remote_code=True")
    assert isinstance(generator, TransformersGenerator)
    assert generator.batch_size == 4
    assert generator.trust_remote_code is True


def test_model_kwargs_round_trip_through_identifier() -> None:
    generator = TransformersGenerator(model="m", model_kwargs={"low_cpu_mem_usage": True})
    again = get_generator(generator.to_identifier())
    assert again == generator


@pytest.mark.parametrize(
    ("identifier", "key"),
    [
        ("transformers!m,batch_size=0", "batch_size"),
        ("transformers!m,batch_size=1.5", "batch_size"),
        ("transformers!m,torch_dtype=float8", "torch_dtype"),
        ("transformers!m,trust_remote_code=maybe", "trust_remote_code"),
        ("transformers!m,gpu_memory_utilization=0.3", "gpu_memory_utilization"),
    ],
)
def test_bad_identifier_attribute_is_rejected_by_name(identifier: str, key: str) -> None:
    with pytest.raises(InvalidGeneratorError, match=key):
        get_generator(identifier)


# -- chat and text -----------------------------------------------------------------------------


async def test_chat_uses_the_chat_template(
    generator: TransformersGenerator, tokenizer: Any
) -> None:
    messages = [{"role": "system", "content": "say hello"}, {"role": "user", "content": "hi"}]
    chat = await generator.chat(messages, GREEDY)

    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert chat.last.role == "assistant"
    assert chat.usage is not None
    assert chat.usage.input_tokens == len(prompt_ids)
    assert chat.usage.output_tokens == 6
    assert chat.stop_reason == "length"
    assert (
        chat.content.split()
        == tokenizer.decode(
            raw_greedy(generator.get_model_and_tokenizer()[0], tokenizer, prompt_ids, 6),
            skip_special_tokens=True,
        ).split()
    )


async def test_from_obj_completes_text_like_plain_transformers(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)

    completion = await generator.complete("the quick brown fox", GREEDY)

    prompt_ids = tokenizer("the quick brown fox")["input_ids"]
    expected = tokenizer.decode(
        raw_greedy(model, tokenizer, prompt_ids, 6), skip_special_tokens=True
    )
    assert completion.content == expected
    assert completion.usage is not None
    assert completion.usage.input_tokens == len(prompt_ids) == 4
    assert generator.model == str(tiny_model_dir)
    assert get_generator(generator.to_identifier()) == TransformersGenerator(
        model=str(tiny_model_dir)
    )


async def test_from_obj_takes_model_and_tokenizer_positionally_too(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    by_position = TransformersGenerator.from_obj(model, tokenizer, batch_size=2)
    by_keyword = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer, batch_size=2)

    assert by_position.get_model_and_tokenizer() == (model, tokenizer)
    assert by_position == by_keyword
    assert await by_position.generate_texts(["hello world"], [GREEDY]) == (
        await by_keyword.generate_texts(["hello world"], [GREEDY])
    )


def test_from_obj_rejects_objects_that_cannot_generate(tokenizer: Any) -> None:
    with pytest.raises(InvalidGeneratorError, match="no generate"):
        TransformersGenerator.from_obj(model=object(), tokenizer=tokenizer)


def test_from_obj_rejects_encoder_decoder_models(tokenizer: Any) -> None:
    config = transformers.T5Config(
        vocab_size=64, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2
    )
    model = transformers.T5ForConditionalGeneration(config)
    with pytest.raises(InvalidGeneratorError, match="encoder-decoder"):
        TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)


# -- batching ----------------------------------------------------------------------------------


async def test_batch_of_mixed_lengths_is_one_generate_call(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)

    completions = await generator.complete("").run_batch(MIXED_PROMPTS, [GREEDY] * 8)

    assert counter.batch_sizes == [8]
    assert [c.usage.input_tokens for c in completions if c.usage] == [
        len(p.split()) for p in MIXED_PROMPTS
    ]
    assert all(c.usage and c.usage.output_tokens == 6 for c in completions)


async def test_batch_is_split_into_sub_batches_of_batch_size(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer, batch_size=3)

    completions = await generator.complete("").run_batch(MIXED_PROMPTS, [GREEDY] * 8)

    assert sorted(counter.batch_sizes) == [2, 3, 3]
    assert len(completions) == 8


async def test_batch_is_left_padded_with_a_mask_whatever_the_tokenizer_says(
    tiny_model_dir: Path,
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="right")
    eos = tokenizer.eos_token_id
    tokenizer.pad_token = None  # a tokenizer without a pad token, like many base models
    model = fresh_model(tiny_model_dir)
    model.generation_config.pad_token_id = None
    counter = CallCounter(model)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    prompts = ["hello", "the quick brown fox", "one two"]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "right-padding was detected" warning either
        results = await generator.generate_texts(prompts, [GREEDY] * 3)

    (call,) = counter.kwargs
    assert call["pad_token_id"] == eos
    rows: list[list[int]] = call["input_ids"].tolist()
    masks: list[list[int]] = call["attention_mask"].tolist()
    expected = {tuple(tokenizer(p)["input_ids"]) for p in prompts}
    assert {tuple(ids[len(ids) - sum(mask) :]) for ids, mask in zip(rows, masks, strict=True)} == (
        expected
    )
    for ids, mask in zip(rows, masks, strict=True):
        padding = len(mask) - sum(mask)
        assert mask == [0] * padding + [1] * sum(mask)  # padding on the left only
        assert ids[:padding] == [eos] * padding
    usage = [r.usage for r in results if not isinstance(r, BaseException)]
    assert [u.input_tokens for u in usage if u] == [1, 4, 2]


async def test_rows_that_end_early_count_only_their_real_tokens(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    checked = counter._generate
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id

    def first_row_ends_after_three_tokens(*args: Any, **kwargs: Any) -> Any:
        # What generate returns when row 0 emits its end token early: the rest of it is padding.
        output = checked(*args, **kwargs).clone()
        width = kwargs["input_ids"].shape[1]
        output[0, width + 2] = eos
        output[0, width + 3 :] = pad
        return output

    counter._generate = first_row_ends_after_three_tokens
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    params = GenerateParams(temperature=0, max_tokens=8)

    short, full = await generator.generate_texts(["hello world", "one two three"], [params] * 2)

    assert not isinstance(short, BaseException) and not isinstance(full, BaseException)
    assert (short.stop_reason, full.stop_reason) == ("stop", "length")
    assert short.usage is not None and full.usage is not None
    assert (short.usage.input_tokens, short.usage.output_tokens) == (2, 3)
    assert (full.usage.input_tokens, full.usage.output_tokens) == (3, 8)
    assert len(short.text.split()) == 2
    assert len(full.text.split()) == 8


async def test_params_map_to_generate_arguments(tiny_model_dir: Path, tokenizer: Any) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)

    await generator.generate_texts(["hello"], [GREEDY])
    await generator.generate_texts(
        ["hello"], [GenerateParams(temperature=0.7, top_p=0.9, top_k=5, max_tokens=3, seed=1)]
    )
    await generator.generate_texts(["hello"], [GenerateParams(max_tokens=2)])

    greedy, sampled, defaults = counter.kwargs
    assert greedy["do_sample"] is False
    assert greedy["max_new_tokens"] == 6
    assert {k: sampled[k] for k in ("do_sample", "temperature", "top_p", "top_k")} == {
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 5,
    }
    assert sampled["max_new_tokens"] == 3
    # Nothing set: the model's own generation_config decides.
    assert "do_sample" not in defaults and "temperature" not in defaults
    assert defaults["max_new_tokens"] == 2


async def test_items_with_different_generation_settings_go_in_separate_calls(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    short = GREEDY.merge_with(GenerateParams(max_tokens=2))

    results = await generator.generate_texts(MIXED_PROMPTS[:4], [GREEDY, short, GREEDY, short])

    assert sorted(counter.batch_sizes) == [2, 2]
    assert [
        r.usage.output_tokens for r in results if not isinstance(r, BaseException) and r.usage
    ] == [
        6,
        2,
        6,
        2,
    ]


async def test_greedy_generation_is_deterministic(generator: TransformersGenerator) -> None:
    first = await generator.generate_texts(MIXED_PROMPTS, [GREEDY] * 8)
    second = await generator.generate_texts(MIXED_PROMPTS, [GREEDY] * 8)
    assert first == second


async def test_batch_equals_one_by_one_for_prompts_of_equal_length(
    generator: TransformersGenerator,
) -> None:
    prompts = ["the quick brown", "hello world this", "red green blue", "one two three"]
    batched = await generator.generate_texts(prompts, [GREEDY] * 4)
    one_by_one = [(await generator.generate_texts([p], [GREEDY]))[0] for p in prompts]
    assert batched == one_by_one


async def test_wrappers_apply_to_each_sub_batch(generator: TransformersGenerator) -> None:
    calls: list[int] = []

    def count(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(items: list[Any]) -> Any:
            calls.append(len(items))
            return await call(items)

        return counted

    wrapped = generator.model_copy(update={"batch_size": 4}).wrap(count)
    await wrapped.generate_texts(MIXED_PROMPTS, [GREEDY] * 8)
    assert calls == [4, 4]


async def test_a_retry_wrapper_retries_a_failed_sub_batch(generator: TransformersGenerator) -> None:
    attempts: list[int] = []

    def flaky_then_retry(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def retrying(items: list[Any]) -> Any:
            for _ in range(3):
                attempts.append(len(items))
                try:
                    if len(attempts) == 1:
                        raise ServerError("transient", provider="test")
                    return await call(items)
                except ServerError:
                    continue
            raise AssertionError("not retried")

        return retrying

    results = await generator.wrap(flaky_then_retry).generate_texts(["the quick"], [GREEDY])
    assert attempts == [1, 1]
    assert not isinstance(results[0], BaseException)


# -- params ------------------------------------------------------------------------------------


async def test_max_tokens_limits_output_and_sets_length(generator: TransformersGenerator) -> None:
    completion = await generator.complete("the quick", GenerateParams(temperature=0, max_tokens=3))
    assert completion.stop_reason == "length"
    assert completion.usage is not None
    assert completion.usage.output_tokens == 3
    assert len(completion.content.split()) == 3


async def test_seed_makes_sampling_repeatable(generator: TransformersGenerator) -> None:
    params = GenerateParams(temperature=1.5, seed=7, max_tokens=12)
    first = await generator.complete("hello world", params)
    second = await generator.complete("hello world", params)
    other = await generator.complete("hello world", params.merge_with(GenerateParams(seed=8)))
    assert first.content == second.content
    assert first.content != other.content


async def test_stop_sequence_cuts_output_and_sets_stop(generator: TransformersGenerator) -> None:
    params = GenerateParams(temperature=1.5, seed=3, max_tokens=16)
    full = (await generator.complete("hello world", params)).content
    words = full.split()
    assert len(words) >= 4, full
    stop = words[2]

    completion = await generator.complete(
        "hello world", params.merge_with(GenerateParams(stop=[stop]))
    )

    assert completion.content == full[: full.index(stop)]
    assert completion.stop_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.output_tokens < 16


async def test_stop_sequences_apply_per_item_in_one_batch(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    params = GenerateParams(temperature=1.5, seed=5, max_tokens=10)
    prompts = ["hello world", "the quick brown"]
    plain = await generator.generate_texts(prompts, [params, params])
    first_text = plain[0].text  # type: ignore[union-attr]
    stop = first_text.split()[1]

    stopped = await generator.generate_texts(
        prompts, [params.merge_with(GenerateParams(stop=[stop])), params]
    )

    assert counter.batch_sizes == [2, 2]
    assert stopped[0].text == first_text[: first_text.index(stop)]  # type: ignore[union-attr]
    assert stopped[1] == plain[1]


async def test_unsupported_params_warn(generator: TransformersGenerator) -> None:
    with pytest.warns(GeneratorWarning, match="presence_penalty"):
        await generator.complete("the", GREEDY.merge_with(GenerateParams(presence_penalty=0.5)))


async def test_extra_params_reach_generate(generator: TransformersGenerator) -> None:
    params = GREEDY.merge_with(GenerateParams(max_tokens=8, extra={"repetition_penalty": 5.0}))
    repeated = await generator.complete(
        "the quick", GREEDY.merge_with(GenerateParams(max_tokens=8))
    )
    penalized = await generator.complete("the quick", params)
    assert len(set(penalized.content.split())) > len(set(repeated.content.split()))


# -- failures ----------------------------------------------------------------------------------


async def test_too_long_prompt_fails_only_its_item(generator: TransformersGenerator) -> None:
    long_prompt = " ".join(["the"] * 600)
    results = await generator.generate_texts(["hello world", long_prompt], [GREEDY, GREEDY])
    assert not isinstance(results[0], BaseException)
    assert isinstance(results[1], ContextLengthError)
    assert "600 tokens" in str(results[1])


async def test_empty_prompt_is_a_bad_request(generator: TransformersGenerator) -> None:
    results = await generator.generate_texts(["", "hello"], [GREEDY, GREEDY])
    assert isinstance(results[0], BadRequestError)
    assert "empty" in str(results[0])
    assert not isinstance(results[1], BaseException)


async def test_unknown_extra_param_fails_its_item_with_a_bad_request(
    generator: TransformersGenerator,
) -> None:
    bad = GREEDY.merge_with(GenerateParams(extra={"not_a_generate_option": 1}))
    results = await generator.generate_texts(["hello", "hello"], [bad, GREEDY])
    assert isinstance(results[0], BadRequestError)
    assert "not_a_generate_option" in str(results[0])
    assert not isinstance(results[1], BaseException)


async def test_several_outputs_per_prompt_are_refused(generator: TransformersGenerator) -> None:
    params = GREEDY.merge_with(GenerateParams(extra={"num_return_sequences": 2}))
    results = await generator.generate_texts(["hello"], [params])
    assert isinstance(results[0], BadRequestError)
    assert "num_return_sequences" in str(results[0])


async def test_a_batch_rejected_for_one_item_is_retried_item_by_item(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    poison = tokenizer.convert_tokens_to_ids("purple")
    checked = counter._generate

    def picky_generate(*args: Any, **kwargs: Any) -> Any:
        if (kwargs["input_ids"] == poison).any():
            raise ValueError("token 'purple' is not allowed")
        return checked(*args, **kwargs)

    counter._generate = picky_generate
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)

    results = await generator.generate_texts(
        ["hello world", "red purple", "the quick"], [GREEDY] * 3
    )

    assert isinstance(results[1], BadRequestError)
    assert "purple" in str(results[1])
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    assert counter.batch_sizes == [3, 1, 1, 1]


async def test_chat_without_a_chat_template_says_so(tiny_model_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    generator = TransformersGenerator.from_obj(
        model=fresh_model(tiny_model_dir), tokenizer=tokenizer
    )
    results = await generator.generate_messages([[Message("user", "hi")]], [GREEDY])
    assert isinstance(results[0], InvalidGeneratorError)
    assert "chat template" in str(results[0])


def test_identifier_attributes_reach_from_pretrained(tiny_model_dir: Path) -> None:
    generator = get_generator(
        f"transformers!{tiny_model_dir},torch_dtype=bfloat16,attn_implementation=eager,"
        'model_kwargs={"output_attentions":true}'
    )
    assert isinstance(generator, TransformersGenerator)
    model, _ = generator.get_model_and_tokenizer()
    assert model.dtype == torch.bfloat16
    assert model.config._attn_implementation == "eager"
    assert model.config.output_attentions is True


def test_every_loading_attribute_reaches_from_pretrained(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, dict[str, Any]] = {}

    def spy(auto_class: Any, name: str) -> None:
        real = auto_class.from_pretrained

        def recording(path: Any, **kwargs: Any) -> Any:
            seen[name] = {"path": str(path), **kwargs}
            kwargs.pop("device_map", None)  # placement needs accelerate; it is not the subject
            return real(path, **kwargs)

        monkeypatch.setattr(auto_class, "from_pretrained", recording)

    spy(transformers.AutoModelForCausalLM, "model")
    spy(transformers.AutoTokenizer, "tokenizer")
    generator = get_generator(
        f"transformers!{tiny_model_dir},device_map=cpu,torch_dtype=float32,trust_remote_code=True,"
        "revision=main,attn_implementation=eager,api_key=hf_token_1,"
        'model_kwargs={"low_cpu_mem_usage":true}'
    )

    generator.load()

    common = {"path": str(tiny_model_dir), "trust_remote_code": True, "revision": "main"}
    assert seen["tokenizer"] == {**common, "token": "hf_token_1"}
    # transformers 4.56 renamed `torch_dtype` to `dtype`; older versions take the old name.
    dtype_key = "dtype" if "dtype" in seen["model"] else "torch_dtype"
    assert seen["model"] == {
        **common,
        "token": "hf_token_1",
        "device_map": "cpu",
        dtype_key: "float32",
        "attn_implementation": "eager",
        "low_cpu_mem_usage": True,
    }


def test_api_key_is_a_hub_token_that_never_shows(tiny_model_dir: Path) -> None:
    generator = get_generator(f"transformers!{tiny_model_dir},api_key=hf_secret_token_123")
    assert isinstance(generator, TransformersGenerator)
    assert "hf_secret" not in generator.to_identifier()
    assert "hf_secret" not in repr(generator)
    assert generator.load().is_loaded  # a local directory ignores the token


def test_loading_a_missing_model_names_it(tmp_path: Path) -> None:
    generator = TransformersGenerator(model=str(tmp_path / "no-such-model"))
    with pytest.raises(InvalidGeneratorError, match="no-such-model"):
        generator.load()
    assert not generator.is_loaded


# -- lifecycle ---------------------------------------------------------------------------------


async def test_model_loads_lazily_and_unload_frees_it(tiny_model_dir: Path) -> None:
    generator = TransformersGenerator(model=str(tiny_model_dir))
    copy = generator.wrap(lambda call: call)
    assert isinstance(copy, TransformersGenerator)
    assert not generator.is_loaded

    await generator.complete("hello", GREEDY)
    assert generator.is_loaded
    assert copy.is_loaded  # wrapped copies share the loaded model

    assert copy.unload() is copy
    assert not generator.is_loaded
    completion = await generator.complete("hello", GREEDY)  # loads again
    assert completion.usage is not None
    assert generator.unload().load().is_loaded


async def test_unload_leaves_no_reference_to_the_model(tiny_model_dir: Path) -> None:
    generator = TransformersGenerator(model=str(tiny_model_dir))
    copy = generator.wrap(lambda call: call)
    await copy.generate_texts(["hello world", "the"], [GREEDY] * 2)
    model_ref = weakref.ref(generator.get_model_and_tokenizer()[0])

    generator.unload()
    gc.collect()

    assert model_ref() is None


def test_generator_works_across_event_loops(generator: TransformersGenerator) -> None:
    first = asyncio.run(generator.complete("hello world", GREEDY).run())
    second = asyncio.run(generator.complete("hello world", GREEDY).run())
    assert first.content == second.content


async def test_generation_runs_off_the_event_loop(tiny_model_dir: Path, tokenizer: Any) -> None:
    model = fresh_model(tiny_model_dir)
    generating = threading.Event()
    loop_ran = threading.Event()
    original = model.generate

    def blocking_generate(*args: Any, **kwargs: Any) -> Any:
        generating.set()
        # Only a coroutine on the event loop sets this; if generate ran on the loop, it would not.
        assert loop_ran.wait(timeout=30), "the event loop was blocked during generation"
        return original(*args, **kwargs)

    model.generate = blocking_generate
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)

    async def on_the_loop() -> None:
        # Resumes only if the loop is free while generate() waits in its thread.
        assert await asyncio.to_thread(generating.wait, 30)
        loop_ran.set()

    completion, _ = await asyncio.gather(generator.complete("hello", GREEDY).run(), on_the_loop())
    assert completion.usage is not None


async def test_event_loop_keeps_ticking_during_generation(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    original = model.generate

    def slow_generate(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.5)  # stands in for a big model: blocks its thread for half a second
        return original(*args, **kwargs)

    model.generate = slow_generate
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        await generator.generate_texts(["hello world"], [GREEDY])
    finally:
        ticking.cancel()
    assert ticks >= 10  # ~50 if the loop was free; 0 or 1 if generate blocked it


def test_calls_from_several_threads_and_loops_are_serialized(
    tiny_model_dir: Path, tokenizer: Any
) -> None:
    model = fresh_model(tiny_model_dir)
    original = model.generate
    active: list[int] = []
    overlaps: list[int] = []
    lock = threading.Lock()

    def exclusive_generate(*args: Any, **kwargs: Any) -> Any:
        with lock:
            active.append(1)
            overlaps.append(len(active))
        try:
            time.sleep(0.02)
            return original(*args, **kwargs)
        finally:
            with lock:
                active.pop()

    model.generate = exclusive_generate
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    prompts = ["hello world this", "the quick brown", "red green blue"]
    expected = asyncio.run(generator.generate_texts(prompts, [GREEDY] * 3))
    results: list[Any] = []

    def in_its_own_loop() -> None:
        async def several() -> list[Any]:
            return list(
                await asyncio.gather(
                    *(generator.generate_texts(prompts, [GREEDY] * 3) for _ in range(3))
                )
            )

        results.extend(asyncio.run(several()))

    threads = [threading.Thread(target=in_its_own_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert max(overlaps) == 1
    assert results == [expected] * 9


async def test_cancelling_stops_generation_early(tiny_model_dir: Path, tokenizer: Any) -> None:
    model = fresh_model(tiny_model_dir)
    counter = CallCounter(model)
    started = threading.Event()
    original = counter._generate

    def signalling_generate(*args: Any, **kwargs: Any) -> Any:
        started.set()
        return original(*args, **kwargs)

    counter._generate = signalling_generate
    generator = TransformersGenerator.from_obj(model=model, tokenizer=tokenizer)
    task = asyncio.create_task(
        generator.complete("hello", GenerateParams(temperature=0, max_tokens=20_000)).run()
    )
    assert await asyncio.to_thread(started.wait, 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    after = await generator.complete("hello", GREEDY)  # the model is free again
    assert after.usage is not None
    assert counter.new_tokens[0] < 20_000


# -- without the extra -------------------------------------------------------------------------

_WITHOUT_TORCH = """
import asyncio, json, sys
for name in ("torch", "transformers", "vllm"):
    sys.modules[name] = None  # importing them now fails, as if not installed
import jib
from jib import MissingDependencyError, get_generator

generator = get_generator("transformers!meta-llama/Meta-Llama-3-8B-Instruct,batch_size=2")
report = {"identifier": generator.to_identifier()}
try:
    generator.load()
except MissingDependencyError as exc:
    report["load"] = str(exc)
try:
    asyncio.run(generator.chat("hi").run())
except MissingDependencyError as exc:
    report["chat"] = str(exc)
print(json.dumps(report))
"""


def test_missing_extra_names_what_to_install() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identifier"] == "transformers!meta-llama/Meta-Llama-3-8B-Instruct,batch_size=2"
    for key in ("load", "chat"):
        assert 'pip install "jib[transformers]"' in report[key]


def test_import_jib_does_not_import_torch() -> None:
    code = "import sys, jib, jib.generator.transformers, jib.generator.vllm; " + (
        "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_warnings_on_greedy_generation(generator: TransformersGenerator) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(generator.complete("hello", GREEDY).run())
