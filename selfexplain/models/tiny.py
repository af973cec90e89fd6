"""`tiny-llama`: a small random Llama with a tokenizer trained locally, for fast offline tests.

Everything comes from a seed and text shipped in the package, so two builds are identical and no
hub is touched. The tokenizer is byte-level BPE (any text encodes) trained on the built-in prompts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from selfexplain.data import builtin_prompts

TINY_SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


def train_tiny_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = builtin_prompts() + [
        'If the token "x" were removed, the next token would be unchanged or changes to "y".'
    ]
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def build_tiny_llama(
    out_dir: Path, seed: int = 0, hidden_size: int = 64, num_layers: int = 4
) -> None:
    """Write a tiny random Llama and its tokenizer as an HF directory. ``tiny-llama-wide`` (96 wide,
    3 layers) is the "other" explainer of tests: a different model with another hidden size."""
    tokenizer = train_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
