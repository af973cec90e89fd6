"""Baselines that need no explainer: what a score means is how far it beats these."""

from __future__ import annotations

from collections import Counter


def majority_answer(train_rows: list[dict]) -> tuple[bool, str | None]:
    """The most common training answer: the majority class, and if that is "changed", the most
    common new token among changed training rows."""
    if not train_rows:
        raise ValueError("the training split is empty; the majority baseline needs training rows")
    changed = sum(bool(r["changed"]) for r in train_rows)
    if changed * 2 <= len(train_rows):
        return False, None
    tokens = Counter(r["new_top1"].strip() for r in train_rows if r["changed"])
    return True, tokens.most_common(1)[0][0]


def nearest_neighbour_answers(train, vectors) -> list[str]:
    """For each held-out vector, the description of the training feature closest in cosine: what
    memorizing the training set, with no explainer, would answer."""
    import numpy as np

    if train.num_rows == 0:
        raise ValueError("the training split is empty; the nearest-neighbour baseline needs training rows")
    bank = np.stack(train["vector"].to_numpy(zero_copy_only=False)).astype(np.float32)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True).clip(min=1e-12)
    queries = np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
    queries /= np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    nearest = (queries @ bank.T).argmax(axis=1)
    descriptions = train["description"].to_pylist()
    return [descriptions[i] for i in nearest]
