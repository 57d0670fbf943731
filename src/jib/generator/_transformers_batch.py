"""How `TransformersGenerator` runs a batch: prompts to token ids, padded `generate` calls, text.

Everything here runs on the model's worker thread. The generator (`transformers.py`) owns the
lifecycle and the async side; this module only knows transformers and torch objects, which it is
handed (it imports transformers itself only for the stopping criterion's base class).

- `prepare_model`: check a model/tokenizer (and processor) and work out the token ids
  generation needs.
- `prepare_items`: tokenize a batch and work out each prompt's `generate` options; chats go
  through the chat template with the params' tools, and conversations holding images or audio
  through the model's processor (`AutoProcessor`), or fail here, before generating, when the
  model has none for them.
- `plan_batches`: group prompts that can share a `generate` call, in sub-batches.
- `generate_padded`: one left-padded `generate` call, rows decoded with stop reason and usage,
  and tool calls read from the text (`_tool_text`).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jib.content import ContentAudioInput, ContentImageUrl, ContentPart, ContentText
from jib.errors import BadRequestError, ContextLengthError, InvalidGeneratorError
from jib.generator._local import (
    DEFAULT_MAX_TOKENS,
    as_provider_error,
    chunked,
    freeze,
    group_indices,
    trim_at_stop,
)
from jib.generator._local_chat import (
    offered_tools,
    refuse_for_text,
    refuse_params,
    refuse_parts,
    template_message,
)
from jib.generator._tool_text import read_tool_calls, tool_names
from jib.messages import Message, StopReason, Usage
from jib.params import GenerateParams
from jib.tools import ToolCall

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
# Model inputs a processor returns beside the token ids (pixel values, audio features, ...).
_TOKEN_INPUTS = ("input_ids", "attention_mask")
_READS_TOOLS = re.compile(r"\btools\b")
_MAX_QUOTED = 300  # characters of a library's error message quoted in ours


@dataclass(slots=True)
class Loaded:
    """A model and tokenizer ready to generate, with the token ids generation needs.

    `processor` is the model's multimodal processor (`AutoProcessor`), when it has one that
    takes images or audio; `None` for a text-only model.
    """

    torch: Any
    model: Any
    tokenizer: Any
    pad_id: int
    eos_ids: frozenset[int]
    max_context: int | None
    processor: Any = None

    @property
    def takes_images(self) -> bool:
        """Whether the processor reads images."""
        return getattr(self.processor, "image_processor", None) is not None

    @property
    def takes_audio(self) -> bool:
        """Whether the processor reads audio."""
        processor = self.processor
        return (
            getattr(processor, "audio_processor", None) is not None
            or getattr(processor, "feature_extractor", None) is not None
        )


@dataclass(slots=True)
class Item:
    """One prompt of a batch, tokenized, with the options its generation uses.

    `inputs` holds what a processor made beside the token ids (pixel values, ...): such an item
    is generated alone. `tools` holds the names of the tools offered, `None` when tool calls are
    not read from the answer.
    """

    ids: list[int]
    options: dict[str, Any]
    stops: list[str]
    seed: int | None
    inputs: dict[str, Any] = field(default_factory=dict)
    tools: frozenset[str] | None = None


@dataclass(slots=True)
class Output:
    """One generated row: its text, why it stopped, the tokens it used and the tool calls read
    from it."""

    text: str
    stop_reason: StopReason
    usage: Usage
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(slots=True)
class _Encoded:
    ids: list[int]
    inputs: dict[str, Any]
    tools: frozenset[str] | None


def prepare_model(torch: Any, model: Any, tokenizer: Any, processor: Any = None) -> Loaded:
    """Check a model/tokenizer pair (and its processor) and work out the token ids generation
    needs.

    The pad id is the tokenizer's, else the generation config's, else an end-of-sequence id:
    padded positions are masked out, so any id will do. A processor that takes neither images
    nor audio is not kept: the tokenizer does its work.

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
    text_config = config
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        text_config = get_text_config()  # a vision-language model's language model
    max_context = getattr(text_config, "max_position_embeddings", None)
    loaded = Loaded(
        torch=torch,
        model=model,
        tokenizer=tokenizer,
        pad_id=int(pad_id),
        eos_ids=frozenset(eos_ids),
        max_context=max_context if isinstance(max_context, int) else None,
        processor=processor,
    )
    if not (loaded.takes_images or loaded.takes_audio):
        loaded.processor = None
    return loaded


