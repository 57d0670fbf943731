"""`TransformersGenerator`: a Hugging Face transformers model running in this process.

    transformers!<model id or local path>[,device_map=auto][,torch_dtype=bfloat16][,batch_size=16]

torch and transformers are imported when the model is loaded (on first use or `load()`), never at
`import jib`; without them, loading raises `MissingDependencyError` naming `jib[transformers]`.
How a batch becomes padded `generate` calls is in `_transformers_batch.py`; what a chat template
is given, and what it cannot be, in `_local_chat.py`; how tool calls are read from the answer
in `_tool_text.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from jib.errors import InvalidGeneratorError
from jib.generator._local import (
    LocalGenerator,
    LocalResource,
    import_optional,
    run_batches,
    warn_ignored,
)
from jib.generator._transformers_batch import (
    PROVIDER,
    Item,
    Loaded,
    Output,
    generate_padded,
    plan_batches,
    prepare_items,
    prepare_model,
)
from jib.messages import GeneratedMessage, GeneratedText, Message, check_batch
from jib.params import GenerateParams

__all__ = ["TransformersGenerator"]

_UNSUPPORTED_PARAMS = ("presence_penalty", "frequency_penalty")

TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]


class TransformersGenerator(LocalGenerator):
    """A transformers causal (or vision-language) model, loaded lazily in this process.

    Chat messages go through the tokenizer's chat template, with the params' `tools`;
    `complete()` sends raw text. A batch is generated in padded `generate` calls of up to
    `batch_size` prompts (left padding), in a worker thread (one per loaded model) so the event
    loop stays responsive. Tool calls the model writes (Hermes/Qwen `<tool_call>` blocks,
    Mistral's and Llama's JSON) come back as `ToolCall`s with `stop_reason="tool_calls"`.

    A conversation holding images or audio goes through the model's processor
    (`AutoProcessor`, loaded for models whose config has a vision or audio part) and is
    generated alone; a text-only model given one fails before generating, naming the part.
    `response_format`, a forced `tool_choice` and `parallel_tool_calls=False` cannot be
    honoured and fail the same way.

    Params map to transformers' names: `max_tokens` → `max_new_tokens` (256 when unset),
    `temperature` (0 means greedy), `top_p`, `top_k`, `seed` (seeds torch before the call);
    `stop` sequences cut the output. `extra` params go to `generate` as they are
    (`repetition_penalty=1.1`). `presence_penalty`/`frequency_penalty` are not supported (a
    `GeneratorWarning` says so); `timeout` does not apply to local generation.

    Attributes:
        model: a Hugging Face model id or a local directory.
        api_key: a Hugging Face token, for gated models (passed as `token=`).
        batch_size: prompts per `generate` call.
        device_map: where to put the model (`auto`, `cpu`, `cuda:0`; `auto` needs accelerate).
        torch_dtype: the weights' dtype.
        trust_remote_code: allow model code from the model's repository to run.
        revision: the model revision (branch, tag or commit).
        attn_implementation: `eager`, `sdpa`, `flash_attention_2`, ...
        model_kwargs: more keyword arguments for `from_pretrained`.
    """

    batch_size: int = Field(default=8, ge=1)
    device_map: str | None = None
    torch_dtype: TorchDtype | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    attn_implementation: str | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    _resource: LocalResource[Loaded] = PrivateAttr(default_factory=LocalResource)
    _provider: ClassVar[str] = PROVIDER

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def from_obj(
        cls,
        model: Any,
        tokenizer: Any = None,
        *,
        processor: Any = None,
        model_name: str | None = None,
        **attributes: Any,
    ) -> TransformersGenerator:
        """Wrap a model and tokenizer (or processor) you already built.

        Args:
            model: a transformers causal language model (decoder-only), or a vision-language
                one (`AutoModelForImageTextToText`).
            tokenizer: its tokenizer; may be left out when `processor` is given (its tokenizer
                is used). A multimodal processor given here is taken as the processor.
            processor: its processor (`AutoProcessor`), for a model that reads images or audio.
            model_name: the name used in identifiers; defaults to the model's `name_or_path`.
            attributes: other fields (`batch_size=16`, `params=GenerateParams(...)`).

        Raises:
            InvalidGeneratorError: the model is an encoder-decoder model, or has no `generate`;
                neither a tokenizer nor a processor is given.
            MissingDependencyError: torch is not installed.
        """
        torch = import_optional("torch", package="torch", extra=PROVIDER, purpose=cls.__name__)
        if processor is None and _is_processor(tokenizer):
            processor, tokenizer = tokenizer, None
        if tokenizer is None:
            tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise InvalidGeneratorError(
                "from_obj() needs the model's tokenizer, or a processor that has one"
            )
        if model_name is None:
            model_name = str(getattr(model, "name_or_path", "") or type(model).__name__)
        generator = cls(model=model_name, **attributes)
        generator._resource.value = prepare_model(torch, model, tokenizer, processor)
        return generator

    def unload(self) -> TransformersGenerator:
        """Free the model and tokenizer (and the CUDA cache); the next use loads them again.

        A generation in progress finishes first. For a `from_obj` generator, the next use loads
        `model` by name with `from_pretrained`.
        """
        return super().unload()

    def get_model_and_tokenizer(self) -> tuple[Any, Any]:
        """The transformers model and tokenizer objects, loading them first if needed."""
        loaded = self._loaded()
        return loaded.model, loaded.tokenizer

    def get_processor(self) -> Any:
        """The model's processor for images or audio (loading the model first if needed);
        `None` for a text-only model."""
        return self._loaded().processor

    def _loaded(self) -> Loaded:
        return self._resource.get_or_load(self._load_model)

    def _load_model(self) -> Loaded:
        purpose = type(self).__name__
        torch = import_optional("torch", package="torch", extra=PROVIDER, purpose=purpose)
        transformers = import_optional(
            "transformers", package="transformers", extra=PROVIDER, purpose=purpose
        )
        common: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.revision is not None:
            common["revision"] = self.revision
        token = self.get_api_key()
        if token is not None:
            common["token"] = token
        model_kwargs = dict(common)
        if self.device_map is not None:
            model_kwargs["device_map"] = self.device_map
        if self.torch_dtype is not None:
            model_kwargs[_dtype_keyword(transformers)] = self.torch_dtype
        if self.attn_implementation is not None:
            model_kwargs["attn_implementation"] = self.attn_implementation
        model_kwargs.update(self.model_kwargs)
        processor = None
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.model, **common)
            model = _load_weights(transformers, self.model, model_kwargs)
            if _is_multimodal(model.config):
                processor = transformers.AutoProcessor.from_pretrained(self.model, **common)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InvalidGeneratorError(
                f"could not load transformers model {self.model!r}: {type(exc).__name__}: {exc}"
            ) from exc
        model.eval()
        return prepare_model(torch, model, tokenizer, processor)

    # -- generation ----------------------------------------------------------------------------

    async def generate_messages(
        self,
        messages: Sequence[Sequence[Message]],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedMessage | BaseException]:
        """Answer each conversation, rendered with the tokenizer's chat template."""
        check_batch("generate_messages", messages, params)
        outputs = await self._generate([list(m) for m in messages], params)
        return [
            out
            if isinstance(out, BaseException)
            else GeneratedMessage(
                Message("assistant", out.text, tool_calls=out.tool_calls),
                out.stop_reason,
                out.usage,
            )
            for out in outputs
        ]

    async def generate_texts(
        self,
        texts: Sequence[str],
        params: Sequence[GenerateParams],
    ) -> Sequence[GeneratedText | BaseException]:
        """Continue each text as it is (no chat template)."""
        check_batch("generate_texts", texts, params)
        outputs = await self._generate(list(texts), params)
        return [
            out
            if isinstance(out, BaseException)
            else GeneratedText(out.text, out.stop_reason, out.usage)
            for out in outputs
        ]

    async def _generate(
        self, prompts: Sequence[str | list[Message]], params: Sequence[GenerateParams]
    ) -> list[Output | BaseException]:
        if not prompts:
            return []
        warn_ignored(params, _UNSUPPORTED_PARAMS, type(self).__name__)
        prepared = await self._on_worker(
            lambda _cancelled: prepare_items(self._loaded(), prompts, params)
        )
        call = self.wrapped(self._generate_chunk)
        return await run_batches(prepared, plan_batches(prepared, self.batch_size), call, PROVIDER)

    async def _generate_chunk(self, chunk: list[Item]) -> list[Output]:
        """Generate one padded sub-batch on the worker thread (the unit a wrapper retries)."""
        return await self._on_worker(
            lambda cancelled: generate_padded(self._loaded(), chunk, cancelled)
        )

    # -- what this provider says about itself (see `Generator`) --------------------------------

    ambient_credentials: ClassVar[bool] = True  # HF_TOKEN, for gated models
    # Not inert: `trust_remote_code` (the remote-code switch's), `model_kwargs` (anything),
    # `attn_implementation` (a Hub kernel repository runs its code), `extra.custom_generate`.
    inert_options: ClassVar[frozenset[str]] = frozenset(
        {
            "batch_size",
            "device_map",
            "torch_dtype",
            "revision",
            *(
                f"extra.{name}"
                for name in (
                    "do_sample",
                    "length_penalty",
                    "min_new_tokens",
                    "min_p",
                    "no_repeat_ngram_size",
                    "num_beams",
                    "repetition_penalty",
                    "typical_p",
                )
            ),
        }
    )


