"""Scoring fixed candidate answers by their likelihood under an explainer.

An untrained model asked a change-task question in free text almost never produces the
fixed answer form, so its free-text score is 0 and says nothing. Asked instead which of a few
well-formed answers it finds most likely ("unchanged from <<<X>>>", or "change to <<<Y>>>" for
the most common new outputs of training), it measures what the model knows zero-shot.

A query is most of the tokens and has about four candidates, so each query runs once and its
candidates continue from its KV cache: 2-3x fewer tokens than one forward per (query, answer).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selfexplain.models.kv_cache import cache_argument, output_cache
from selfexplain.train.examples import collate


@torch.no_grad()
def candidate_log_likelihoods(model, tokenizer, queries: Sequence[str], candidates: Sequence[Sequence[str]],
                              batch_size: int, vectors: torch.Tensor | None = None,
                              layers: torch.Tensor | None = None) -> list[np.ndarray]:
    """Per query, the summed log-probability of each candidate answer (and EOS) after it.

    ``model`` is a causal LM, or an ExplainerWithVectors whose queries carry ``vectors``. Queries
    go ``batch_size`` at a time (left-padded, as in training), then their candidates
    ``batch_size`` rows at a time, each row from a copy of its query's cache."""
    device = next(model.parameters()).device
    lm = getattr(model, "lm", model)
    scores: list[np.ndarray] = []
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        query_ids = [tokenizer(q, add_special_tokens=True)["input_ids"] for q in queries[start:stop]]
        prefix = collate(query_ids, [len(ids) for ids in query_ids], tokenizer.pad_token_id,
                         None if vectors is None else vectors[start:stop].numpy(),
                         None if layers is None else layers[start:stop].numpy())
        prefix = {k: v.to(device) for k, v in prefix.items()}
        embeds = (model.embed(prefix["input_ids"], prefix["vectors"], prefix["vector_layers"]) if "vectors" in prefix
                  else lm.get_input_embeddings()(prefix["input_ids"]))
        out = lm(inputs_embeds=embeds, attention_mask=prefix["attention_mask"], position_ids=prefix["position_ids"],
                 use_cache=True, logits_to_keep=1)
        first = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # each query's next-token distribution
        cache = output_cache(out)
        rows = [(query, tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
                for query, options in enumerate(candidates[start:stop]) for answer in options]
        flat = np.concatenate([_continuations(lm, cache, first, prefix["attention_mask"], rows[i:i + batch_size])
                               for i in range(0, len(rows), batch_size)]) if rows else np.zeros(0)
        counts = [len(options) for options in candidates[start:stop]]
        scores += np.split(flat, np.cumsum(counts)[:-1])
    return scores


def _continuations(lm, cache, first: torch.Tensor, mask: torch.Tensor, rows: list[tuple[int, list[int]]]) -> np.ndarray:
    """Summed log-probabilities of ``rows`` = [(query index, answer ids)], right-padded after
    their queries' cached (left-padded) prefixes."""
    device = mask.device
    owner = torch.tensor([query for query, _ in rows], device=device)
    width = max(len(ids) for _, ids in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    real = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for row, (_, answer) in enumerate(rows):
        ids[row, :len(answer)] = torch.tensor(answer, device=device)
        real[row, :len(answer)] = True
    past = copy.deepcopy(cache)
    for cached in past.layers:  # each row continues from its own query's prefix
        cached.keys, cached.values = cached.keys[owner], cached.values[owner]
    attention = torch.cat([mask[owner], real.long()], dim=1)
    positions = mask.sum(dim=1)[owner, None] + torch.arange(width, device=device)
    logits = lm(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
                **{cache_argument(lm): past}).logits[:, :-1].float()
    picked = F.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    total = first[owner].gather(-1, ids[:, :1])[:, 0] + (picked * real[:, 1:]).sum(dim=1)
    return total.cpu().numpy()


def most_likely(model, tokenizer, queries: Sequence[str], candidates: Sequence[Sequence[str]], batch_size: int,
                vectors: torch.Tensor | None = None, layers: torch.Tensor | None = None) -> list[str]:
    """For each query, the candidate answer the model scores highest."""
    scores = candidate_log_likelihoods(model, tokenizer, queries, candidates, batch_size, vectors, layers)
    return [options[int(np.argmax(score))] for options, score in zip(candidates, scores)]
