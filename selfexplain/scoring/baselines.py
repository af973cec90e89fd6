"""Nearest-neighbour lookup, the baseline every task has: the answer of the training row whose
input is closest to the query's. What a task does with the neighbour (copy its description, or
its change applied to the query's own output) is the task's (``Task.baselines``).
"""

from __future__ import annotations

import numpy as np

from selfexplain.scoring.embeddings import embed


def nearest_rows(bank, queries, bank_layers=None, query_layers=None) -> list[int]:
    """Index of the bank row of highest cosine similarity for each query row (both 2-D arrays);
    with layers given, only among bank rows of the query's layer (falling back to all rows when
    that layer has none).

    The paper's nearest neighbour takes the largest dot product, over unit-norm feature
    directions, where the two agree (so do sentence embeddings, normalized). Raw activations are
    not unit-norm: a residual vector at the first position is about 60 times as long as one at
    any other, and a dot product then picks the same few long rows for every query (3
    distinct neighbours for 300 patching queries), a baseline no better than the majority answer.
    """
    bank, queries = _unit_rows(bank), _unit_rows(queries)
    scores = queries @ bank.T
    if bank_layers is not None and query_layers is not None:
        same = np.asarray(query_layers)[:, None] == np.asarray(bank_layers)[None, :]
        scores = np.where(same | ~same.any(axis=1, keepdims=True), scores, -np.inf)
    return scores.argmax(axis=1).tolist()


def _unit_rows(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)  # a zero row stays zero: similar to nothing


def nearest_training_rows(task, train_rows: list[dict], rows: list[dict]) -> list[int]:
    """For each query row, the index of its nearest training row: by vector among rows of the
    same layer for vector tasks, by the meaning of the query text (sentence embeddings)
    otherwise."""
    if task.vector_input:
        return nearest_rows(
            [r["vector"] for r in train_rows],
            [r["vector"] for r in rows],
            [r["layer"] for r in train_rows],
            [r["layer"] for r in rows],
        )
    return nearest_rows(
        embed([task.format_query(r) for r in train_rows]),
        embed([task.format_query(r) for r in rows]),
    )
