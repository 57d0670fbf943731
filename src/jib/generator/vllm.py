"""`VLLMGenerator`: a vLLM engine (`vllm.LLM`) running in this process.

    vllm!<model>[,gpu_memory_utilization=0.3][,max_model_len=4096][,trust_remote_code=True]

vllm is imported when the engine is built (on first use or `load()`), never at `import jib`, so
identifiers parse and round-trip without it; without it, loading raises `MissingDependencyError`
naming `jib[vllm]`. What `LLM.chat` is given, and what it cannot be, is in `_local_chat.py`; tool
calls are read from the answer by `_tool_text.py`.
"""

from __future__ import annotations

import gc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, PrivateAttr

from jib.content import ContentAudioInput, ContentImageUrl, ContentPart
from jib.errors import BadRequestError, InvalidGeneratorError
from jib.generator._local import (
    DEFAULT_MAX_TOKENS,
    LocalGenerator,
    LocalResource,
    empty_cuda_cache,
    freeze,
    group_indices,
    import_optional,
    run_batches,
)
from jib.generator._local_chat import (
    offered_tools,
    refuse_for_text,
    refuse_params,
    refuse_parts,
    template_message,
)
from jib.generator._tool_text import read_tool_calls, tool_names
from jib.messages import (
    GeneratedMessage,
    GeneratedText,
    Message,
    Usage,
    check_batch,
    normalize_stop_reason,
)
from jib.params import GenerateParams
from jib.tools import ToolCall

__all__ = ["VLLMGenerator"]

_PROVIDER = "vllm"
_ENGINE_FIELDS = (
    "gpu_memory_utilization",
    "max_model_len",
    "tensor_parallel_size",
    "dtype",
    "quantization",
    "enforce_eager",
    "tokenizer",
    "revision",
)
# GenerateParams fields with the same name and meaning in vLLM's SamplingParams.
_SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


@dataclass(slots=True)
class _Engine:
    llm: Any
    sampling_params_class: type[Any]


