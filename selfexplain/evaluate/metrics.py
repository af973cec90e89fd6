"""Scores for change-prediction tasks (input ablation now, activation patching later).

An answer is read back as (changed, new token). An unreadable answer is simply wrong: it counts
against accuracy for either class, so a model cannot score by emitting junk.
Balanced accuracy, the mean of the per-class recalls, is the headline number because most
ablations leave the prediction unchanged: always answering "unchanged" gets high plain accuracy
and exactly 0.5 balanced accuracy.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence


def score_change_predictions(
    predicted: Sequence[tuple[bool | None, str | None]],
    true_changed: Sequence[bool],
    true_tokens: Sequence[str],
) -> dict[str, float]:
    if not (len(predicted) == len(true_changed) == len(true_tokens)):
        raise ValueError("predictions and ground truth differ in length")
    n = len(predicted)
    if n == 0:
        raise ValueError("nothing to score: the held-out split is empty")
    correct_change = [p is not None and p == t for (p, _), t in zip(predicted, true_changed)]
    exact = [
        ok and (not t or (token is not None and token.strip() == truth.strip()))
        for ok, (_, token), t, truth in zip(correct_change, predicted, true_changed, true_tokens)
    ]
    recalls = []
    for cls in (True, False):
        members = [ok for ok, t in zip(correct_change, true_changed) if t == cls]
        if members:
            recalls.append(sum(members) / len(members))
    changed_exact = [e for e, t in zip(exact, true_changed) if t]
    return {
        "n": n,
        "changed_fraction": sum(true_changed) / n,
        "accuracy": sum(correct_change) / n,
        "balanced_accuracy": sum(recalls) / len(recalls),
        "new_token_exact": sum(changed_exact) / len(changed_exact) if changed_exact else float("nan"),
        "exact_match": sum(exact) / n,
        "parse_rate": sum(p is not None for p, _ in predicted) / n,
    }


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def token_f1(predicted: str, reference: str) -> float:
    """SQuAD-style bag-of-words F1 between two descriptions."""
    pred, ref = Counter(_words(predicted)), Counter(_words(reference))
    overlap = sum((pred & ref).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def score_descriptions(predicted: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Feature descriptions against the reference: exact match (case-insensitive) and word F1."""
    if len(predicted) != len(references) or not references:
        raise ValueError("predictions and references must be non-empty and of equal length")
    n = len(references)
    return {
        "n": n,
        "exact_match": sum(" ".join(_words(p)) == " ".join(_words(r)) for p, r in zip(predicted, references)) / n,
        "word_f1": sum(token_f1(p, r) for p, r in zip(predicted, references)) / n,
        "parse_rate": sum(bool(p.strip()) for p in predicted) / n,
    }
