"""Scoring fixed candidate answers by their likelihood under an explainer.

An untrained model asked a change-task question in free text almost never produces the
fixed answer form, so its free-text score is 0 and says nothing. Asked instead which of a few
well-formed answers it finds most likely ("unchanged from <<<X>>>", or "change to <<<Y>>>" for
the most common new outputs of training), it measures what the model knows zero-shot.

A query is most of the tokens and has about four candidates, so each query runs once and its
candidates continue from its KV cache: 2-3x fewer tokens than one forward per (query, answer).
Candidates of one query that open with the same words ("The most likely output would change to
<<<" before each of several outputs) share that stem the same way: it runs once, and each
candidate's own ending continues from the stem's cache.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from selfexplain.explainer.vectors import in_explainer_markers
from selfexplain.models.kv_cache import cache_argument, output_cache
from selfexplain.train.examples import collate


@torch.no_grad()
def candidate_log_likelihoods(
    model,
    tokenizer,
    queries: Sequence[str],
    candidates: Sequence[Sequence[str]],
    batch_size: int,
    vectors: torch.Tensor | None = None,
    layers: torch.Tensor | None = None,
    share_stems: bool = True,
) -> list[np.ndarray]:
    """Per query, the summed log-probability of each candidate answer (and EOS) after it.

    ``model`` is a causal LM, or an ExplainerWithVectors whose queries carry ``vectors``. Queries
    go ``batch_size`` at a time (left-padded, as in training), then their candidates
    ``batch_size`` rows at a time, each row from a copy of its query's (or its stem's) cache.
    ``share_stems=False`` runs every candidate whole after its query (the benchmark times both)."""
    lm = getattr(model, "lm", model)
    scores: list[np.ndarray] = []
    for start in range(0, len(queries), batch_size):
        stop = min(start + batch_size, len(queries))
        part = slice(start, stop)
        cache, first, mask = _query_prefix(
            model, tokenizer, queries[part],
            None if vectors is None else vectors[part], None if layers is None else layers[part],
        )  # fmt: skip
        eos = [tokenizer.eos_token_id]
        rows = [
            (query, tokenizer(answer, add_special_tokens=False)["input_ids"] + eos)
            for query, options in enumerate(candidates[part])
            for answer in options
        ]
        stems = MIN_STEM_TOKENS if share_stems else None
        flat = _scores_sharing_stems(lm, cache, first, mask, rows, batch_size, stems)
        counts = [len(options) for options in candidates[part]]
        scores += np.split(flat, np.cumsum(counts)[:-1])
    return scores


def _query_prefix(model, tokenizer, queries: Sequence[str], vectors, layers):
    """Run a batch of queries (left-padded, as in training): their KV cache, each query's
    next-token log-probabilities, and the attention mask."""
    device = next(model.parameters()).device
    lm = getattr(model, "lm", model)
    query_ids = [
        tokenizer(in_explainer_markers(tokenizer, q), add_special_tokens=True)["input_ids"]
        for q in queries
    ]
    prefix = collate(
        query_ids,
        [len(ids) for ids in query_ids],
        tokenizer.pad_token_id,
        None if vectors is None else vectors.numpy(),
        None if layers is None else layers.numpy(),
    )
    prefix = {k: v.to(device) for k, v in prefix.items()}
    embeds = (
        model.embed(prefix["input_ids"], prefix["vectors"], prefix["vector_layers"])
        if "vectors" in prefix
        else lm.get_input_embeddings()(prefix["input_ids"])
    )
    out = lm(
        inputs_embeds=embeds,
        attention_mask=prefix["attention_mask"],
        position_ids=prefix["position_ids"],
        use_cache=True,
        logits_to_keep=1,
    )
    first = F.log_softmax(out.logits[:, -1].float(), dim=-1)
    return output_cache(out), first, prefix["attention_mask"]


# A stem shorter than this is not worth a forward of its own: the candidates then run whole.
MIN_STEM_TOKENS = 4


class Stem(NamedTuple):
    query: int
    ids: list[int]
    members: list[int]
    """The rows (indexes into ``rows``) that open with ``ids``; one member runs whole as its
    stem."""


def stems_of(rows: list[tuple[int, list[int]]], min_tokens: int = MIN_STEM_TOKENS) -> list[Stem]:
    """The rows [(query index, answer ids)] cut into stems: a query's candidates, sorted, join
    the stem before them while they share at least ``min_tokens`` opening tokens with it. A stem
    of several members stops at least one token short of the shortest, so every member has an
    ending of its own to score after it."""
    stems: list[Stem] = []
    for row in sorted(range(len(rows)), key=lambda r: rows[r]):
        query, ids = rows[row]
        if stems and stems[-1].query == query:
            shared = _common_prefix(stems[-1].ids, ids)
            if shared >= min_tokens:
                last = stems[-1]
                stem_ids = ids[
                    : min(shared, len(ids) - 1, *(len(rows[m][1]) - 1 for m in last.members))
                ]
                if len(stem_ids) >= min_tokens:
                    stems[-1] = Stem(query, stem_ids, [*last.members, row])
                    continue
        stems.append(Stem(query, list(ids), [row]))
    return stems


def _common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def _scores_sharing_stems(
    lm,
    cache,
    first: torch.Tensor,
    mask: torch.Tensor,
    rows: list[tuple[int, list[int]]],
    batch_size: int,
    min_stem_tokens: int | None,
) -> np.ndarray:
    """Summed log-probabilities of ``rows`` = [(query index, answer ids)] after their queries'
    cached prefixes: each stem once, then its members' endings from the stem's cache
    (``min_stem_tokens=None``: every row whole)."""
    totals = np.zeros(len(rows))
    stems = (
        stems_of(rows, min_stem_tokens)
        if min_stem_tokens is not None
        else [Stem(query, ids, [row]) for row, (query, ids) in enumerate(rows)]
    )
    for start in range(0, len(stems), batch_size):
        part = stems[start : start + batch_size]
        stem_scores, stem_cache, after_stem, stem_mask = _continuations(
            lm,
            cache,
            first,
            mask,
            [(stem.query, stem.ids) for stem in part],
            keep_cache=any(len(stem.members) > 1 for stem in part),
        )
        endings = []
        for index, stem in enumerate(part):
            if len(stem.members) == 1:  # ran whole
                totals[stem.members[0]] = stem_scores[index]
                continue
            endings += [
                (member, index, rows[member][1][len(stem.ids) :]) for member in stem.members
            ]
        for at in range(0, len(endings), batch_size):
            chunk = endings[at : at + batch_size]
            scores, *_ = _continuations(
                lm,
                stem_cache,
                after_stem,
                stem_mask,
                [(index, ending) for _, index, ending in chunk],
            )
            for (member, index, _), score in zip(chunk, scores):
                totals[member] = stem_scores[index] + score
    return totals


def _continuations(
    lm,
    cache,
    first: torch.Tensor,
    mask: torch.Tensor,
    rows: list[tuple[int, list[int]]],
    keep_cache: bool = False,
):
    """Summed log-probabilities of ``rows`` = [(cache row, token ids)], right-padded after their
    cache rows' prefixes (``first``: each cache row's next-token log-probabilities; ``mask``: the
    prefixes' attention mask). With ``keep_cache`` also what a next continuation needs: the
    cache extended by these tokens, each row's next-token log-probabilities after its last
    token, and the extended attention mask."""
    device = mask.device
    owner = torch.tensor([query for query, _ in rows], device=device)
    lengths = torch.tensor([len(ids) for _, ids in rows], device=device)
    width = int(lengths.max())
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    real = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for row, (_, answer) in enumerate(rows):
        ids[row, : len(answer)] = torch.tensor(answer, device=device)
        real[row, : len(answer)] = True
    # each row continues from its own prefix: a new cache object whose layers hold the owners'
    # rows (indexing copies just those rows; a deep copy of the whole batch's cache first would
    # copy every row once per chunk of continuations)
    past = copy.copy(cache)
    past.layers = [copy.copy(cached) for cached in cache.layers]
    for cached in past.layers:
        cached.keys, cached.values = cached.keys[owner], cached.values[owner]
    attention = torch.cat([mask[owner], real.long()], dim=1)
    positions = mask.sum(dim=1)[owner, None] + torch.arange(width, device=device)
    out = lm(
        input_ids=ids,
        attention_mask=attention,
        position_ids=positions,
        use_cache=True,
        **{cache_argument(lm): past},
    )
    # the last position's distribution is only needed by a continuation after this one
    logp = F.log_softmax((out.logits if keep_cache else out.logits[:, :-1]).float(), dim=-1)
    picked = logp[:, : width - 1].gather(-1, ids[:, 1:, None])[..., 0]
    total = (
        (first[owner].gather(-1, ids[:, :1])[:, 0] + (picked * real[:, 1:]).sum(dim=1))
        .cpu()
        .numpy()
    )
    if not keep_cache:
        return total, None, None, None
    after = logp[torch.arange(len(rows), device=device), lengths - 1]
    return total, output_cache(out), after, attention


def most_likely(
    model,
    tokenizer,
    queries: Sequence[str],
    candidates: Sequence[Sequence[str]],
    batch_size: int,
    vectors: torch.Tensor | None = None,
    layers: torch.Tensor | None = None,
) -> list[str]:
    """For each query, the candidate answer the model scores highest."""
    scores = candidate_log_likelihoods(
        model, tokenizer, queries, candidates, batch_size, vectors, layers
    )
    return [options[int(np.argmax(score))] for options, score in zip(candidates, scores)]