def prepare_items(
    loaded: Loaded, prompts: Sequence[str | list[Message]], params: Sequence[GenerateParams]
) -> list[Item | BaseException]:
    """Tokenize every prompt and work out its `generate` options; a bad item gets its error."""
    items: list[Item | BaseException] = []
    for encoded, item_params in zip(_encode_all(loaded, prompts, params), params, strict=True):
        try:
            if isinstance(encoded, BaseException):
                raise encoded
            ids = encoded.ids
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
        stops = list(item_params.stop or ())
        items.append(Item(ids, options, stops, item_params.seed, encoded.inputs, encoded.tools))
    return items


def plan_batches(prepared: Sequence[Item | BaseException], batch_size: int) -> list[list[int]]:
    """Indices of the prepared items per `generate` call.

    Items share a call when their options and seed are equal (stop sequences may differ), at most
    `batch_size` to a call; within a group, similar lengths go together to waste less compute on
    padding when the group spans several calls. An item with processor inputs (an image, ...)
    goes alone.
    """
    ready = {index: item for index, item in enumerate(prepared) if isinstance(item, Item)}
    keys = [
        (freeze(item.options), item.seed, index if item.inputs else None)
        for index, item in ready.items()
    ]
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
    inputs = _on_device(loaded, chunk[0].inputs) if len(chunk) == 1 else {}
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=torch.tensor(input_ids, device=device),
            attention_mask=torch.tensor(mask, device=device),
            stopping_criteria=criteria_list([criterion]),
            **inputs,
            **chunk[0].options,
        )
    rows: list[list[int]] = output[:, width:].tolist()
    return [
        _decode(loaded, item, row, finished_at)
        for item, row, finished_at in zip(chunk, rows, criterion.finished_at, strict=True)
    ]


def _on_device(loaded: Loaded, inputs: dict[str, Any]) -> dict[str, Any]:
    """A processor's tensors on the model's device, floating ones in the model's dtype."""
    moved: dict[str, Any] = {}
    dtype = getattr(loaded.model, "dtype", None)
    for name, value in inputs.items():
        if hasattr(value, "to"):
            value = value.to(loaded.model.device)
            if dtype is not None and value.is_floating_point():
                value = value.to(dtype)
        moved[name] = value
    return moved


def _encode_all(
    loaded: Loaded, prompts: Sequence[str | list[Message]], params: Sequence[GenerateParams]
) -> list[_Encoded | BaseException]:
    """Token ids of each prompt (chats through the chat template, or the processor for those
    holding images or audio); the text ones in one tokenizer call."""
    tokenizer = loaded.tokenizer
    texts: list[str | _Encoded | BaseException] = []
    tools: list[frozenset[str] | None] = []
    for prompt, item_params in zip(prompts, params, strict=True):
        offered: frozenset[str] | None = None
        try:
            if isinstance(prompt, str):
                refuse_for_text(item_params, PROVIDER)
                texts.append(prompt)
            else:
                refuse_params(item_params, PROVIDER)
                definitions = offered_tools(item_params)
                offered = None if definitions is None else tool_names(definitions)
                if _has_media(prompt):
                    texts.append(_process_chat(loaded, prompt, definitions, offered))
                else:
                    texts.append(_render_chat(tokenizer, prompt, definitions))
        except Exception as exc:
            texts.append(exc)
        tools.append(offered)
    valid = [text for text in texts if isinstance(text, str)]
    # A rendered chat already holds the special tokens (BOS) its template wants.
    chat = bool(prompts) and not isinstance(prompts[0], str)
    encoded = iter(tokenizer(valid, add_special_tokens=not chat)["input_ids"] if valid else [])
    results: list[_Encoded | BaseException] = []
    for text, offered in zip(texts, tools, strict=True):
        if isinstance(text, str):
            results.append(_Encoded(list(next(encoded)), {}, offered))
        else:
            results.append(text)
    return results


def _has_media(messages: list[Message]) -> bool:
    return any(
        type(part) is not ContentText
        for message in messages
        if message.has_parts
        for part in message.content_parts
    )


