"""Scores for the explanation tasks, per query first and then aggregated with intervals.

Change tasks (ablation, hint, patching): an answer is read back as (changed, new token). An
unreadable answer is simply wrong: it counts against accuracy for either class, so a model
cannot score by emitting junk. Balanced accuracy, the mean of the per-class recalls, is the
headline number because most interventions leave the prediction unchanged: always answering
"unchanged" gets high plain accuracy and exactly 0.5 balanced accuracy.

Feature descriptions: word F1 and exact match against the reference, plus the meaning-level
scores from :mod:`selfexplain.evaluate.embeddings` (similarity, retrieval, detection).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from selfexplain.evaluate.intervals import bootstrap_interval, mean_interval


def change_outcomes(predicted: Sequence[tuple[bool | None, str | None]], true_changed: Sequence[bool],
                    true_tokens: Sequence[str]) -> dict[str, np.ndarray]:
    """Per query: was "changed?" right, was the whole answer right, was the answer readable."""
    if not (len(predicted) == len(true_changed) == len(true_tokens)):
        raise ValueError("predictions and ground truth differ in length")
    if not predicted:
        raise ValueError("nothing to score: the held-out split is empty")
    correct = np.array([p is not None and p == t for (p, _), t in zip(predicted, true_changed)])
    exact = np.array([
        ok and (not t or (token is not None and token.strip() == truth.strip()))
        for ok, (_, token), t, truth in zip(correct, predicted, true_changed, true_tokens)
    ])
    return {"correct": correct, "exact": exact, "changed": np.asarray(true_changed, dtype=bool),
            "parsed": np.array([p is not None for p, _ in predicted])}


def balanced_accuracy(correct: np.ndarray, changed: np.ndarray) -> float:
    """Mean recall over the classes present (one class present: its recall)."""
    recalls = [correct[changed == cls].mean() for cls in (True, False) if (changed == cls).any()]
    return float(np.mean(recalls))


def score_change_predictions(predicted, true_changed, true_tokens, intervals: bool = False,
                             seed: int = 0) -> dict[str, float]:
    """Aggregate change-task scores; with ``intervals``, 95% bootstrap intervals as ``<metric>_ci``."""
    o = change_outcomes(predicted, true_changed, true_tokens)
    n = len(o["correct"])
    changed_exact = o["exact"][o["changed"]]
    scores = {
        "n": n,
        "changed_fraction": float(o["changed"].mean()),
        "accuracy": float(o["correct"].mean()),
        "balanced_accuracy": balanced_accuracy(o["correct"], o["changed"]),
        "new_token_exact": float(changed_exact.mean()) if len(changed_exact) else float("nan"),
        "exact_match": float(o["exact"].mean()),
        "parse_rate": float(o["parsed"].mean()),
    }
    if intervals:
        scores["balanced_accuracy_ci"] = bootstrap_interval(balanced_accuracy, o["correct"], o["changed"], seed=seed)
        scores["exact_match_ci"] = mean_interval(o["exact"], seed=seed)
    return scores


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


def description_outcomes(predicted: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
    if len(predicted) != len(references) or not references:
        raise ValueError("predictions and references must be non-empty and of equal length")
    return {
        "exact": np.array([" ".join(_words(p)) == " ".join(_words(r)) for p, r in zip(predicted, references)]),
        "word_f1": np.array([token_f1(p, r) for p, r in zip(predicted, references)]),
        "parsed": np.array([bool(p.strip()) for p in predicted]),
    }


def _mean_of_defined(values) -> float:
    """Mean over the queries where the score is defined (NaN if none is)."""
    values = np.asarray(values, dtype=float)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def score_descriptions(predicted: Sequence[str], references: Sequence[str], semantic: dict | None = None,
                       intervals: bool = False, seed: int = 0) -> dict[str, float]:
    """Descriptions against the references: exact match (case-insensitive), word F1, and the
    per-query ``semantic`` scores (name -> array, from the embedding model) when given."""
    o = description_outcomes(predicted, references)
    per_query = {"exact_match": o["exact"], "word_f1": o["word_f1"], **(semantic or {})}
    scores = {"n": len(references), **{k: _mean_of_defined(v) for k, v in per_query.items()},
              "parse_rate": float(o["parsed"].mean())}
    if intervals:
        for name, values in per_query.items():
            if name != "exact_match":
                values = np.asarray(values, dtype=float)
                scores[f"{name}_ci"] = mean_interval(values[~np.isnan(values)], seed=seed)
    return scores
