"""Scores for the explanation tasks, per query first and then aggregated with intervals.

Change tasks (ablation, hint, patching) are scored as the paper scores them
(:mod:`selfexplain.tasks.change_answers` reads an answer back as "changed?" plus the output it
names):

- **exact match**: the class is right *and* the named output is right (the original output
  for an unchanged query, the new one for a changed query);
- **has-changed F1**: macro F1 over the two classes, changed and unchanged;
- **content match**: the named output is right, whichever class was said.

Balanced accuracy (the mean of the per-class recalls of "changed?") is kept beside them: most
interventions leave the output unchanged, and it is 0.5 for any constant answer. An unreadable
answer is simply wrong for every metric.

Feature descriptions: word F1 and exact match against the reference, plus the meaning-level
scores from :mod:`selfexplain.scoring.embeddings` (similarity, retrieval, detection).

Intervals are cluster-bootstrap intervals over the held-out groups
(:mod:`selfexplain.scoring.intervals`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from selfexplain.scoring.answers import ChangeAnswer
from selfexplain.scoring.intervals import bootstrap_interval, mean_interval

UNPARSED = -1


def change_outcomes(
    predicted: Sequence[ChangeAnswer | None], truth: Sequence[ChangeAnswer]
) -> dict[str, np.ndarray]:
    """Per query: the class said (1 changed, 0 unchanged, -1 unreadable), the true class, and
    whether the class, the output and both were right."""
    if len(predicted) != len(truth):
        raise ValueError("predictions and ground truth differ in length")
    if not predicted:
        raise ValueError("nothing to score: the held-out split is empty")
    said = np.array([UNPARSED if p is None else int(p.changed) for p in predicted])
    changed = np.array([t.changed for t in truth], dtype=bool)
    content = np.array([p is not None and p.output == t.output for p, t in zip(predicted, truth)])
    correct = said == changed.astype(int)
    return {
        "said": said,
        "changed": changed,
        "correct": correct,
        "content": content,
        "exact": correct & content,
        "parsed": said != UNPARSED,
    }


def balanced_accuracy(correct: np.ndarray, changed: np.ndarray) -> float:
    """Mean recall over the classes present (one class present: its recall)."""
    recalls = [correct[changed == cls].mean() for cls in (True, False) if (changed == cls).any()]
    return float(np.mean(recalls))


def has_changed_f1(said: np.ndarray, changed: np.ndarray) -> float:
    """Macro F1 over the classes changed / unchanged, over the classes present in the truth; an
    unreadable answer is a miss for its true class and a false alarm for neither."""
    truth = changed.astype(int)
    scores = []
    for cls in (1, 0):
        if not (truth == cls).any():
            continue
        tp = int(((said == cls) & (truth == cls)).sum())
        fp = int(((said == cls) & (truth != cls)).sum())
        fn = int(((said != cls) & (truth == cls)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def score_change_predictions(
    predicted: Sequence[ChangeAnswer | None],
    truth: Sequence[ChangeAnswer],
    groups: Sequence | None = None,
    intervals: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Aggregate change-task scores; with ``intervals``, 95% cluster-bootstrap intervals over
    ``groups`` (one held-out group per query) as ``<metric>_ci``."""
    o = change_outcomes(predicted, truth)
    scores = {
        "n": len(o["said"]),
        "groups": len(set(groups)) if groups is not None else len(o["said"]),
        "changed_fraction": float(o["changed"].mean()),
        "exact_match": _mean(o["exact"]),
        "has_changed_f1": has_changed_f1(o["said"], o["changed"]),
        "content_match": _mean(o["content"]),
        "balanced_accuracy": balanced_accuracy(o["correct"], o["changed"]),
        "changed_exact_match": _mean(o["exact"][o["changed"]]),
        "parse_rate": _mean(o["parsed"]),
    }
    if intervals:
        kwargs = {"groups": groups, "seed": seed}
        scores["exact_match_ci"] = mean_interval(o["exact"], **kwargs)
        scores["content_match_ci"] = mean_interval(o["content"], **kwargs)
        scores["has_changed_f1_ci"] = bootstrap_interval(
            has_changed_f1, o["said"], o["changed"], **kwargs
        )
        scores["balanced_accuracy_ci"] = bootstrap_interval(
            balanced_accuracy, o["correct"], o["changed"], **kwargs
        )
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


def description_outcomes(
    predicted: Sequence[str], references: Sequence[str]
) -> dict[str, np.ndarray]:
    if len(predicted) != len(references) or not references:
        raise ValueError("predictions and references must be non-empty and of equal length")
    return {
        "exact": np.array(
            [" ".join(_words(p)) == " ".join(_words(r)) for p, r in zip(predicted, references)]
        ),
        "word_f1": np.array([token_f1(p, r) for p, r in zip(predicted, references)]),
        "parsed": np.array([bool(p.strip()) for p in predicted]),
    }


def _mean_of_defined(values) -> float:
    """Mean over the queries where the score is defined (NaN if none is)."""
    values = np.asarray(values, dtype=float)
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def score_descriptions(
    predicted: Sequence[str],
    references: Sequence[str],
    semantic: dict | None = None,
    groups: Sequence | None = None,
    intervals: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Descriptions against the references: exact match (case-insensitive), word F1, and the
    per-query ``semantic`` scores (name -> array, from the embedding model) when given."""
    o = description_outcomes(predicted, references)
    per_query = {"exact_match": o["exact"], "word_f1": o["word_f1"], **(semantic or {})}
    scores = {
        "n": len(references),
        "groups": len(set(groups)) if groups is not None else len(references),
        **{k: _mean_of_defined(v) for k, v in per_query.items()},
        "parse_rate": float(o["parsed"].mean()),
    }
    if intervals:
        for name, values in per_query.items():
            if name != "exact_match":
                values = np.asarray(values, dtype=float)
                defined = ~np.isnan(values)
                kept = None if groups is None else [g for g, ok in zip(groups, defined) if ok]
                scores[f"{name}_ci"] = mean_interval(values[defined], groups=kept, seed=seed)
    return scores
