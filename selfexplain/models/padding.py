"""Batched forwards over prompts of different lengths, numbered as if each ran alone.

With padding, a row's tokens must still get positions 0, 1, 2, ...: without ``position_ids`` a
left-padded row's first real token would sit at position ``pad_count`` and its rotary positions
(and so its activations and next-token prediction) would differ from the unbatched run's. Every
ground-truth forward over a padded batch goes through :func:`padded_batch`.
"""

from __future__ import annotations

import torch


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """``Int[Tensor, "batch pos"]``: each row's real tokens numbered from 0 (padding gets 0)."""
    return (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)


def padded_batch(
    tokenizer, texts: list[str], device, side: str = "left", **kwargs
) -> dict[str, torch.Tensor]:
    """Tokenize ``texts`` padded on ``side`` (left: every row ends in the last column), with
    ``position_ids``; extra ``kwargs`` go to the tokenizer (e.g. ``return_special_tokens_mask``)."""
    previous = tokenizer.padding_side
    tokenizer.padding_side = side
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True, **kwargs)
    finally:
        tokenizer.padding_side = previous
    batch["position_ids"] = position_ids(batch["attention_mask"])
    return {key: value.to(device) for key, value in batch.items()}
