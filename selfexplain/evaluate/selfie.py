"""The SelfIE baseline (Chen et al. 2024), as the paper runs it: the *untrained* target reads its
own feature vector.

The unit vector, times a scale, replaces the input embedding of a placeholder in a "what does
this mean" prompt, and the model's free continuation is the description. The paper tries the
scales 1, 5, 10, 25 and 50 and reports the best; choosing the scale on the very queries it is
scored on makes the number an upper bound on what SelfIE would get with a scale fixed in advance.
"""

from __future__ import annotations

import ray
import torch

from selfexplain.evaluate.generation import generate_answers
from selfexplain.explainer.vectors import (
    VECTOR_SPAN,
    ExplainerWithVectors,
    add_vector_tokens,
    grow_embeddings,
    vector_batch,
)
from selfexplain.models.loading import load_model

PROMPT = f"Here is a concept: {VECTOR_SPAN}. What does it mean? It means"


@ray.remote
def selfie_answers(
    target_dir: str,
    rows: list[dict],
    scales: list[float],
    batch_size: int,
    max_new_tokens: int,
    use_gpu: bool,
    trust_remote_code: bool,
) -> dict[float, list[str]]:
    """``scale -> answers``: the untrained target's descriptions of its own unit vectors x scale."""

    device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
    lm, tokenizer = load_model(target_dir, device=device, trust_remote_code=trust_remote_code)
    token_id = add_vector_tokens(tokenizer)
    grow_embeddings(lm, tokenizer)
    reader = ExplainerWithVectors(
        lm, token_id, projection=None, rescale=False
    ).eval()  # raw, as in the paper
    vectors, layers = vector_batch(rows)
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return {
        scale: generate_answers(
            reader,
            tokenizer,
            [PROMPT] * len(rows),
            batch_size,
            max_new_tokens,
            unit * scale,
            layers,
        )
        for scale in scales
    }


def best_scale(answers: dict[float, list[str]], score) -> float:
    """The scale whose answers ``score`` (answers -> mean score) rates highest."""
    return max(answers, key=lambda scale: score(answers[scale]))
