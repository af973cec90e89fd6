"""Greedy, batched decoding of explainer answers."""

from __future__ import annotations

from collections.abc import Sequence

import torch


@torch.no_grad()
def generate_answers(model, tokenizer, queries: Sequence[str], batch_size: int, max_new_tokens: int) -> list[str]:
    """Decode an answer for each query; left padding keeps every query's end at the same column."""
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    try:
        for start in range(0, len(queries), batch_size):
            batch = tokenizer(list(queries[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
            output = model.generate(
                **batch, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            answers.extend(tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
    finally:
        tokenizer.padding_side = previous_side
    return answers
