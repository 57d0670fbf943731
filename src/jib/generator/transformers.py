"""`TransformersGenerator`: a Hugging Face transformers model running in this process.

    transformers!<model id or local path>[,device_map=auto][,torch_dtype=bfloat16][,batch_size=16]

torch and transformers are imported when the model is loaded (on first use or `load()`), never at
`import jib`; without them, loading raises `MissingDependencyError` naming `jib[transformers]`.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PrivateAttr

from jib.errors import BadRequestError, ContextLengthError, InvalidGeneratorError
from jib.generator._local import (
    DEFAULT_MAX_TOKENS,
    LocalResource,
    as_provider_error,
    chunked,
    freeze,
    group_indices,
    import_optional,
    in_worker_thread,
    run_isolating,
    trim_at_stop,
    warn_ignored,
)
from jib.generator.base import Generator
from jib.messages import (
    GeneratedMessage,
    GeneratedText,
    Message,
    StopReason,
    Usage,
    check_batch,
)
from jib.params import GenerateParams

__all__ = ["TransformersGenerator"]

_PROVIDER = "transformers"
_UNSUPPORTED_PARAMS = ("presence_penalty", "frequency_penalty")
_STOP_WINDOW_SLACK = 8  # tokens decoded beyond the longest stop sequence when checking for it

TorchDtype = Literal["auto", "float32", "float16", "bfloat16"]


@dataclass(slots=True)
class _Loaded:
    """A model and tokenizer ready to generate, with the token ids generation needs."""

    torch: Any
    model: Any
    tokenizer: Any
    pad_id: int
    eos_ids: frozenset[int]
    max_context: int | None


@dataclass(slots=True)
class _Item:
    """One prompt of a batch, tokenized, with the options its generation uses."""

    index: int
    ids: list[int]
    options: dict[str, Any]
    stops: list[str]
    seed: int | None


@dataclass(slots=True)
class _Output:
    text: str
    stop_reason: StopReason
    usage: Usage


class TransformersGenerator(Generator):
    """A transformers causal language model, loaded lazily in this process.

    Chat messages go through the tokenizer's chat template; `complete()` sends raw text. A batch
    is generated in padded `generate` calls of up to `batch_size` prompts (left padding), in a
    worker thread (one per loaded model) so the event loop stays responsive.

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

    _resource: LocalResource[_Loaded] = PrivateAttr(default_factory=LocalResource)

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def from_obj(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str | None = None,
        **attributes: Any,
    ) -> TransformersGenerator:
        """Wrap a model and tokenizer you already built (`AutoModelForCausalLM`, ...).

        Args:
            model: a transformers causal language model (decoder-only).
            tokenizer: its tokenizer.
            model_name: the name used in identifiers; defaults to the model's `name_or_path`.
            attributes: other fields (`batch_size=16`, `params=GenerateParams(...)`).

        Raises:
            InvalidGeneratorError: the model is an encoder-decoder model, or has no `generate`.
        """
        torch = import_optional("torch", package="torch", extra=_PROVIDER, purpose=cls.__name__)
        if model_name is None:
            model_name = str(getattr(model, "name_or_path", "") or type(model).__name__)
        generator = cls(model=model_name, **attributes)
        generator._resource.value = _prepare(torch, model, tokenizer)
        return generator

    def load(self) -> TransformersGenerator:
        """Load the model and tokenizer now instead of at first use.

        Raises:
            MissingDependencyError: torch or transformers is not installed.
            InvalidGeneratorError: the model or tokenizer cannot be loaded.
        """
        self._loaded()
        return self

    def unload(self) -> TransformersGenerator:
        """Free the model and tokenizer (and the CUDA cache); the next use loads them again.

        A generation in progress finishes first. For a `from_obj` generator, the next use loads
        `model` by name with `from_pretrained`.
        """
        loaded = self._resource.clear()
        if loaded is not None:
            torch = loaded.torch
            del loaded
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return self

    @property
    def is_loaded(self) -> bool:
        """Whether a model is in memory."""
        return self._resource.value is not None

    def get_model_and_tokenizer(self) -> tuple[Any, Any]:
        """The transformers model and tokenizer objects, loading them first if needed."""
        loaded = self._loaded()
        return loaded.model, loaded.tokenizer

    def _loaded(self) -> _Loaded:
        return self._resource.get_or_load(self._from_pretrained)

    def _from_pretrained(self) -> _Loaded:
        purpose = type(self).__name__
        torch = import_optional("torch", package="torch", extra=_PROVIDER, purpose=purpose)
        transformers = import_optional(
            "transformers", package="transformers", extra=_PROVIDER, purpose=purpose
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
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.model, **common)
            model = transformers.AutoModelForCausalLM.from_pretrained(self.model, **model_kwargs)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise InvalidGeneratorError(
                f"could not load transformers model {self.model!r}: {type(exc).__name__}: {exc}"
            ) from exc
        model.eval()
        return _prepare(torch, model, tokenizer)

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
            else GeneratedMessage(Message("assistant", out.text), out.stop_reason, out.usage)
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
    ) -> list[_Output | BaseException]:
        if not prompts:
            return []
        for item_params in params:
            warn_ignored(item_params, _UNSUPPORTED_PARAMS, type(self).__name__)
        prepared = await in_worker_thread(
            self._resource, lambda _cancelled: self._prepare_items(prompts, params)
        )
        results: list[_Output | BaseException | None] = [None] * len(prompts)
        ready: list[_Item] = []
        for index, item in enumerate(prepared):
            if isinstance(item, _Item):
                ready.append(item)
            else:
                results[index] = item

        call = self.wrapped(self._generate_chunk)
        keys = [(freeze(item.options), item.seed) for item in ready]
        for group in group_indices(keys):
            # Similar lengths together waste less compute on padding when a group spans chunks.
            members = sorted((ready[i] for i in group), key=lambda item: len(item.ids))
            for chunk in chunked(members, self.batch_size):
                outputs = await run_isolating(call, chunk, _PROVIDER)
                for item, output in zip(chunk, outputs, strict=True):
                    results[item.index] = output
        finished = [result for result in results if result is not None]
        if len(finished) != len(results):  # pragma: no cover - every item is given a result
            raise RuntimeError("TransformersGenerator left an item of the batch without a result")
        return finished

    def _prepare_items(
        self, prompts: Sequence[str | list[Message]], params: Sequence[GenerateParams]
    ) -> list[_Item | BaseException]:
        """Load the model if needed, tokenize every prompt and work out its generate options."""
        loaded = self._loaded()
        with self._resource.lock:
            encoded = _encode_all(loaded, prompts)
        items: list[_Item | BaseException] = []
        for index, (ids, item_params) in enumerate(zip(encoded, params, strict=True)):
            try:
                if isinstance(ids, BaseException):
                    raise ids
                if not ids:
                    raise BadRequestError("the prompt is empty", provider=_PROVIDER)
                if loaded.max_context is not None and len(ids) > loaded.max_context:
                    raise ContextLengthError(
                        f"the prompt has {len(ids)} tokens, more than the model's context of "
                        f"{loaded.max_context}",
                        provider=_PROVIDER,
                    )
                options = _generate_options(item_params, loaded.pad_id)
            except Exception as exc:
                items.append(as_provider_error(exc, _PROVIDER))
                continue
            items.append(_Item(index, ids, options, list(item_params.stop or ()), item_params.seed))
        return items

    async def _generate_chunk(self, chunk: list[_Item]) -> list[_Output]:
        """Generate one padded sub-batch in a worker thread; errors come out normalized."""
        try:
            return await in_worker_thread(
                self._resource, lambda cancelled: self._generate_sync(chunk, cancelled)
            )
        except Exception as exc:
            raise as_provider_error(exc, _PROVIDER) from exc

    def _generate_sync(self, chunk: list[_Item], cancelled: threading.Event) -> list[_Output]:
        loaded = self._loaded()
        torch = loaded.torch
        width = max(len(item.ids) for item in chunk)
        input_ids = [[loaded.pad_id] * (width - len(item.ids)) + item.ids for item in chunk]
        mask = [[0] * (width - len(item.ids)) + [1] * len(item.ids) for item in chunk]
        with self._resource.lock:
            device = loaded.model.device
            criterion_class, criteria_list = _stopping_criteria_classes()
            criterion = criterion_class(
                torch, loaded.tokenizer, [item.stops for item in chunk], width, cancelled
            )
            seed = chunk[0].seed
            if seed is not None:
                torch.manual_seed(seed)
            with torch.inference_mode():
                output = loaded.model.generate(
                    input_ids=torch.tensor(input_ids, device=device),
                    attention_mask=torch.tensor(mask, device=device),
                    stopping_criteria=criteria_list([criterion]),
                    **chunk[0].options,
                )
            rows: list[list[int]] = output[:, width:].tolist()
            return [
                _decode(loaded, item, row, criterion.finished_at[i])
                for i, (item, row) in enumerate(zip(chunk, rows, strict=True))
            ]


