"""How `TransformersGenerator` runs a batch: prompts to token ids, padded `generate` calls, text.

Everything here runs on the model's worker thread. The generator (`transformers.py`) owns the
lifecycle and the async side; this module only knows transformers and torch objects, which it is
handed (it imports transformers itself only for the stopping criterion's base class).

- `prepare_model`: check a model/tokenizer pair and work out the token ids generation needs.
- `prepare_items`: tokenize a batch and work out each prompt's `generate` options.
- `plan_batches`: group prompts that can share a `generate` call, in sub-batches.
- `generate_padded`: one left-padded `generate` call, rows decoded with stop reason and usage.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jib.errors import BadRequestError, ContextLengthError, InvalidGeneratorError
from jib.generator._local import (
    DEFAULT_MAX_TOKENS,
    as_provider_error,
    chunked,
    freeze,
    group_indices,
    trim_at_stop,
)
from jib.messages import Message, StopReason, Usage
from jib.params import GenerateParams

__all__ = [
    "Item",
    "Loaded",
    "Output",
    "generate_padded",
    "plan_batches",
    "prepare_items",
    "prepare_model",
]

PROVIDER = "transformers"
_STOP_WINDOW_SLACK = 8  # tokens decoded beyond the longest stop sequence when checking for it
# `generate` arguments jib sets itself, or that would break one output per prompt.
_RESERVED_OPTIONS = ("num_return_sequences", "input_ids", "attention_mask", "stopping_criteria")


@dataclass(slots=True)
class Loaded:
    """A model and tokenizer ready to generate, with the token ids generation needs."""

    torch: Any
    model: Any
    tokenizer: Any
    pad_id: int
    eos_ids: frozenset[int]
    max_context: int | None


@dataclass(slots=True)
class Item:
    """One prompt of a batch, tokenized, with the options its generation uses."""

    ids: list[int]
    options: dict[str, Any]
    stops: list[str]
    seed: int | None


@dataclass(slots=True)
class Output:
    """One generated row: its text, why it stopped and the tokens it used."""

    text: str
    stop_reason: StopReason
    usage: Usage


def prepare_model(torch: Any, model: Any, tokenizer: Any) -> Loaded:
    """Check a model/tokenizer pair and work out the token ids generation needs.

    The pad id is the tokenizer's, else the generation config's, else an end-of-sequence id:
    padded positions are masked out, so any id will do.

    Raises:
        InvalidGeneratorError: the model cannot generate, or is an encoder-decoder model.
    """
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
    return Loaded(
        torch=torch,
        model=model,
        tokenizer=tokenizer,
        pad_id=int(pad_id),
        eos_ids=frozenset(eos_ids),
        max_context=max_context if isinstance(max_context, int) else None,
    )


def prepare_items(
    loaded: Loaded, prompts: Sequence[str | list[Message]], params: Sequence[GenerateParams]
) -> list[Item | BaseException]:
    """Tokenize every prompt and work out its `generate` options; a bad item gets its error."""
    items: list[Item | BaseException] = []
    for ids, item_params in zip(_encode_all(loaded, prompts), params, strict=True):
        try:
            if isinstance(ids, BaseException):
                raise ids
            if not ids:
                raise BadRequestError("the prompt is empty", provider=PROVIDER)
            if loaded.max_context is not None and len(ids) > loaded.max_context:
                raise ContextLengthError(
                    f"the prompt has {len(ids)} tokens, more than the model's context of "
                    f"{loaded.max_context}",
                    provider=PROVIDER,
                )
            options = _generate_options(item_params, loaded.pad_id)
        except Exception as exc:
            items.append(as_provider_error(exc, PROVIDER))
            continue
        items.append(Item(ids, options, list(item_params.stop or ()), item_params.seed))
    return items


def plan_batches(prepared: Sequence[Item | BaseException], batch_size: int) -> list[list[int]]:
    """Indices of the prepared items per `generate` call.

    Items share a call when their options and seed are equal (stop sequences may differ), at most
    `batch_size` to a call; within a group, similar lengths go together to waste less compute on
    padding when the group spans several calls.
    """
    ready = {index: item for index, item in enumerate(prepared) if isinstance(item, Item)}
    keys = [(freeze(item.options), item.seed) for item in ready.values()]
    indices = list(ready)
    batches: list[list[int]] = []
    for group in group_indices(keys):
        members = sorted((indices[i] for i in group), key=lambda index: len(ready[index].ids))
        batches.extend(chunked(members, batch_size))
    return batches


def generate_padded(loaded: Loaded, chunk: list[Item], cancelled: threading.Event) -> list[Output]:
    """One `generate` call for `chunk` (same options and seed), left-padded with a mask.

    Decoder-only models continue from the last position, so padding goes on the left whatever
    the tokenizer's `padding_side`; the attention mask hides it. Rows end at their own stop
    sequences; every row ends at the next token once `cancelled` is set.
    """
    torch = loaded.torch
    width = max(len(item.ids) for item in chunk)
    input_ids = [[loaded.pad_id] * (width - len(item.ids)) + item.ids for item in chunk]
    mask = [[0] * (width - len(item.ids)) + [1] * len(item.ids) for item in chunk]
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
        _decode(loaded, item, row, finished_at)
        for item, row, finished_at in zip(chunk, rows, criterion.finished_at, strict=True)
    ]


def _encode_all(
    loaded: Loaded, prompts: Sequence[str | list[Message]]
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
    if params.temperature == 0:
        # Greedy; clear sampling settings a model's generation_config may carry.
        options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    elif any(value is not None for value in (params.temperature, params.top_p, params.top_k)):
        options["do_sample"] = True
        for name in ("temperature", "top_p", "top_k"):
            value = getattr(params, name)
            if value is not None:
                options[name] = value
    for key in _RESERVED_OPTIONS:
        if key in params.extra:
            raise BadRequestError(
                f"extra param {key!r} cannot be set: jib generates one output per prompt and "
                "builds the inputs itself",
                provider=PROVIDER,
            )
    options.update(params.extra)
    return options


def _decode(loaded: Loaded, item: Item, row: list[int], finished_at: int | None) -> Output:
    """Turn one row of generated ids into text, stop reason and usage (padding not counted)."""
    count = len(row) if finished_at is None else min(finished_at, len(row))
    hit_eos = False
    for position, token in enumerate(row[:count]):
        if token in loaded.eos_ids:
            count, hit_eos = position + 1, True
            break
    text = loaded.tokenizer.decode(row[:count], skip_special_tokens=True)
    text, stopped = trim_at_stop(text, item.stops)
    # A row that ran to the end of the call without an end token or stop sequence hit the limit.
    reason: StopReason = "stop" if stopped or hit_eos or finished_at is not None else "length"
    return Output(text, reason, Usage(len(item.ids), count))


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
            rows = len(self.stops)
            if self.cancelled.is_set():
                return self.torch.ones(rows, dtype=self.torch.bool, device=input_ids.device)
            if not self.any_stops:
                return self.torch.zeros(rows, dtype=self.torch.bool, device=input_ids.device)
            generated = input_ids.shape[1] - self.prompt_width
            start = max(self.prompt_width, input_ids.shape[1] - self.window)
            for row, stops in enumerate(self.stops):
                if not stops or self.finished_at[row] is not None:
                    continue
                tail = self.tokenizer.decode(input_ids[row, start:], skip_special_tokens=True)
                if any(stop in tail for stop in stops):
                    self.finished_at[row] = generated
            done = [at is not None for at in self.finished_at]
            return self.torch.tensor(done, dtype=self.torch.bool, device=input_ids.device)

    return StopSequencesAndCancel, StoppingCriteriaList
