"""Top-activating contexts: where in a text set a feature direction fires most.

A description can later be scored by how well it picks out these contexts against random ones
(detection scoring, as in OpenAI's automated interpretability and delphi). The text set is the
packaged prompts plus two lexicon sentences per concept, so every concept occurs somewhere.
Its streams are computed once per actor and kept in float16.
"""

from __future__ import annotations

import random

import torch

from selfexplain.data import builtin_prompts
from selfexplain.features.concepts import HELD_OUT_FRAMES, Concept, contexts
from selfexplain.models.hooks import capture_residual
from selfexplain.models.padding import padded_batch


def text_set(concepts: list[Concept], seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = list(builtin_prompts())
    for concept in concepts:
        for member in rng.sample(concept.members, min(2, len(concept.members))):
            texts.extend(contexts(member, (rng.choice(HELD_OUT_FRAMES),)))
    return list(dict.fromkeys(texts))


class TextSetStreams:
    """The stream at every token of every text that can count as firing (not padding, not
    special, not the first token), per layer."""

    def __init__(self, model, tokenizer, texts: list[str], layers: list[int], batch_size: int = 64):
        self.texts = texts
        self.streams: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.masks: list[torch.Tensor] = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = padded_batch(
                    tokenizer,
                    texts[start : start + batch_size],
                    model.device,
                    return_special_tokens_mask=True,
                )
                special = batch.pop("special_tokens_mask").cpu().bool()
                attended = batch["attention_mask"].cpu()
                # Special tokens (BOS) and each text's first position (the attention sink: BOS, or
                # the first word in a model without one) carry huge, content-free norms: never
                # count them as firing.
                first = attended.cumsum(dim=1) == 1
                self.masks.append(attended.bool() & ~special & ~first)
                with capture_residual(model, layers) as captured:
                    model(**batch, logits_to_keep=1)
                for layer in layers:
                    self.streams[layer].append(captured[layer].to("cpu", torch.float16))

    def top(self, layer: int, direction: torch.Tensor, k: int) -> tuple[list[str], list[float]]:
        """The ``k`` texts with the largest max-over-tokens projection on ``direction``."""
        scores = []
        for stream, mask in zip(self.streams[layer], self.masks):
            projected = stream.float() @ direction.float()
            scores.append(projected.masked_fill(~mask, float("-inf")).max(dim=1).values)
        all_scores = torch.cat(scores)
        values, indices = all_scores.topk(min(k, len(all_scores)))
        return [self.texts[i] for i in indices.tolist()], values.tolist()