def _prepare(torch: Any, model: Any, tokenizer: Any) -> _Loaded:
    """Check a model/tokenizer pair and work out the token ids generation needs."""
    config = getattr(model, "config", None)
    if not callable(getattr(model, "generate", None)):
        raise InvalidGeneratorError(
            f"{type(model).__name__} has no generate() method; TransformersGenerator needs a "
            "transformers model for causal language modelling (AutoModelForCausalLM)"
        )
    if getattr(config, "is_encoder_decoder", False):
        raise InvalidGeneratorError(
            f"{type(model).__name__} is an encoder-decoder model; TransformersGenerator supports "
            "decoder-only (causal) language models"
        )
    generation_config = getattr(model, "generation_config", None)
    eos_ids: set[int] = set()
    for source in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            eos_ids.add(source)
        elif isinstance(source, (list, tuple)):
            eos_ids.update(int(token) for token in source)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = getattr(generation_config, "pad_token_id", None)
    if pad_id is None:
        pad_id = min(eos_ids) if eos_ids else 0
    max_context = getattr(config, "max_position_embeddings", None)
    return _Loaded(
        torch=torch,
        model=model,
        tokenizer=tokenizer,
        pad_id=int(pad_id),
        eos_ids=frozenset(eos_ids),
        max_context=max_context if isinstance(max_context, int) else None,
    )