@dataclass(slots=True)
class _Chat:
    """One conversation for `LLM.chat`: its messages, the tools offered (`None`: none) and their
    names (`None`: tool calls are not read from the answer)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    names: frozenset[str] | None = None


@dataclass(slots=True)
class _Request:
    prompt: str | _Chat
    sampling_params: Any


class VLLMGenerator(LocalGenerator):
    """A vLLM engine in this process, built lazily from `model` and the engine attributes.

    Each batch is one `LLM.generate` (text) or `LLM.chat` (messages) call with one
    `SamplingParams` per item; vLLM schedules the batch itself. It runs in a worker thread so the
    event loop stays responsive. Conversations go in the OpenAI shape, parts included (images
    and audio inline; vLLM's multimodal models read them), with the params' `tools`
    (`LLM.chat(..., tools=...)`, one call per distinct set of tools); tool calls the model writes
    come back as `ToolCall`s with `stop_reason="tool_calls"`. What cannot be carried (a file
    part, a remote URL, media for a text-only model, `response_format`, a forced
    `tool_choice`) fails before generating, naming the part or param.

    Params map to `SamplingParams`: `max_tokens` (256 when unset; vLLM's own default is 16),
    `temperature` (0 is greedy), `top_p`, `top_k`, `seed`, `stop`, `presence_penalty`,
    `frequency_penalty`; `extra` params are passed as they are (`min_p=0.05`). `timeout` does not
    apply to local generation.

    Attributes:
        gpu_memory_utilization: share of GPU memory the engine may take (0-1].
        trust_remote_code: allow model code from the model's repository to run.
        max_model_len: the context length to serve (prompt plus output).
        tensor_parallel_size: GPUs to split the model over.
        dtype: weights' dtype (`auto`, `float16`, `bfloat16`).
        quantization: quantization method (`awq`, `gptq`, `fp8`, ...).
        enforce_eager: disable CUDA graphs.
        tokenizer: a tokenizer to use instead of the model's.
        revision: the model revision.
        engine_kwargs: more keyword arguments for `vllm.LLM`.
    """

    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    trust_remote_code: bool = False
    max_model_len: int | None = Field(default=None, gt=0)
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    dtype: str | None = None
    quantization: str | None = None
    enforce_eager: bool | None = None
    tokenizer: str | None = None
    revision: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)

    _resource: LocalResource[_Engine] = PrivateAttr(default_factory=LocalResource)
    _provider: ClassVar[str] = _PROVIDER

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def from_obj(
        cls,
        llm: Any,
        *,
        model_name: str | None = None,
        sampling_params_class: type[Any] | None = None,
        **attributes: Any,
    ) -> VLLMGenerator:
        """Wrap a `vllm.LLM` you already built.

        Args:
            llm: the engine; it needs vLLM's `generate(prompts, sampling_params, use_tqdm=)` and
                `chat(messages, sampling_params, use_tqdm=)` methods.
            model_name: the name used in identifiers; defaults to the engine's model.
            sampling_params_class: the class built for each item's params; defaults to
                `vllm.SamplingParams`.
            attributes: other fields (`params=GenerateParams(...)`).

        Raises:
            InvalidGeneratorError: `llm` has no `generate` method.
            MissingDependencyError: no `sampling_params_class` and vllm is not installed.
        """
        if not callable(getattr(llm, "generate", None)):
            raise InvalidGeneratorError(
                f"{type(llm).__name__} has no generate() method; from_obj() needs a vllm.LLM"
            )
        if sampling_params_class is None:
            sampling_params_class = _import_vllm(cls.__name__).SamplingParams
        if model_name is None:
            model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
            model_name = str(getattr(model_config, "model", None) or type(llm).__name__)
        generator = cls(model=model_name, **attributes)
        generator._resource.value = _Engine(llm, sampling_params_class)
        return generator

    def unload(self) -> VLLMGenerator:
        """Shut the engine down and free its GPU memory; the next use builds it again.

        A generation in progress finishes first. For a `from_obj` generator, the next use builds
        a new `vllm.LLM` from `model` and the engine attributes.
        """
        return super().unload()

    def engine_arguments(self) -> dict[str, Any]:
        """The keyword arguments `vllm.LLM` is built with (model included)."""
        arguments: dict[str, Any] = {"model": self.model}
        if self.trust_remote_code:
            arguments["trust_remote_code"] = True
        for name in _ENGINE_FIELDS:
            value = getattr(self, name)
            if value is not None:
                arguments[name] = value
        arguments.update(self.engine_kwargs)
        return arguments

    def _engine(self) -> _Engine:
        return self._resource.get_or_load(self._load_model)

    def _load_model(self) -> _Engine:
        vllm = _import_vllm(type(self).__name__)
        try:
            llm = vllm.LLM(**self.engine_arguments())
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidGeneratorError(
                f"vLLM could not build an engine for {self.model!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return _Engine(llm, vllm.SamplingParams)

    def _after_unload(self) -> None:
        _release_vllm_state()

    # -- generation ----------------------------------------------------------------------------

    async def generate_messages(
        self,
        messages: Sequence[Sequence[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Answer the conversations with `LLM.chat` (one call per distinct set of tools)."""
        check_batch("generate_messages", messages, params)
        if not messages:
            return []
        engine = await self._on_worker(lambda _cancelled: self._engine())
        multimodal = _is_multimodal(engine)
        chats = [
            _chat(list(conversation), item_params, multimodal)
            for conversation, item_params in zip(messages, params, strict=True)
        ]
        outputs = await self._generate("chat", chats, params)
        results: list[GeneratedMessage | BaseException] = []
        for chat, out in zip(chats, outputs, strict=True):
            if isinstance(out, BaseException):
                results.append(out)
                continue
            text, calls = out.text, list[ToolCall]()
            if isinstance(chat, _Chat) and chat.names is not None:
                text, calls = read_tool_calls(text, chat.names)
            stop_reason = "tool_calls" if calls else out.stop_reason
            message = Message("assistant", text, tool_calls=calls)
            results.append(GeneratedMessage(message, stop_reason, out.usage, out.extra))
        return results

    async def generate_texts(
        self,
        texts: Sequence[str],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedText | BaseException]:
        """Continue each text with one `LLM.generate` call."""
        check_batch("generate_texts", texts, params)
        prompts = [
            _text(text, item_params) for text, item_params in zip(texts, params, strict=True)
        ]
        return await self._generate("generate", prompts, params)

    async def _generate(
        self,
        method: str,
        prompts: Sequence[str | _Chat | BaseException],
        params: Sequence[GenerateParams],
    ) -> list[GeneratedText | BaseException]:
        if not prompts:
            return []
        engine = await self._on_worker(lambda _cancelled: self._engine())
        prepared = [
            prompt if isinstance(prompt, BaseException) else _request(engine, prompt, item_params)
            for prompt, item_params in zip(prompts, params, strict=True)
        ]
        ready = [index for index, request in enumerate(prepared) if isinstance(request, _Request)]
        # `LLM.chat` takes one list of tools per call: conversations offered different tools
        # go in different calls.
        keys = [_tools_key(prepared[index]) for index in ready]
        batches = [[ready[i] for i in group] for group in group_indices(keys)]

        async def call(batch: list[_Request]) -> list[GeneratedText]:
            return await self._on_worker(lambda _cancelled: _run(engine, method, batch))

        return await run_batches(prepared, batches, self.wrapped(call), _PROVIDER)

    # -- what this provider says about itself (see `Generator`) --------------------------------

    ambient_credentials: ClassVar[bool] = True  # HF_TOKEN, for gated models
    # `trust_remote_code` is the remote-code switch's; `engine_kwargs` may hold anything.
    inert_options: ClassVar[frozenset[str]] = frozenset(
        {
            *_ENGINE_FIELDS,
            "extra.logprobs",
            "extra.min_p",
            "extra.min_tokens",
            "extra.repetition_penalty",
        }
    )


def _chat(
    messages: list[Message], params: GenerateParams, multimodal: bool | None
) -> _Chat | BadRequestError:
    """A conversation as `LLM.chat` takes it, or the error for what it cannot carry."""
    try:
        refuse_params(params, _PROVIDER)
        refuse_parts(messages, _PROVIDER, lambda part: _why_not(part, multimodal))
    except BadRequestError as exc:
        return exc
    tools = offered_tools(params)
    return _Chat(
        [
            template_message(message, content=_content(message), arguments_as_objects=False)
            for message in messages
        ],
        tools,
        None if tools is None else tool_names(tools),
    )


def _text(text: str, params: GenerateParams) -> str | BadRequestError:
    """A text to continue, or the error for params a completion cannot carry."""
    try:
        refuse_for_text(params, _PROVIDER)
    except BadRequestError as exc:
        return exc
    return text


def _content(message: Message) -> str | list[dict[str, Any]]:
    """The OpenAI-shaped content, parts without their prompt-cache marks."""
    if not message.has_parts:
        return message.content
    parts = []
    for part in message.content_parts:
        written = part.to_dict()
        written.pop("cache_control", None)
        parts.append(written)
    return parts


def _why_not(part: ContentPart, multimodal: bool | None) -> str | None:
    """Why `LLM.chat` cannot take `part` (`None`: it can)."""
    if not isinstance(part, (ContentImageUrl, ContentAudioInput)):
        return "vLLM's chat takes no files (documents); send their text instead"
    if multimodal is False:
        return "this model is text-only; use a multimodal model for images and audio"
    if isinstance(part, ContentImageUrl) and part.mimetype is None:
        return (
            "vllm! does not have the engine fetch remote URLs; fetch the image yourself and pass "
            "it inline (ContentImageUrl.from_bytes or from_file)"
        )
    return None


def _is_multimodal(engine: _Engine) -> bool | None:
    """What the engine says of its model (`model_config.is_multimodal_model`); `None` when it
    does not say."""
    config = getattr(getattr(engine.llm, "llm_engine", None), "model_config", None)
    value = getattr(config, "is_multimodal_model", None)
    return value if isinstance(value, bool) else None


def _tools_key(request: _Request | BaseException) -> Any:
    prompt = request.prompt if isinstance(request, _Request) else None
    return freeze(prompt.tools) if isinstance(prompt, _Chat) and prompt.tools else None


def _request(
    engine: _Engine, prompt: str | _Chat, params: GenerateParams
) -> _Request | BadRequestError:
    """The prompt with its `SamplingParams`, or the error the params were refused with."""
    try:
        return _Request(prompt, engine.sampling_params_class(**_sampling_arguments(params)))
    except Exception as exc:
        error = BadRequestError(
            f"invalid sampling params: {type(exc).__name__}: {exc}", provider=_PROVIDER
        )
        error.__cause__ = exc
        return error


def _sampling_arguments(params: GenerateParams) -> dict[str, Any]:
    """The `SamplingParams` keyword arguments for `params` (one output per prompt)."""
    arguments: dict[str, Any] = {"n": 1, "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS}
    for name in _SAMPLING_FIELDS:
        value = getattr(params, name)
        if value is not None:
            arguments[name] = value
    if params.stop:
        arguments["stop"] = list(params.stop)
    arguments.update(params.extra)
    return arguments


def _run(engine: _Engine, method: str, requests: list[_Request]) -> list[GeneratedText]:
    """One blocking `generate`/`chat` call for the whole batch, mapped to jib results (a chat
    batch shares its tools)."""
    sampling = [request.sampling_params for request in requests]
    if method == "chat":
        chats = [request.prompt for request in requests if isinstance(request.prompt, _Chat)]
        options: dict[str, Any] = {}
        if chats and chats[0].tools:
            options["tools"] = chats[0].tools
        conversations = [chat.messages for chat in chats]
        outputs = engine.llm.chat(
            conversations, sampling_params=sampling, use_tqdm=False, **options
        )
    else:
        prompts = [request.prompt for request in requests]
        outputs = engine.llm.generate(prompts, sampling_params=sampling, use_tqdm=False)
    return [_to_result(output) for output in outputs]


def _to_result(output: Any) -> GeneratedText:
    """Map one `RequestOutput` (its first `CompletionOutput`) to a `GeneratedText`."""
    if not output.outputs:
        raise ValueError(f"vLLM returned no output for request {output.request_id!r}")
    completion = output.outputs[0]
    prompt_tokens = len(output.prompt_token_ids or ())
    extra: dict[str, Any] = {"finish_reason": completion.finish_reason}
    if completion.stop_reason is not None:
        extra["matched_stop"] = completion.stop_reason
    return GeneratedText(
        completion.text,
        normalize_stop_reason(completion.finish_reason),
        Usage(prompt_tokens, len(completion.token_ids)),
        extra,
    )


def _import_vllm(purpose: str) -> Any:
    return import_optional("vllm", package="vllm", extra=_PROVIDER, purpose=purpose)


def _release_vllm_state() -> None:
    """Tear down vLLM's distributed state and empty the CUDA cache, where there is one."""
    try:
        parallel_state = importlib.import_module("vllm.distributed.parallel_state")
    except ImportError:
        parallel_state = None
    if parallel_state is not None:
        for name in ("destroy_model_parallel", "destroy_distributed_environment"):
            teardown = getattr(parallel_state, name, None)
            if callable(teardown):
                teardown()
    gc.collect()
    empty_cuda_cache()