def _render_chat(
    tokenizer: Any, messages: list[Message], tools: list[dict[str, Any]] | None
) -> str:
    template = _chat_template(tokenizer)
    _check_tools(template, tools)
    text: str = tokenizer.apply_chat_template(
        [template_message(message, arguments_as_objects=True) for message in messages],
        tools=tools,
        add_generation_prompt=True,
        tokenize=False,
    )
    return text


def _chat_template(owner: Any) -> Any:
    template = getattr(owner, "chat_template", None)
    if not template:
        raise InvalidGeneratorError(
            "this model's tokenizer has no chat template, so it cannot chat; use .complete() "
            "with text, or set tokenizer.chat_template and wrap it with from_obj()"
        )
    return template


def _check_tools(template: Any, tools: list[dict[str, Any]] | None) -> None:
    """Refuse tools a chat template would drop: one that never reads `tools`."""
    if not tools:
        return
    sources = template.values() if isinstance(template, dict) else [template]
    if not any(_READS_TOOLS.search(str(source)) for source in sources):
        names = ", ".join(sorted(tool_names(tools)))
        raise BadRequestError(
            f"this model's chat template takes no tools (it never reads `tools`), so the tools "
            f"given ({names}) would be dropped; use a model whose template supports tool use",
            provider=PROVIDER,
        )


def _process_chat(
    loaded: Loaded,
    messages: list[Message],
    tools: list[dict[str, Any]] | None,
    offered: frozenset[str] | None,
) -> _Encoded:
    """A conversation holding images or audio, through the model's processor: token ids and
    the processor's other inputs (pixel values, audio features).

    Raises:
        BadRequestError: a part the model cannot take (no processor, a processor without an
            image or audio processor, a file, a remote URL), before anything is generated.
    """
    refuse_parts(messages, PROVIDER, lambda part: _why_not(loaded, part))
    processor = loaded.processor
    own = getattr(processor, "chat_template", None)
    template = own or _chat_template(loaded.tokenizer)
    _check_tools(template, tools)
    conversation = [
        template_message(message, content=_blocks(message), arguments_as_objects=True)
        for message in messages
    ]
    try:
        output = processor.apply_chat_template(
            conversation,
            chat_template=None if own else template,
            tools=tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
    except Exception as exc:
        # Its message may quote a part's data (megabytes of base64): shown cut short.
        said = str(exc)
        if len(said) > _MAX_QUOTED:
            said = said[:_MAX_QUOTED] + "…"
        raise BadRequestError(
            f"the model's processor could not read this conversation's images or audio "
            f"({type(exc).__name__}: {said})",
            provider=PROVIDER,
        ) from exc
    ids = output["input_ids"]
    inputs = {name: value for name, value in output.items() if name not in _TOKEN_INPUTS}
    return _Encoded([int(token) for token in ids[0].tolist()], inputs, offered)


def _why_not(loaded: Loaded, part: ContentPart) -> str | None:
    """Why this model cannot take `part` (`None`: it can)."""
    if loaded.processor is None:
        return (
            "this model is text-only (it has no processor for images or audio); send text, or "
            "use a vision or audio language model"
        )
    if isinstance(part, ContentImageUrl):
        if not loaded.takes_images:
            return "this model's processor takes no images"
        mimetype = part.mimetype
        if mimetype is None:
            return (
                "transformers! does not fetch remote URLs; fetch the image yourself and pass it "
                "inline (ContentImageUrl.from_bytes or from_file)"
            )
        if not mimetype.startswith("image/"):
            return f"its data is {mimetype}, not an image type"
        return None
    if isinstance(part, ContentAudioInput):
        return None if loaded.takes_audio else "this model's processor takes no audio"
    return "transformers! takes no files (documents); send their text instead"


def _blocks(message: Message) -> list[dict[str, Any]]:
    """A message's content as the blocks processors' chat templates read (`{"type": "image",
    "url": …}`); every message of a conversation with media is written so."""
    blocks: list[dict[str, Any]] = []
    for part in message.content_parts:
        if isinstance(part, ContentText):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ContentImageUrl):
            blocks.append({"type": "image", "url": part.url})
        elif isinstance(part, ContentAudioInput):
            blocks.append({"type": "audio", "url": f"data:{part.mimetype};base64,{part.data}"})
    return blocks


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
    calls: list[ToolCall] = []
    if item.tools is not None:
        text, calls = read_tool_calls(text, item.tools)
        if calls:
            reason = "tool_calls"
    return Output(text, reason, Usage(len(item.ids), count), calls)


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