def _encode_all(
    loaded: _Loaded, prompts: Sequence[str | list[Message]]
) -> list[list[int] | BaseException]:
    """Token ids of each prompt (chats through the chat template), in one tokenizer call."""
    tokenizer = loaded.tokenizer
    texts: list[str | BaseException] = []
    for prompt in prompts:
        try:
            texts.append(prompt if isinstance(prompt, str) else _render_chat(tokenizer, prompt))
        except Exception as exc:
            texts.append(exc)
    valid = [text for text in texts if isinstance(text, str)]
    # A rendered chat already holds the special tokens (BOS) its template wants.
    chat = bool(prompts) and not isinstance(prompts[0], str)
    encoded = iter(tokenizer(valid, add_special_tokens=not chat)["input_ids"] if valid else [])
    return [text if isinstance(text, BaseException) else list(next(encoded)) for text in texts]


def _render_chat(tokenizer: Any, messages: list[Message]) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise InvalidGeneratorError(
            "this model's tokenizer has no chat template, so it cannot chat; use .complete() "
            "with text, or set tokenizer.chat_template and wrap it with from_obj()"
        )
    text: str = tokenizer.apply_chat_template(
        [message.to_dict() for message in messages], add_generation_prompt=True, tokenize=False
    )
    return text


def _generate_options(params: GenerateParams, pad_id: int) -> dict[str, Any]:
    """`generate()` keyword arguments for `params` (the same for every row of a call)."""
    options: dict[str, Any] = {
        "max_new_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
        "pad_token_id": pad_id,
    }
    sampling = params.temperature != 0 and (
        params.temperature is not None or params.top_p is not None or params.top_k is not None
    )
    if params.temperature == 0:
        # Greedy; clear sampling settings a model's generation_config may carry.
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    elif sampling:
        options["do_sample"] = True
        if params.temperature is not None:
            options["temperature"] = params.temperature
        if params.top_p is not None:
            options["top_p"] = params.top_p
        if params.top_k is not None:
            options["top_k"] = params.top_k
    for key in ("num_return_sequences", "input_ids", "attention_mask", "stopping_criteria"):
        if key in params.extra:
            raise BadRequestError(
                f"extra param {key!r} cannot be set: jib generates one output per prompt and "
                "builds the inputs itself",
                provider=_PROVIDER,
            )
    options.update(params.extra)
    return options


