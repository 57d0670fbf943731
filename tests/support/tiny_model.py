"""Build tiny, randomly initialised models on the fly — no downloads.

`build_tiny_model`: a 2-layer Llama with a word-level tokenizer trained on a few sentences and a
simple chat template: a few hundred KB on disk, loadable by `transformers` (and servable by
`transformers serve`) fully offline. Its output is random words, which is all the tests need.

`build_tiny_vision_model`: a Llava (a one-layer CLIP vision tower on a 2-layer Llama) with its
processor (`LlavaProcessor`: a PIL CLIP image processor and a word-level tokenizer with an
`<image>` token), loadable with `AutoModelForImageTextToText` and `AutoProcessor`; it reads
16x16 images as four patches.

`TOOL_CHAT_TEMPLATE`: a chat template that offers tools (their names, in a system turn) and
writes tool calls Hermes-style, reading the arguments as an object.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a tiny model for tests",
    "what is the capital of france paris is the capital",
    "say hello to the user and answer the question",
    "one two three four five six seven eight nine ten",
    "red green blue yellow black white orange purple",
]
SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + ' ' + message['content'] + ' </s> ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant ' }}{% endif %}"
)
MODEL_NAME = "tiny-random-llama"

TOOL_CHAT_TEMPLATE = (
    "{% if tools %}{{ '<s>system tools: ' }}"
    "{% for tool in tools %}{{ tool['function']['name'] + ' ' }}{% endfor %}{{ '</s> ' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + ' ' + message['content'] }}"
    "{% for call in message['tool_calls'] or [] %}"
    "{{ ' <tool_call> ' + call['function']['name'] }}"
    "{% for key, value in call['function']['arguments'].items() %}"
    "{{ ' ' + key + ' ' + value }}{% endfor %}{{ ' </tool_call>' }}"
    "{% endfor %}{{ ' </s> ' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant ' }}{% endif %}"
)
"""Offers tools by name and writes calls as `<tool_call> name key value … </tool_call>`: the
call's arguments must reach it as an object (Hugging Face templates' convention)."""

VISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<s>' + message['role'] + ' ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image> ' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] + ' ' }}{% endif %}"
    "{% endfor %}{% endif %}{{ ' </s> ' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant ' }}{% endif %}"
)
VISION_MODEL_NAME = "tiny-random-llava"


def build_tiny_model(directory: Path, *, seed: int = 0) -> Path:
    """Write a tiny model and tokenizer to `directory` (created) and return it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_model = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer_model.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, vocab_size=256)
    tokenizer_model.train_from_iterator([*CORPUS, "system user assistant"], trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tokenizer_model.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    (directory / "jib_tiny_model.json").write_text(json.dumps({"name": MODEL_NAME, "seed": seed}))
    return directory


def build_tiny_vision_model(directory: Path, *, seed: int = 0) -> Path:
    """Write a tiny Llava and its processor to `directory` (created) and return it."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer_model = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer_model.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=[*SPECIAL_TOKENS, "<image>"], vocab_size=256)
    tokenizer_model.train_from_iterator([*CORPUS, "system user assistant"], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.chat_template = VISION_CHAT_TEMPLATE
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=VISION_CHAT_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,  # CLIP's class token, which "default" drops
    )
    processor.save_pretrained(directory)

    torch.manual_seed(seed)
    text_config = LlamaConfig(
        vocab_size=tokenizer_model.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
        projection_dim=16,
    )
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    (directory / "jib_tiny_model.json").write_text(
        json.dumps({"name": VISION_MODEL_NAME, "seed": seed})
    )
    return directory


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
