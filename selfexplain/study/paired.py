"""The study's headline: self minus other, paired on identical queries, with a cluster interval.

Self and other explainers of a study are scored on the same corpus, the same queries and the
same length filter, and every run keeps each query's outcome in ``predictions.parquet``. So the
comparison the paper makes ("self beats other") can be made query by query: the difference of
the headline score on the same queries, with an interval that resamples held-out units (prompt
families, entity pairs, features) for both systems at once. A paired interval is much narrower
than two separate intervals side by side, and it is the honest one: the two systems' scores on
one draw of queries are correlated.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from selfexplain.evaluate.intervals import paired_difference_interval
from selfexplain.storage import Location

TRAINED = "trained explainer"


def paired_difference(first: pd.DataFrame, second: pd.DataFrame, metric: str, system: str = TRAINED,
                      seed: int = 0, second_system: str | None = None) -> list[dict]:
    """Per query set: mean(first) - mean(second) of a per-query score (``metric``, the task's
    ``per_query_metric``) on the queries both scored, its 95% cluster-bootstrap interval, and how
    many queries and units it covers. ``first`` and ``second`` are two runs' predictions tables
    (or one run's twice, comparing ``system`` with ``second_system`` in it)."""
    column, other = f"{metric}: {system}", f"{metric}: {second_system or system}"
    keys = ["record_id", "query_set"]
    joined = first[keys + ["unit", column]].rename(columns={column: "a"}).merge(
        second[keys + [other]].rename(columns={other: "b"}), on=keys)
    out = []
    for query_set, part in joined.groupby("query_set", sort=False):
        a = part["a"].to_numpy(dtype=float)
        b = part["b"].to_numpy(dtype=float)
        defined = ~(np.isnan(a) | np.isnan(b))
        units = part["unit"].to_numpy()[defined]
        diff, low, high = paired_difference_interval(lambda v: float(np.mean(v)), a[defined], b[defined],
                                                     groups=list(units), seed=seed)
        out.append({"query_set": query_set, "difference": diff, "ci_low": low, "ci_high": high,
                    "first": float(np.mean(a[defined])), "second": float(np.mean(b[defined])),
                    "n": int(defined.sum()), "units": len(set(units))})
    return out


def best_other_system(frame: pd.DataFrame, metric: str, query_set: str, exclude: str = TRAINED) -> str | None:
    """The system of a predictions table, other than ``exclude``, with the highest mean
    per-query ``metric`` on ``query_set``: the strongest baseline, picked after the fact (which
    favours the baseline, never the trained explainer)."""
    prefix = f"{metric}: "
    part = frame[frame["query_set"] == query_set]
    means = {c[len(prefix):]: float(np.nanmean(part[c].to_numpy(dtype=float)))
             for c in frame.columns if c.startswith(prefix) and c != prefix + exclude and len(part)}
    means = {name: value for name, value in means.items() if value == value}
    return max(means, key=means.get) if means else None


def read_predictions(run_dir: Location) -> pd.DataFrame | None:
    path = run_dir / "predictions.parquet"
    if not path.exists():
        return None
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(path.read_bytes())).to_pandas()
