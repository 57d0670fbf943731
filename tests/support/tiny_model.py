"""Build a tiny, randomly initialised causal language model on the fly — no downloads.

The model is a 2-layer Llama with a word-level tokenizer trained on a few sentences and a
simple chat template: a few hundred KB on disk, loadable by `transformers` (and servable by
`transformers serve`) fully offline. Its output is random words, which is all the tests need.
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


if __name__ == "__main__":
    import sys

    print(build_tiny_model(Path(sys.argv[1])))
