"""Deterministic row subsets of the training split, from a hash of each row's id.

Two subsets are cut from the training groups:

- **in-distribution queries**: a fraction of training rows is never trained on and is scored
  next to the held-out split. Their groups (prompt, concept, entity) *are* seen in training,
  so the gap between the two scores is the generalization gap the paper measures.
- **data fraction**: the study's scaling sweep trains on a fraction of the remaining rows. A
  row's hash does not depend on the fraction, so the 25% subset lies inside the 50% one.

Each subset uses its own salt, so the two selections are independent.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa


def _unit(record_id: str, salt: str, seed: int) -> float:
    digest = hashlib.sha256(f"{salt}\x1f{seed}\x1f{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_in_distribution_query(record_id: str, fraction: float, seed: int) -> bool:
    """This training-split row is kept out of training and scored as an in-distribution query."""
    return _unit(record_id, "in-distribution", seed) < fraction


def in_data_fraction(record_id: str, fraction: float, seed: int) -> bool:
    """This training row is among the first ``fraction`` of the training data (nested in
    ``fraction``)."""
    return fraction >= 1.0 or _unit(record_id, "data-fraction", seed) < fraction


def trains_on(
    record_id: str, in_distribution_fraction: float, data_fraction: float, seed: int
) -> bool:
    """A training-split row is trained on: not an in-distribution query, and inside the data
    fraction."""
    return not is_in_distribution_query(
        record_id, in_distribution_fraction, seed
    ) and in_data_fraction(record_id, data_fraction, seed)


def rows_trained_on(
    train_split: pa.Table, in_distribution_fraction: float, data_fraction: float, seed: int
) -> pa.Table:
    """The rows of a corpus's training split that training uses (before the max_length filter)."""
    keep = [
        trains_on(i, in_distribution_fraction, data_fraction, seed)
        for i in train_split["record_id"].to_pylist()
    ]
    return train_split.filter(pa.array(keep, type=pa.bool_())) if keep else train_split
