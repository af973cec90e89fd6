"""Tiny random models of every family selfexplain supports, built from transformers' config
classes (no hub): a few layers, 64 wide, saved with the tiny tokenizer so that a pipeline runs on
them."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM

COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)

# family -> (config class, its settings beyond COMMON)
FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "final_logit_softcapping": None}),
    "gemma3_text": ("Gemma3TextConfig", {"head_dim": 16, "final_logit_softcapping": None}),
    "phi3": ("Phi3Config", {"pad_token_id": 0}),
    "olmo2": ("Olmo2Config", {}),
    "gpt_neox": ("GPTNeoXConfig", {}),
    "gemma3": ("Gemma3Config", {}),  # the multimodal wrapper; its text model is explained
}


def family_config(family: str, vocab_size: int):
    class_name, extra = FAMILIES[family]
    settings = {**COMMON, **extra}
    config_class = getattr(transformers, class_name)
    if family == "gemma3":
        text = transformers.Gemma3TextConfig(
            vocab_size=vocab_size, **{**COMMON, "head_dim": 16, "final_logit_softcapping": None}
        )
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, image_size=28, patch_size=14)  # fmt: skip
        return config_class(text_config=text.to_dict(), vision_config=vision, mm_tokens_per_image=4)
    if family == "gpt_neox":  # multi-head attention only
        settings.pop("num_key_value_heads")
    return config_class(vocab_size=vocab_size, **settings)


def tiny_model(family: str, vocab_size: int = 101, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(family_config(family, vocab_size))
    return model.eval()


def save_tiny_family(family: str, out_dir: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """A tiny random model of ``family`` with the tiny tokenizer (from ``tokenizer_dir``), saved
    as an HF folder that a run can name as its target or explainer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = tiny_model(family, vocab_size=len(tokenizer), seed=seed)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(model.config, key, getattr(tokenizer, key))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
