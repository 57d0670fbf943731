"""Fuzzing identifiers, specs and JSONL prompt lines: only jib's documented errors come out.

Each property feeds random and near-valid input to a reader of untrusted data and accepts only
what that reader documents (and, for identifiers and params from data, only what their provider
declares inert or the user allowed): `get_generator` raises `JibError` subclasses, `HTTPSpec` raises
pydantic's `ValidationError` (its documented error for a bad spec), requests and responses
`ProcessingError`, the CLI's prompt reader `CliError`. Every example must finish within the
issue's 2 s budget, as CPU time (`within_budget`): hypothesis's `deadline` reads the clock, which
a busy machine stretches.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from jib import Chat, GenerateParams, Message, TrustPolicy, UntrustedIdentifierError, get_generator
from jib.cli._common import CliError
from jib.cli._prompts import PromptsFile
from jib.errors import JibError, ProcessingError
from jib.generator.base import Generator
from jib.generator.http import HTTPSpec, RequestTransformContext
from jib.registry import resolve_provider
from jib.storage import ChatStore, input_key, open_store
from jib.trust import ANY_EXTRA, EXTRA_PREFIX
from tests.security.recording_server import RunningRecorder, run_recorder

BUDGET_SECONDS = 2.0

FUZZ = settings(
    max_examples=150,
    deadline=None,  # the budget is CPU time: `within_budget`
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


P = ParamSpec("P")


def within_budget(test: Callable[P, None]) -> Callable[P, None]:
    """Each example must use less than `BUDGET_SECONDS` of CPU time (all of this process's
    threads): pathological input burns CPU, while a busy machine only makes it wait."""

    @functools.wraps(test)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        start = time.process_time()
        test(*args, **kwargs)
        used = time.process_time() - start
        assert used < BUDGET_SECONDS, f"used {used:.2f}s of CPU; the budget is {BUDGET_SECONDS}s"

    return run


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


# -- building blocks -------------------------------------------------------------------------------

# Every code point, lone surrogates included (hypothesis leaves them out by default): a byte
# that is not UTF-8 on a command line arrives as one.
any_text = st.text(st.characters(blacklist_categories=()), max_size=60)
# The grammar's own characters, escapes (a surrogate's too), brackets and quotes are where
# parsers break. Raw surrogates come from `any_text`: near-valid input would stop at the first.
_TRICKY = st.sampled_from(
    [*"%,=!;[]{}\"'\\: \t\n\r#&*|>-", "%2C", "%ZZ", "%ED%A0%80", "%FF", "\\ud800"]
)
tricky_text = st.lists(st.one_of(_TRICKY, st.text(max_size=4)), max_size=12).map("".join)

depths = st.one_of(st.sampled_from([99, 100, 101, 1_000, 5_000, 100_000]), st.integers(0, 3_000))
deep_brackets = st.builds(
    lambda opening, depth, closed: (
        opening * depth + ("]" if opening == "[" else "}") * depth * closed
    ),
    st.sampled_from(["[", '{"a":']),
    depths,
    st.booleans(),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=20,
)

number_words = st.sampled_from(
    ["nan", "NaN", "inf", "-inf", "1e400", "1e12", "-0", "0x10", "1_000", "True", "", " 1 "]
)

identifier_values = st.one_of(
    number_words,
    st.integers().map(str),
    st.floats().map(str),
    tricky_text,
    deep_brackets,
    json_values.map(lambda value: json.dumps(value)),
    json_values.map(lambda value: b64(json.dumps(value))),
    deep_brackets.map(b64),
)

_KEYS = [
    "temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "presence_penalty",
    "frequency_penalty", "timeout", "extra", "api_key", "api_base", "spec", "max_connections",
    "min_delay_between_requests", "max_retries", "retry_backoff", "max_retry_wait",
    "max_response_bytes", "max_redirects", "gpu_memory_utilization", "batch_size", "text",
    "model", "params",
]  # fmt: skip
_PROVIDERS = [None, "echo", "fixed", "http", "litellm", "vllm", "transformers", "nope", "a b"]


@st.composite
def near_valid_identifiers(draw: st.DrawFn) -> str:
    provider = draw(st.sampled_from(_PROVIDERS))
    model = draw(st.one_of(st.sampled_from(["m", "openai/gpt-4o", "x:y"]), tricky_text))
    items = draw(
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from(["extra", "spec", "stop"]), st.sampled_from(_KEYS)),
                identifier_values,
            )
            | st.tuples(tricky_text, identifier_values),
            max_size=4,
        )
    )
    head = f"{provider}!{model}" if provider else model
    return ",".join([head, *(f"{key}={value}" for key, value in items)])


def assert_round_trips(identifier: str) -> None:
    """An identifier jib accepted is written back and read again to the same identifier."""
    generator = get_generator(identifier)
    written = generator.to_identifier()
    assert get_generator(written).to_identifier() == written


# -- identifiers -----------------------------------------------------------------------------------


@FUZZ
@given(any_text)
@within_budget
def test_any_text_as_an_identifier_gives_a_generator_or_a_jib_error(identifier: str) -> None:
    with contextlib.suppress(JibError):
        assert_round_trips(identifier)


@settings(FUZZ, max_examples=300)
@given(near_valid_identifiers())
@within_budget
def test_near_valid_identifiers_give_a_generator_or_a_jib_error(identifier: str) -> None:
    with contextlib.suppress(JibError):
        assert_round_trips(identifier)


@FUZZ
@given(
    st.sampled_from(["echo!m", "http!m", "openai/m", "vllm!m"]),
    st.sampled_from(["extra", "spec", "stop", "timeout", "temperature", "max_retry_wait"]),
    st.one_of(deep_brackets, deep_brackets.map(b64), identifier_values),
)
@within_budget
def test_any_value_of_a_typed_key_gives_a_generator_or_a_jib_error(
    head: str, key: str, value: str
) -> None:
    with contextlib.suppress(JibError):
        assert_round_trips(f"{head},{key}={value}")


# -- specs -----------------------------------------------------------------------------------------

_SPEC_WORDS = [
    "request", "response", "url", "method", "headers", "timeout", "transforms", "type",
    "pattern", "valid_status_codes", "error_path", "json", "jinja", "jsonpath", "regex",
]  # fmt: skip
_PATTERNS = ["$.a", "$..b", "$[0]", "{{ result }}", "{{ content | upper }}", "(\\w+)", "$messages"]
spec_scalars = st.one_of(
    st.sampled_from(
        ["http://127.0.0.1:9/", "POST", "GET", "nan", ".inf", "X-A", "Host", "a b", *_PATTERNS]
    ),
    st.integers(-5, 600),
    st.floats(),
    st.booleans(),
    st.none(),
    tricky_text,
)
spec_values = st.recursive(
    spec_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.one_of(st.sampled_from(_SPEC_WORDS), tricky_text), children, max_size=4
        )
    ),
    max_leaves=25,
)


@st.composite
def near_valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    headers = draw(
        st.dictionaries(
            st.one_of(st.sampled_from(["X-A", "Host"]), tricky_text), tricky_text, max_size=2
        )
    )
    request: dict[str, Any] = {
        "url": draw(st.sampled_from(["http://127.0.0.1:9/{{ model }}", "ftp://x", "{{ nope }}"])),
        "headers": headers,
        "transforms": [{"type": "json", "pattern": draw(spec_values)}],
    }
    if draw(st.booleans()):
        request["timeout"] = draw(st.one_of(st.floats(), st.integers(-1, 5)))
    spec: dict[str, Any] = {"request": request}
    if draw(st.booleans()):
        step = draw(st.sampled_from(["jsonpath", "jinja", "regex"]))
        pattern = draw(
            st.sampled_from(_PATTERNS)
            if step != "jsonpath"
            else st.one_of(st.sampled_from(_PATTERNS), tricky_text)
        )
        spec["response"] = {"transforms": [{"type": step, "pattern": pattern}]}
    return spec


def spec_texts(spec: Any) -> Iterator[str]:
    """The spec written as JSON, YAML, and base64 of both."""
    as_json = json.dumps(spec)
    as_yaml = yaml.safe_dump(spec)
    yield from (as_json, as_yaml, b64(as_json), b64(as_yaml))


def check_spec_text(text: str) -> HTTPSpec | None:
    """Load a spec both ways; only the documented errors may come out."""
    with contextlib.suppress(JibError):
        get_generator(f"http!m,spec={b64(text)}")
    try:
        return HTTPSpec.model_validate(text)
    except ValidationError:
        return None


@FUZZ
@given(st.one_of(any_text, tricky_text, deep_brackets))
@within_budget
def test_any_text_as_a_spec_gives_a_spec_or_a_documented_error(text: str) -> None:
    check_spec_text(text)


@FUZZ
@given(st.one_of(near_valid_specs(), spec_values), st.integers(0, 3))
@within_budget
def test_near_valid_specs_in_every_form_give_a_spec_or_a_documented_error(
    spec: Any, form: int
) -> None:
    loaded = check_spec_text(list(spec_texts(spec))[form])
    if loaded is None:
        return
    context = RequestTransformContext.from_messages([Message("user", "hi")], model="m")
    with contextlib.suppress(ProcessingError):
        loaded.build_request(context)


response_bodies = st.one_of(
    any_text,
    tricky_text,
    deep_brackets,
    json_values.map(json.dumps),
    st.builds(lambda inner: '{"a": ' + inner + "}", deep_brackets),
)


@FUZZ
@given(st.sampled_from(["$.a", "$..a", "$[*]", "$.a[0].b"]), response_bodies)
@within_budget
def test_any_response_body_gives_text_or_a_processing_error(path: str, body: str) -> None:
    spec = HTTPSpec.model_validate(
        {
            "request": {"url": "http://127.0.0.1:9/"},
            "response": {
                "transforms": [{"type": "jsonpath", "pattern": path}],
                "error_path": path,
            },
        }
    )
    with contextlib.suppress(ProcessingError):
        assert isinstance(spec.parse_response_body(body), str)
    spec.extract_error(body)


# -- JSONL prompt lines ----------------------------------------------------------------------------

messages = st.lists(
    st.one_of(
        any_text,
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "system", "assistant", "tool", "boss"]),
                "content": st.one_of(any_text, st.integers()),
            }
        ),
    ),
    max_size=3,
)


def _one_line(text: str) -> str:
    """`text` as one line of a UTF-8 file (a raw surrogate cannot be written)."""
    return "".join(" " if ch in "\r\n" or "\ud800" <= ch <= "\udfff" else ch for ch in text)


prompt_lines = st.one_of(
    any_text.map(_one_line),
    tricky_text.map(_one_line),
    deep_brackets,
    json_values.map(json.dumps),
    any_text.map(json.dumps),  # lone surrogates arrive as \ud800 escapes
    messages.map(json.dumps),
    st.fixed_dictionaries(
        {},
        optional={
            "prompt": st.one_of(any_text, st.integers()),
            "messages": messages,
            "params": st.dictionaries(
                st.sampled_from(["temperature", "top_p", "timeout", "nope"]),
                st.one_of(st.floats(), st.text(max_size=3)),
                max_size=2,
            ),
            "extra": st.none(),
        },
    ).map(json.dumps),
)


@pytest.fixture(scope="module")
def fuzz_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStore]:
    with open_store(tmp_path_factory.mktemp("fuzz") / "jib.db") as store:
        yield store


@pytest.fixture(scope="module")
def prompts_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prompts") / "prompts.jsonl"


@FUZZ
@given(line=prompt_lines)
@within_budget
def test_any_jsonl_line_gives_prompts_or_a_cli_error_and_every_prompt_can_be_stored(
    line: str, prompts_path: Path, fuzz_store: ChatStore
) -> None:
    prompts_path.write_text(f"{line}\n", encoding="utf-8")
    try:
        prompts = list(PromptsFile(prompts_path))
    except CliError:
        return
    for prompt in prompts:
        sent = [message.to_dict() for message in prompt.messages]
        assert input_key(sent)
        chat = Chat(messages=prompt.messages, generated=[Message("assistant", "ok")])
        fuzz_store.save(chat)
        assert fuzz_store.get(chat.id).content == "ok"
        assert Chat.from_json(chat.to_json(), rebuild_generator=False).id == chat.id


# -- deny by default: what reaches a provider from data -------------------------------------------

_BUILT_IN = ["litellm", "openai", "http", "transformers", "vllm", "echo", "fixed", "fail"]
_CLASSES = {name: resolve_provider(name) for name in _BUILT_IN}
_FIELDS = sorted(
    {field for cls in _CLASSES.values() for field in cls.model_fields} - {"model", "params"}
)
_DECLARED_EXTRA = sorted(
    {
        option.removeprefix(EXTRA_PREFIX)
        for cls in _CLASSES.values()
        for option in cls.inert_options
        if option.startswith(EXTRA_PREFIX)
    }
)
_DANGEROUS_EXTRA = [
    "api_base", "base_url", "api_key", "vertex_credentials", "aws_secret_access_key",
    "custom_generate", "trust_remote_code", "worker_cls", "extra_headers", "proxy", "TOOLS",
]  # fmt: skip
extra_keys = st.one_of(
    st.sampled_from(_DECLARED_EXTRA), st.sampled_from(_DANGEROUS_EXTRA), st.text(max_size=6)
)
_PLAUSIBLE = [
    "1", "0", "2.5", "true", "false", "yes", "on", "auto", "x", "", "http://127.0.0.1:9/v1",
    "http://attacker.example/v1", "env:OPENAI_API_KEY", "env:GITHUB_TOKEN",
    "os.environ/GITHUB_TOKEN", b64(json.dumps({"trust_remote_code": "yes"})),
    b64(json.dumps({"request": {"url": "http://attacker.example/{{ api_key }}"}})),
]  # fmt: skip
data_values = st.one_of(st.sampled_from(_PLAUSIBLE), identifier_values)
extra_dicts = st.dictionaries(extra_keys, json_values, max_size=3)
allowances = st.frozensets(
    st.one_of(
        st.sampled_from(_FIELDS),
        st.sampled_from([EXTRA_PREFIX + key for key in _DANGEROUS_EXTRA]),
    ),
    max_size=2,
)


@st.composite
def identifiers_from_data(draw: st.DrawFn) -> str:
    """An identifier as data might hold it: any provider, attributes and `extra` entries."""
    provider = draw(st.sampled_from(_BUILT_IN))
    items = draw(st.lists(st.tuples(st.sampled_from(_FIELDS), data_values), max_size=3))
    extra = draw(extra_dicts)
    if extra:
        items.append(("extra", b64(json.dumps(extra))))
    return ",".join([f"{provider}!m", *(f"{key}={value}" for key, value in items)])


def set_options(generator: Generator, params: GenerateParams | None = None) -> set[str]:
    """Every option `generator` (and `params`) carries beyond the model and the sampling params:
    attributes away from their defaults, and `extra.KEY` for each extra entry."""
    cls = type(generator)
    options = {
        name
        for name, info in cls.model_fields.items()
        if name not in ("model", "params")
        and getattr(generator, name) is not None
        and getattr(generator, name) != info.get_default(call_default_factory=True)
    }
    extras = [generator.params.extra, params.extra if params is not None else {}]
    return options | {f"{EXTRA_PREFIX}{key}" for extra in extras for key in extra}


def assert_only_what_is_declared_or_allowed(generator: Generator, policy: TrustPolicy) -> None:
    cls = type(generator)
    declared = {"api_key", cls.endpoint_field, *cls.inert_options, *policy.allow_options}
    for option in set_options(generator) - declared:
        if ANY_EXTRA in cls.inert_options and option.startswith(EXTRA_PREFIX):
            continue  # a provider that ignores `extra`
        # Left: only code options (`trust_remote_code`, a class or module to import: see
        # `jib.trust`), and only with remote code allowed.
        key = option.removeprefix(EXTRA_PREFIX).lower()
        is_code = key == "trust_remote_code" or key.endswith(("_cls", "_class", "_module"))
        assert policy.allow_remote_code and is_code, option


@FUZZ
@given(identifiers_from_data(), allowances, st.booleans())
def test_no_option_reaches_a_provider_from_data_without_an_allowance(
    identifier: str, allowed: frozenset[str], remote_code: bool
) -> None:
    policy = TrustPolicy(allow_options=allowed, allow_remote_code=remote_code)
    try:
        generator = get_generator(identifier, trusted=policy)
    except JibError:
        return
    assert_only_what_is_declared_or_allowed(generator, policy)
    with contextlib.suppress(JibError):  # what it reads is the user's choice, or refused
        for where, url in generator.secret_destinations():
            assert where and url


@FUZZ
@given(st.sampled_from(_BUILT_IN), extra_dicts, allowances)
def test_dataset_params_carry_no_extra_key_the_generator_does_not_declare(
    provider: str, extra: dict[str, Any], allowed: frozenset[str]
) -> None:
    generator = get_generator(f"{provider}!m")  # the user's own
    params = GenerateParams(extra=extra)
    policy = TrustPolicy(allow_options=allowed)
    declared = {*type(generator).inert_options, *allowed}
    if ANY_EXTRA in declared:
        declared |= {f"{EXTRA_PREFIX}{key}" for key in extra}
    try:
        policy.check_params(params, generator=generator, where="data line 1")
    except UntrustedIdentifierError as refused:
        undeclared = {f"{EXTRA_PREFIX}{key}" for key in extra} - declared
        message = str(refused)
        named = {
            option
            for option in undeclared
            if f"--allow-option {option}," in message
            or (f"it sets {option}=" in message and "--trust-remote-code" in message)
        }
        assert named == undeclared  # each refused key is named with its switch
        return
    assert {f"{EXTRA_PREFIX}{key}" for key in extra} <= declared


_SENT_ANYWAY = {"model", "messages", "stream", "stream_options", *GenerateParams.model_fields}


@pytest.fixture(scope="module")
def recorder() -> Iterator[RunningRecorder]:
    with run_recorder() as running:
        yield running


@settings(FUZZ, max_examples=40)
@given(extra=extra_dicts, stored_extra=extra_dicts)
def test_what_an_openai_request_from_data_carries_is_declared(
    extra: dict[str, Any], stored_extra: dict[str, Any], recorder: RunningRecorder
) -> None:
    base = f"{recorder.origin}/v1"
    params = GenerateParams(extra=extra)
    written = get_generator(f"openai!m,api_base={base},max_retries=0", params=params)
    stored = chat_from_data(written.to_identifier(), {"extra": stored_extra})
    try:
        chat = Chat.from_json(stored, trusted=TrustPolicy())
    except (JibError, ValidationError):
        return
    assert chat.generator is not None
    before = len(recorder.requests)
    asyncio.run(chat.continue_("hi").run(on_failed="include"))
    declared = {key.removeprefix(EXTRA_PREFIX) for key in type(chat.generator).inert_options}
    for request in recorder.requests[before:]:
        body = json.loads(request["body"])
        assert set(body) <= _SENT_ANYWAY | declared, set(body) - _SENT_ANYWAY - declared


def chat_from_data(generator_id: str, params: dict[str, Any]) -> str:
    """A stored chat's JSON whose generator and params someone else wrote."""
    data = Chat(messages=[Message("user", "hi")], generated=[Message("assistant", "hello")])
    record = data.to_dict()
    record["generator_id"] = generator_id
    record["params"] = params
    return json.dumps(record)
