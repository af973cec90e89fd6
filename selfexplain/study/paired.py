"""Reading a run's per-query outcomes (``predictions.parquet``) for paired comparisons.

Self and other explainers of a study are scored on the same corpus, the same queries and the
same length filter, and every run keeps each query's outcome. So the comparison the paper makes
("self beats other") can be made query by query (:mod:`selfexplain.study.comparisons`), with an
interval that resamples held-out units for both systems at once: narrower than two separate
intervals side by side, and the honest one, since two systems' scores on one draw of queries
are correlated.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow.parquet as pq

from selfexplain.storage import Location

TRAINED = "trained explainer"


def read_predictions(run_dir: Location) -> pd.DataFrame | None:
    path = run_dir / "predictions.parquet"
    if not path.exists():
        return None
    return pq.read_table(io.BytesIO(path.read_bytes())).to_pandas()
