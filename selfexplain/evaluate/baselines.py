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
