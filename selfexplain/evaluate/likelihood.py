"""Scoring fixed candidate answers by their likelihood under an explainer.

An untrained model asked a change-task question in free text almost never produces the
fixed answer form, so its free-text score is 0 and says nothing. Asked instead which of a few
well-formed answers it finds most likely ("unchanged from <<<X>>>", or "change to <<<Y>>>" for
the most common new outputs of training), it measures what the model knows zero-shot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selfexplain.train.examples import IGNORE_INDEX, collate, encode_example


@torch.no_grad()
def answer_log_likelihoods(model, tokenizer, queries: Sequence[str], answers: Sequence[str], batch_size: int,
                           vectors: torch.Tensor | None = None, layers: torch.Tensor | None = None) -> np.ndarray:
    """Summed log-probability of each ``answers[i]`` (and EOS) after ``queries[i]``."""
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        encoded = [encode_example(tokenizer, q, a) for q, a in zip(queries[start:stop], answers[start:stop])]
        batch = collate([ids for ids, _ in encoded], [s for _, s in encoded], tokenizer.pad_token_id,
                        None if vectors is None else vectors[start:stop].numpy(),
                        None if layers is None else layers[start:stop].numpy())
        batch = {k: v.to(device) for k, v in batch.items()}
        labels = batch.pop("labels")
        width = int((labels != IGNORE_INDEX).sum(dim=1).max())
        extra = {"vectors": batch["vectors"], "vector_layers": batch["vector_layers"]} if "vectors" in batch else {}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"], logits_to_keep=width + 1, **extra).logits[:, :-1].float()
        targets = labels[:, -width:]
        picked = F.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        scores.append((picked * (targets != IGNORE_INDEX)).sum(dim=1).cpu())
    return torch.cat(scores).numpy()


def most_likely(model, tokenizer, queries: Sequence[str], candidates: Sequence[Sequence[str]], batch_size: int,
                vectors: torch.Tensor | None = None, layers: torch.Tensor | None = None) -> list[str]:
    """For each query, the candidate answer the model scores highest."""
    flat_queries, flat_answers, owner = [], [], []
    for index, (query, options) in enumerate(zip(queries, candidates)):
        flat_queries += [query] * len(options)
        flat_answers += list(options)
        owner += [index] * len(options)
    expand = None if vectors is None else torch.as_tensor(owner)
    scores = answer_log_likelihoods(model, tokenizer, flat_queries, flat_answers, batch_size,
                                    None if vectors is None else vectors[expand],
                                    None if layers is None else layers[expand])
    best: dict[int, tuple[float, str]] = {}
    for index, answer, score in zip(owner, flat_answers, scores):
        if index not in best or score > best[index][0]:
            best[index] = (float(score), answer)
    return [best[i][1] for i in range(len(queries))]
