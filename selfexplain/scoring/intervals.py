"""Cluster bootstrap intervals: how much a score would move on another draw of held-out groups.

The held-out unit is a *group* (a prompt family, a question, an entity pair, a concept), not a
row: the rows of one group share their input and are far from independent. Resampling rows one
by one would pretend a prompt with 30 ablated tokens is 30 independent queries and give
intervals that are too narrow. So each resample draws groups with replacement and takes all of
their rows (Cameron, Gelbach & Miller 2008; Field & Welsh 2007), and the interval is the
percentile interval of the statistic over resamples. Without groups every row is its own group.

A paired comparison (two systems on the same queries) resamples both systems' rows with the
same draw, so the interval of their difference reflects only how differently they did on the
same groups: ``paired_difference_interval``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 1000


def _group_rows(groups: Sequence | None, n: int) -> list[np.ndarray]:
    if groups is None:
        return [np.array([i]) for i in range(n)]
    if len(groups) != n:
        raise ValueError("groups must give one entry per query")
    rows: dict = {}
    for index, group in enumerate(groups):
        rows.setdefault(group, []).append(index)
    return [np.asarray(v) for v in rows.values()]


def bootstrap_interval(
    statistic: Callable[..., float],
    *samples,
    groups: Sequence | None = None,
    n_resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The ``confidence`` interval of ``statistic(*samples)``, resampling whole ``groups``.

    ``samples`` are equal-length per-query arrays, resampled together (a query keeps its
    prediction with its truth). With fewer than two groups there is nothing to resample and the
    interval is (nan, nan); when every sample is constant it is the point value.
    """
    arrays = [np.asarray(s) for s in samples]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError("bootstrap samples must all have one entry per query")
    members = _group_rows(groups, len(arrays[0]))
    if len(members) < 2:
        return float("nan"), float("nan")
    if all(np.all(a == a[0]) for a in arrays):
        value = float(statistic(*arrays))
        return value, value
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(members), size=len(members))
        index = np.concatenate([members[g] for g in drawn])
        values.append(statistic(*(a[index] for a in arrays)))
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values, **kwargs) -> tuple[float, float]:
    return bootstrap_interval(lambda v: float(np.mean(v)), values, **kwargs)


def paired_difference_interval(
    statistic: Callable[..., float],
    first: Sequence,
    second: Sequence,
    groups: Sequence | None = None,
    **kwargs,
) -> tuple[float, float, float]:
    """(difference, low, high) of ``statistic(first) - statistic(second)`` for two systems'
    per-query arrays (or tuples of arrays) on identical queries, one draw of groups for both."""
    first = first if isinstance(first, tuple) else (first,)
    second = second if isinstance(second, tuple) else (second,)
    k = len(first)

    def difference(*arrays):
        return statistic(*arrays[:k]) - statistic(*arrays[k:])

    low, high = bootstrap_interval(difference, *first, *second, groups=groups, **kwargs)
    return float(difference(*(np.asarray(a) for a in (*first, *second)))), low, high
