"""Nearest-neighbour lookup, the baseline every task has: the answer of the training row whose
input is closest to the query's. What a task does with the neighbour (copy its description, or
its change applied to the query's own output) is the task's (``Task.baselines``).
"""

from __future__ import annotations

import numpy as np

from selfexplain.scoring.embeddings import embed


def nearest_rows(bank, queries, bank_layers=None, query_layers=None) -> list[int]:
    """Index of the bank row with the largest dot product for each query row (both 2-D arrays),
    as the paper's nearest neighbour; with layers given, only among bank rows of the query's layer
    (falling back to all rows when that layer has none)."""
    bank = np.asarray(bank, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    scores = queries @ bank.T
    if bank_layers is not None and query_layers is not None:
        same = np.asarray(query_layers)[:, None] == np.asarray(bank_layers)[None, :]
        scores = np.where(same | ~same.any(axis=1, keepdims=True), scores, -np.inf)
    return scores.argmax(axis=1).tolist()


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
