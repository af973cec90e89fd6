"""Bootstrap confidence intervals: how much a score would move on another draw of queries.

Resampling is over held-out queries (paired: a resample keeps each query's prediction with its
truth), with scipy's percentile bootstrap. Percentile rather than BCa because BCa is undefined
when every resample gives the same value, which small held-out sets of a strong or a useless
explainer do produce.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

CONFIDENCE = 0.95


def bootstrap_interval(statistic: Callable[..., float], *samples, n_resamples: int = 1000,
                       seed: int = 0, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The ``confidence`` interval of ``statistic(*samples)`` over paired resamples of the queries.

    ``samples`` are equal-length per-query arrays. With fewer than two queries there is nothing
    to resample and the interval is (nan, nan).
    """
    from scipy.stats import bootstrap

    arrays = [np.asarray(s) for s in samples]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError("bootstrap samples must all have one entry per query")
    if len(arrays[0]) < 2:
        return float("nan"), float("nan")
    if all(np.all(a == a[0]) for a in arrays):
        value = float(statistic(*arrays))
        return value, value
    result = bootstrap(arrays, statistic, paired=True, vectorized=False, n_resamples=n_resamples,
                       confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def mean_interval(values, **kwargs) -> tuple[float, float]:
    return bootstrap_interval(lambda v: float(np.mean(v)), values, **kwargs)
