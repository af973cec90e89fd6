"""Deterministic row subsets of the training split, from a hash of each row's id.

Two subsets are cut from the training groups:

- **in-distribution queries**: a fraction of training rows is never trained on and is scored
  next to the held-out split. Their groups (prompt, concept, entity) *are* seen in training,
  so the gap between the two scores is the generalization gap the paper measures; or, drawn by
  group (``train.in_distribution_by=group``), whole units of the training split are kept out.
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


def in_distribution_key(task, row: dict, by: str) -> str:
    """What the in-distribution draw hashes for ``row``: its id (``by="row"``), or its task's
    held-out unit (``by="group"``: all rows of a unit are drawn together)."""
    return task.held_out_unit(row) if by == "group" else row["record_id"]


def in_distribution_keys(task, table: pa.Table, by: str) -> list[str] | None:
    """Each row's in-distribution key for :func:`rows_trained_on` (None, meaning the row ids, for
    ``by="row"``)."""
    if by == "row":
        return None
    return [in_distribution_key(task, row, by) for row in table.to_pylist()]


def trains_on(
    record_id: str,
    in_distribution_fraction: float,
    data_fraction: float,
    seed: int,
    key: str | None = None,
) -> bool:
    """A training-split row is trained on: not an in-distribution query (drawn by ``key``, the
    row's id unless given), and inside the data fraction."""
    return not is_in_distribution_query(
        key if key is not None else record_id, in_distribution_fraction, seed
    ) and in_data_fraction(record_id, data_fraction, seed)


def rows_trained_on(
    train_split: pa.Table,
    in_distribution_fraction: float,
    data_fraction: float,
    seed: int,
    keys: list[str] | None = None,
) -> pa.Table:
    """The rows of a corpus's training split that training uses (before the max_length filter);
    ``keys``: each row's in-distribution key (:func:`in_distribution_key`), its id if not given."""
    ids = train_split["record_id"].to_pylist()
    keys = keys if keys is not None else ids
    keep = [
        trains_on(i, in_distribution_fraction, data_fraction, seed, key)
        for i, key in zip(ids, keys)
    ]
    return train_split.filter(pa.array(keep, type=pa.bool_())) if keep else train_split