def _decode(loaded: _Loaded, item: _Item, row: list[int], finished_at: int | None) -> _Output:
    """Turn one row of generated ids into text, stop reason and usage."""
    count = len(row) if finished_at is None else min(finished_at, len(row))
    hit_eos = False
    for position, token in enumerate(row[:count]):
        if token in loaded.eos_ids:
            count, hit_eos = position + 1, True
            break
    text = loaded.tokenizer.decode(row[:count], skip_special_tokens=True)
    text, stopped = trim_at_stop(text, item.stops)
    reason: StopReason = "stop"
    if not (stopped or hit_eos) and count >= item.options["max_new_tokens"]:
        reason = "length"
    return _Output(text, reason, Usage(len(item.ids), count))


def _dtype_keyword(transformers: Any) -> str:
    """`dtype` since transformers 4.56; `torch_dtype` before."""
    version = str(getattr(transformers, "__version__", "0"))
    parts = [int(part) if part.isdigit() else 0 for part in [*version.split("."), "0"][:2]]
    return "dtype" if (parts[0], parts[1]) >= (4, 56) else "torch_dtype"


@functools.cache
def _stopping_criteria_classes() -> tuple[type[Any], type[Any]]:
    """Our stopping criterion class (built once transformers is importable) and the list type."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopSequencesAndCancel(StoppingCriteria):
        """Finish each row at its own stop sequences; finish every row on cancellation.

        Records, per row, how many tokens had been generated when it finished here.
        """

        def __init__(
            self,
            torch: Any,
            tokenizer: Any,
            stops: list[list[str]],
            prompt_width: int,
            cancelled: threading.Event,
        ) -> None:
            self.torch = torch
            self.tokenizer = tokenizer
            self.stops = stops
            self.prompt_width = prompt_width
            self.cancelled = cancelled
            longest = max((len(stop) for row in stops for stop in row), default=0)
            self.window = longest + _STOP_WINDOW_SLACK
            self.finished_at: list[int | None] = [None] * len(stops)
            self.any_stops = any(stops)

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            generated = input_ids.shape[1] - self.prompt_width
            if self.cancelled.is_set():
                return self.torch.ones(
                    len(self.stops), dtype=self.torch.bool, device=input_ids.device
                )
            if not self.any_stops:
                return self.torch.zeros(
                    len(self.stops), dtype=self.torch.bool, device=input_ids.device
                )
            for row, stops in enumerate(self.stops):
                if not stops or self.finished_at[row] is not None:
                    continue
                start = max(self.prompt_width, input_ids.shape[1] - self.window)
                tail = self.tokenizer.decode(input_ids[row, start:], skip_special_tokens=True)
                if any(stop in tail for stop in stops):
                    self.finished_at[row] = generated
            done = [at is not None for at in self.finished_at]
            return self.torch.tensor(done, dtype=self.torch.bool, device=input_ids.device)

    return StopSequencesAndCancel, StoppingCriteriaList
