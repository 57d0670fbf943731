"""Identifiers: parsing, typing, round trips, errors and secrets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jib
from jib import (
    GeneratedMessage,
    GenerateParams,
    Generator,
    InvalidGeneratorError,
    Message,
    get_generator,
    get_identifier,
    register_generator,
)
from jib.registry import _sources
from jib.testing import EchoGenerator

SECRET = "sk-very-secret-0123456789"


class Custom(Generator):
    """A user-written generator implementing chat only."""

    custom_field: bool = False
    label: str = ""
    ratio: float = 0.5
    names: list[str] = []

    async def generate_messages(
        self, messages: Sequence[Sequence[Message]], params: Sequence[GenerateParams]
    ) -> Sequence[GeneratedMessage | BaseException]:
        return [
            GeneratedMessage(Message("assistant", f"custom:{self.custom_field}")) for _ in messages
        ]


@pytest.fixture(autouse=True)
def _custom_registered() -> Iterator[None]:
    register_generator("custom", Custom)
    yield
    _sources.pop("custom", None)


# -- the examples SPEC.md names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "class_name", "model", "params"),
    [
        ("gpt-4.1", "LiteLLMGenerator", "gpt-4.1", {}),
        ("openai/o3-mini", "LiteLLMGenerator", "openai/o3-mini", {}),
        ("gemini/gemini-2.5-pro", "LiteLLMGenerator", "gemini/gemini-2.5-pro", {}),
        ("openai/gpt-4,api_key=sk-1234", "LiteLLMGenerator", "openai/gpt-4", {}),
        (
            "anthropic/claude-3-7-haiku-latest,stop=output:;---,seed=1337",
            "LiteLLMGenerator",
            "anthropic/claude-3-7-haiku-latest",
            {"stop": ["output:", "---"], "seed": 1337},
        ),
        (
            "openai/google/gemma-7b,api_base=https://integrate.api.nvidia.com/v1",
            "LiteLLMGenerator",
            "openai/google/gemma-7b",
            {},
        ),
        ("http!spanglish,api_key=KEY", "HTTPGenerator", "spanglish", {}),
        (
            "vllm!TinyLlama/TinyLlama-1.1B-Chat-v1.0,gpu_memory_utilization=0.3,trust_remote_code=True",
            "VLLMGenerator",
            "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            {},
        ),
        (
            "transformers!meta-llama/Meta-Llama-3-8B-Instruct",
            "TransformersGenerator",
            "meta-llama/Meta-Llama-3-8B-Instruct",
            {},
        ),
        ("custom!foo,custom_field=True", "Custom", "foo", {}),
        ("ollama_chat/qwen3:0.6b", "LiteLLMGenerator", "ollama_chat/qwen3:0.6b", {}),
    ],
)
def test_spec_examples_parse_to_the_right_class_model_and_params(
    identifier: str, class_name: str, model: str, params: dict[str, object]
) -> None:
    generator = get_generator(identifier)
    assert type(generator).__name__ == class_name
    assert generator.model == model
    assert generator.params.to_dict() == params


def test_spec_example_attributes_are_typed() -> None:
    vllm = get_generator(
        "vllm!TinyLlama/TinyLlama-1.1B-Chat-v1.0,gpu_memory_utilization=0.3,trust_remote_code=True"
    )
    assert vllm.gpu_memory_utilization == 0.3  # type: ignore[attr-defined]
    assert vllm.trust_remote_code is True  # type: ignore[attr-defined]
    assert get_generator("custom!foo,custom_field=True").custom_field is True  # type: ignore[attr-defined]
    lite = get_generator("openai/gpt-4o,max_connections=4")
    assert lite.max_connections == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "identifier",
    [
        "gpt-4.1",
        "gpt-4o,temperature=0.5",
        "openai/o3-mini,max_tokens=100,top_p=0.9",
        "anthropic/claude-3-7-haiku-latest,stop=output:;---,seed=1337",
        "openai/google/gemma-7b,api_base=https://integrate.api.nvidia.com/v1",
        "vllm!TinyLlama/TinyLlama-1.1B-Chat-v1.0,gpu_memory_utilization=0.3,trust_remote_code=True",
        "transformers!meta-llama/Meta-Llama-3-8B-Instruct",
        "custom!foo,custom_field=True",
        "custom!foo,label=a%2Cb%3Dc%21d%3Be%20f",
        "echo!demo,temperature=0.7,stop=a%3Bb;c",
        "openai/gpt-4o,api_key=env:OPENAI_API_KEY",
    ],
)
def test_canonical_identifiers_round_trip_exactly(identifier: str) -> None:
    assert get_generator(identifier).to_identifier() == identifier


def test_default_provider_may_be_named_or_left_out() -> None:
    assert get_generator("litellm!gpt-4o").to_identifier() == "gpt-4o"
    assert type(get_generator("litellm!gpt-4o")) is type(get_generator("gpt-4o"))


def test_acceptance_command_prints_identifier_without_importing_litellm() -> None:
    import subprocess
    import sys

    code = (
        "import sys, jib; print(jib.get_generator('gpt-4o,temperature=0.5').to_identifier()); "
        "print('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["gpt-4o,temperature=0.5", "False"]


def test_params_argument_overrides_identifier_params() -> None:
    generator = get_generator(
        "echo!demo,temperature=0.5,max_tokens=10", params=GenerateParams(temperature=0.1)
    )
    assert generator.params.temperature == 0.1
    assert generator.params.max_tokens == 10


def test_get_identifier_merges_params_and_short_form() -> None:
    generator = get_generator("echo!demo,temperature=0.5")
    assert get_identifier(generator, GenerateParams(max_tokens=5)) == (
        "echo!demo,temperature=0.5,max_tokens=5"
    )
    assert get_identifier(generator, short=True) == "echo!demo"
    assert get_identifier(get_generator("gpt-4o,seed=1"), short=True) == "gpt-4o"


def test_keys_may_come_in_any_order_and_are_written_canonically() -> None:
    generator = get_generator("custom!foo,temperature=0.2,custom_field=True")
    assert generator.to_identifier() == "custom!foo,custom_field=True,temperature=0.2"


def test_complex_values_are_encoded_and_read_back() -> None:
    generator = get_generator("echo!demo").model_copy(
        update={"params": GenerateParams(extra={"reasoning": {"effort": "low"}, "n": [1, 2]})}
    )
    identifier = generator.to_identifier()
    assert "," not in identifier.split(",extra=")[1]
    assert get_generator(identifier).params.extra == {"reasoning": {"effort": "low"}, "n": [1, 2]}
    assert get_generator('echo!demo,extra={"a":1}').params.extra == {"a": 1}


def test_list_attribute_round_trips() -> None:
    generator = Custom(model="foo", names=["a;b", "c,d", "é"])
    assert get_generator(generator.to_identifier()).names == ["a;b", "c,d", "é"]  # type: ignore[attr-defined]


# -- property-based round trip -------------------------------------------------------------------

any_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(model=any_text.filter(bool), label=any_text)
def test_any_model_and_string_value_round_trips(model: str, label: str) -> None:
    generator = Custom(model=model, label=label)
    rebuilt = get_generator(generator.to_identifier())
    assert rebuilt == generator
    assert rebuilt.model == model
    assert rebuilt.label == label  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(
    stop=st.lists(any_text.filter(bool), min_size=1, max_size=5),
    temperature=st.floats(min_value=0, max_value=2, allow_nan=False),
    seed=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    ratio=st.floats(allow_nan=False, allow_infinity=False),
)
def test_any_params_round_trip(
    stop: list[str], temperature: float, seed: int, ratio: float
) -> None:
    generator = Custom(
        model="m", ratio=ratio, params=GenerateParams(stop=stop, temperature=temperature, seed=seed)
    )
    rebuilt = get_generator(generator.to_identifier())
    assert rebuilt == generator


@settings(max_examples=100, deadline=None)
@given(key=any_text)
def test_env_reference_round_trips_and_plain_keys_never_appear(key: str) -> None:
    plain = Custom(model="m", api_key=SECRET + key)
    assert SECRET not in plain.to_identifier()
    reference = Custom(model="m", api_key="env:MY_KEY")
    assert get_generator(reference.to_identifier()).api_key == reference.api_key


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("nope!model", "unknown provider 'nope'"),
        ("a!b!c", "more than one '!'"),
        ("gpt-4o,temperature", "'temperature' at position 7 is not 'key=value'"),
        ("gpt-4o,,seed=1", "empty part"),
        ("gpt-4o,tempreature=1", "unknown key 'tempreature'"),
        ("gpt-4o,temperature=True", "key 'temperature': Input should be a valid number"),
        ("gpt-4o,max_tokens=1.5", "key 'max_tokens': Input should be a valid integer"),
        ("gpt-4o,max_tokens=-3", "key 'max_tokens'"),
        (
            "custom!foo,custom_field=maybe",
            "key 'custom_field': the value of 'custom_field' must be true or false, not 'maybe'",
        ),
        ("custom!foo,model=other", "key 'model' cannot be set"),
        ("gpt-4o,seed=1,seed=2", "key 'seed' appears twice"),
        ("gpt-4o,bad key=1", "key 'bad key'"),
        ("!model", "provider '' at position 0"),
        ("echo!", "model name is empty"),
        ("gpt-4o,label=%ZZ%FF", "unknown key 'label'"),
        ("custom!m,label=%FF", "not valid UTF-8"),
    ],
)
def test_bad_identifiers_raise_invalid_generator_error_naming_the_bad_part(
    identifier: str, expected: str
) -> None:
    with pytest.raises(InvalidGeneratorError) as caught:
        get_generator(identifier)
    assert expected in str(caught.value)


def test_unknown_key_error_suggests_the_close_one_and_lists_valid_keys() -> None:
    with pytest.raises(InvalidGeneratorError, match="Did you mean 'temperature'") as caught:
        get_generator("custom!foo,tempreature=1")
    assert "custom_field" in str(caught.value)


@pytest.mark.parametrize(
    "identifier",
    [
        f"gpt-4o,api_key={SECRET},temperature=True",
        f"gpt-4o,api_key={SECRET},nonsense=1",
        f"gpt-4o,api_key={SECRET},seed",
        f"nope!gpt-4o,api_key={SECRET}",
        f"a!b!c,api_key={SECRET}",
        f"custom!m,api_key={SECRET},custom_field=maybe",
        f"gpt-4o,api_key=sk,{SECRET},seed=1",
        f"gpt-4o,api_key=sk,{SECRET} tail=1",
    ],
)
def test_invalid_identifier_errors_never_print_the_api_key(identifier: str) -> None:
    with pytest.raises(InvalidGeneratorError) as caught:
        get_generator(identifier)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    cause = caught.value.__cause__
    assert cause is None or SECRET not in str(cause)


def test_api_key_is_kept_out_of_identifier_repr_str_and_chat_json() -> None:
    import asyncio

    generator = get_generator(f"echo!demo,api_key={SECRET}")
    assert generator.get_api_key() == SECRET
    for text in (generator.to_identifier(), repr(generator), str(generator)):
        assert SECRET not in text
    chat = asyncio.run(generator.chat("hi").run())
    assert SECRET not in chat.to_json()
    assert SECRET not in repr(chat)
    assert generator.to_identifier(include_secrets=True).endswith(f"api_key={SECRET}")


def test_env_reference_reads_the_variable_when_used(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = get_generator("echo!demo,api_key=env:JIB_TEST_KEY")
    monkeypatch.setenv("JIB_TEST_KEY", SECRET)
    assert generator.get_api_key() == SECRET
    assert generator.to_identifier() == "echo!demo,api_key=env:JIB_TEST_KEY"
    monkeypatch.delenv("JIB_TEST_KEY")
    with pytest.raises(InvalidGeneratorError, match="JIB_TEST_KEY"):
        generator.get_api_key()


def test_secret_like_custom_fields_are_masked_in_repr() -> None:
    class WithToken(Generator):
        access_token: str = ""

    generator = WithToken(model="m", access_token=SECRET)
    assert SECRET not in repr(generator)


def test_custom_generator_registered_as_mine_serializes_as_mine() -> None:
    register_generator("mine", Custom)
    try:
        generator = Custom(model="foo", custom_field=True)
        # Registered twice (custom, mine): the first registration names it.
        assert generator.to_identifier() == "custom!foo,custom_field=True"
        _sources.pop("custom")
        assert generator.to_identifier() == "mine!foo,custom_field=True"
        assert type(get_generator("mine!foo")) is Custom
    finally:
        _sources.pop("mine", None)


def test_unregistered_generator_has_no_identifier() -> None:
    class Unlisted(Custom):
        pass

    with pytest.raises(InvalidGeneratorError, match="Unlisted is not registered"):
        Unlisted(model="x").to_identifier()


def test_lazy_loader_is_imported_only_when_named() -> None:
    calls: list[str] = []

    def load() -> type[Generator]:
        calls.append("loaded")
        return Custom

    register_generator("lazy", load)
    try:
        assert calls == []
        assert type(get_generator("lazy!x")) is Custom
        get_generator("lazy!y")
        assert calls == ["loaded"]
    finally:
        _sources.pop("lazy", None)


def test_provider_whose_module_is_missing_gives_a_clear_error() -> None:
    register_generator("ghost", "jib.generator.does_not_exist:Ghost")
    try:
        with pytest.raises(InvalidGeneratorError, match="'ghost' is registered but could not"):
            get_generator("ghost!x")
    finally:
        _sources.pop("ghost", None)


def test_register_generator_rejects_bad_names_and_sources() -> None:
    with pytest.raises(InvalidGeneratorError, match="provider name"):
        register_generator("bad name", Custom)
    with pytest.raises(TypeError, match="register_generator needs"):
        register_generator("fine", 42)  # type: ignore[arg-type]


def test_registered_providers_lists_builtins() -> None:
    assert {"litellm", "http", "transformers", "vllm", "echo"} <= set(jib.registered_providers())


# -- edge cases: whitespace, '%', secrets with grammar characters, optional fields ----------------


def test_unescaped_whitespace_around_names_and_values_is_ignored() -> None:
    generator = get_generator(" echo ! demo , temperature = 0.5 , stop = a ; b ")
    assert generator.to_identifier() == "echo!demo,temperature=0.5,stop=a;b"
    assert get_generator("fixed!x, text = hi ").text == "hi"  # type: ignore[attr-defined]


def test_escaped_whitespace_is_kept() -> None:
    generator = get_generator("fixed!x,text=%20hi%20")
    assert generator.text == " hi "  # type: ignore[attr-defined]
    assert generator.to_identifier() == "fixed!x,text=%20hi%20"


def test_a_percent_not_starting_an_escape_is_literal() -> None:
    generator = get_generator("fixed!x,text=100%")
    assert generator.text == "100%"  # type: ignore[attr-defined]
    assert generator.to_identifier() == "fixed!x,text=100%25"
    assert get_generator("fixed!x,text=100%25").text == "100%"  # type: ignore[attr-defined]


def test_api_key_holding_equals_signs_needs_no_escape() -> None:
    assert get_generator("echo!demo,api_key=abc==").get_api_key() == "abc=="


def test_api_key_holding_a_comma_is_written_escaped() -> None:
    generator = get_generator("echo!demo,api_key=sk%2Cpart")
    assert generator.get_api_key() == "sk,part"
    assert "sk" not in generator.to_identifier()
    written = generator.to_identifier(include_secrets=True)
    assert written == "echo!demo,api_key=sk%2Cpart"
    assert get_generator(written).get_api_key() == "sk,part"


def test_unescaped_comma_in_api_key_is_an_error_that_hides_both_halves() -> None:
    with pytest.raises(InvalidGeneratorError) as caught:
        get_generator("echo!demo,api_key=firsthalf,secondhalf,temperature=0.5")
    message = str(caught.value)
    assert "firsthalf" not in message and "secondhalf" not in message
    assert "the part after 'api_key'" in message
    assert "%2C" in message


@settings(max_examples=150, deadline=None)
@given(key=any_text.filter(lambda k: bool(k) and not k.startswith("env:")))
def test_any_api_key_round_trips_when_secrets_are_asked_for(key: str) -> None:
    generator = Custom(model="m", api_key=key)
    rebuilt = get_generator(generator.to_identifier(include_secrets=True))
    assert rebuilt.get_api_key() == key


class WithOptional(Generator):
    """A generator whose optional field has a default other than None."""

    limit: int | None = 5
    note: str | None = None


def test_an_empty_value_unsets_an_optional_field_and_round_trips() -> None:
    register_generator("optional", WithOptional)
    try:
        generator = get_generator("optional!m,limit=")
        assert generator.limit is None  # type: ignore[attr-defined]
        assert generator.to_identifier() == "optional!m,limit="
        assert get_generator(generator.to_identifier()) == generator
        assert get_generator("optional!m").limit == 5  # type: ignore[attr-defined]
        assert get_generator("optional!m,note=").note is None  # type: ignore[attr-defined]
    finally:
        _sources.pop("optional", None)


def test_an_empty_param_value_means_not_set() -> None:
    generator = get_generator("echo!demo,temperature=,seed=3")
    assert generator.params.temperature is None
    assert generator.to_identifier() == "echo!demo,seed=3"


def test_a_model_validator_error_does_not_chain_pydantic_input_holding_the_key() -> None:
    from pydantic import model_validator

    class Picky(Generator):
        size: int = 1

        @model_validator(mode="after")
        def _check(self) -> Picky:
            if self.size > 10:
                raise ValueError("size must be at most 10")
            return self

    register_generator("picky", Picky)
    try:
        with pytest.raises(InvalidGeneratorError, match="size must be at most 10") as caught:
            get_generator(f"picky!m,api_key={SECRET},size=11")
        assert SECRET not in str(caught.value)
        assert caught.value.__cause__ is None
    finally:
        _sources.pop("picky", None)


def test_generators_compare_by_fields_not_runtime_state() -> None:
    generator = Custom(model="foo", custom_field=True)
    assert generator == Custom(model="foo", custom_field=True)
    assert generator.wrap(lambda call: call) == generator
    assert generator != Custom(model="foo", custom_field=True, api_key="other")
    assert generator != Custom(model="bar", custom_field=True)
    assert generator != EchoGenerator(model="foo")


def test_registered_chat_only_generator_refuses_complete_naming_its_class() -> None:
    generator = get_generator("custom!foo,custom_field=True")
    with pytest.raises(NotImplementedError, match="Custom does not support text completion"):
        generator.complete("hi")


def test_register_generator_takes_the_spec_keyword() -> None:
    register_generator("kw", cls_or_lazy_loader=Custom)
    try:
        assert type(get_generator("kw!x")) is Custom
    finally:
        _sources.pop("kw", None)


def test_fields_excluded_from_serialization_stay_out_of_identifiers() -> None:
    from collections.abc import Callable

    from pydantic import Field

    class WithHook(Generator):
        hook: Callable[..., object] | None = Field(default=None, exclude=True)
        size: int = 1

    register_generator("hooked", WithHook)
    try:
        generator = WithHook(model="m", hook=print, size=2)
        assert generator.to_identifier() == "hooked!m,size=2"
    finally:
        _sources.pop("hooked", None)


def test_a_provider_registered_as_something_else_is_a_clear_error() -> None:
    register_generator("notgen", lambda: int)  # type: ignore[arg-type,return-value]
    try:
        with pytest.raises(InvalidGeneratorError, match=r"'notgen' is registered as .*not a Gen"):
            get_generator("notgen!x")
    finally:
        _sources.pop("notgen", None)
        from jib.registry import _loaded

        _loaded.pop("notgen", None)
