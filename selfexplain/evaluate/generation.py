"""Greedy, batched decoding of explainer answers."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from selfexplain.explainer.vectors import in_explainer_markers


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    queries: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    vectors: torch.Tensor | None = None,
    layers: torch.Tensor | None = None,
) -> list[str]:
    """Decode an answer for each query; left padding keeps every query's end at the same column.

    With ``vectors`` (one per query) ``model`` is an ExplainerWithVectors: the queries' embeddings,
    vectors written in, are what the LM generates from."""
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    answers: list[str] = []
    options = {
        "max_new_tokens": max_new_tokens,
        "do_sample": False,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    try:
        for start in range(0, len(queries), batch_size):
            chunk = queries[start : start + batch_size]
            texts = [in_explainer_markers(tokenizer, q) for q in chunk]
            batch = tokenizer(texts, return_tensors="pt", padding=True).to(device)
            if (
                vectors is None
            ):  # a text query (to a vector explainer too: one trained on a task mix)
                lm = getattr(model, "lm", model)
                output = lm.generate(**batch, **options)[:, batch["input_ids"].shape[1] :]
            else:
                stop = start + len(batch["input_ids"])
                embeds = model.embed(
                    batch["input_ids"],
                    vectors[start:stop].to(device),
                    layers[start:stop].to(device),
                )
                output = model.lm.generate(
                    inputs_embeds=embeds, attention_mask=batch["attention_mask"], **options
                )
                output = output[:, -max_new_tokens:] if output.shape[1] > max_new_tokens else output
            answers.extend(tokenizer.batch_decode(output, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = previous_side
    return answers