def _load_weights(transformers: Any, name: str, kwargs: dict[str, Any]) -> Any:
    """The model as a causal LM, else (a vision-language model) as an image-text-to-text one."""
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except ValueError as exc:
        auto = getattr(transformers, "AutoModelForImageTextToText", None)
        if auto is None or "Unrecognized configuration class" not in str(exc):
            raise
        first = exc
    try:
        return auto.from_pretrained(name, **kwargs)
    except ValueError:
        raise first from None


def _is_multimodal(config: Any) -> bool:
    """Whether a model's config has a vision or audio part (so it has a processor for them)."""
    return any(
        getattr(config, name, None) is not None for name in ("vision_config", "audio_config")
    )


def _is_processor(value: Any) -> bool:
    """Whether `value` is a processor that takes images or audio (not a plain tokenizer)."""
    return getattr(value, "tokenizer", None) is not None and any(
        getattr(value, name, None) is not None
        for name in ("image_processor", "audio_processor", "feature_extractor")
    )


def _dtype_keyword(transformers: Any) -> str:
    """`dtype` since transformers 4.56; `torch_dtype` before."""
    version = str(getattr(transformers, "__version__", "0"))
    parts = [int(part) if part.isdigit() else 0 for part in [*version.split("."), "0"][:2]]
    return "dtype" if (parts[0], parts[1]) >= (4, 56) else "torch_dtype"
