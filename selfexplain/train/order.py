"""The order training reads its examples in: a fresh global shuffle every epoch, from (seed, epoch).

A corpus is written item by item (all sites of one prompt pair, all removals of one prompt,
concepts sorted by kind), so reading it in order makes every batch hold one or two items and
every epoch the same curriculum. Instead, each rank holds the (small) encoded training set in
memory and sorts it by a hash of (seed, epoch, record id, copy): a permutation that is the same
on every rank and every rerun, different in every epoch, and needs no shuffle buffer. Rank ``r``
of ``w`` takes every ``w``-th example of that order, after the order is cut to a multiple of
``w``, so all ranks run the same number of steps (their collectives must match). A resumed run
recomputes the same order and skips the micro-batches it already trained: resume stays
step-exact. Each epoch also draws every query's phrasing (one of its task's templates) from
(seed, epoch, record id), so no query is always asked in one wording.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd


def epoch_order(
    record_ids: Sequence[str], copies: Sequence[int] | None, seed: int, epoch: int
) -> np.ndarray:
    """Indices of the examples in this epoch's order (``copies`` tells repeated rows of a task
    mix apart; None when no row repeats)."""
    copies = copies if copies is not None else [0] * len(record_ids)
    keys = [
        hashlib.sha256(f"order\x1f{seed}\x1f{epoch}\x1f{record_id}\x1f{copy}".encode()).digest()[:8]
        for record_id, copy in zip(record_ids, copies)
    ]
    return np.asarray(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def epoch_variant(record_id: str, seed: int, epoch: int, count: int) -> int:
    """Which of a query's ``count`` phrasings this epoch trains on."""
    digest = hashlib.sha256(f"template\x1f{seed}\x1f{epoch}\x1f{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def length_bucketed(
    order: np.ndarray,
    lengths: Sequence[int],
    chunk: int,
    seed: int,
    epoch: int,
    window_chunks: int = 50,
) -> np.ndarray:
    """The epoch's order regrouped so each chunk of ``chunk`` examples (one micro-batch on every
    rank) holds examples of similar length: padding to a batch's longest example is wasted
    compute. Within each window of ``window_chunks`` chunks of the shuffled order the examples
    are sorted by length, cut into chunks, and the chunks shuffled, from (seed, epoch): every
    rank and every rerun computes the same order, and no epoch runs short-to-long."""
    rng = np.random.default_rng([seed, epoch, 0x6275636B])  # "buck"
    lengths = np.asarray(lengths)
    out = []
    for start in range(0, len(order), chunk * window_chunks):
        window = order[start : start + chunk * window_chunks]
        window = window[np.argsort(lengths[window], kind="stable")]
        chunks = [window[i : i + chunk] for i in range(0, len(window), chunk)]
        # a short last chunk stays last: every rank must cut its share the same way
        full, tail = (chunks[:-1], chunks[-1:]) if len(chunks[-1]) < chunk else (chunks, [])
        out += [full[i] for i in rng.permutation(len(full))] + tail
    return np.concatenate(out) if out else order


def rank_micro_batches(
    order: np.ndarray, rank: int, world: int, micro_batch: int
) -> Iterator[np.ndarray]:
    """This rank's micro-batches (arrays of example indices) of one epoch's order."""
    usable = len(order) - len(order) % world
    mine = order[:usable][rank::world]
    for start in range(0, len(mine), micro_batch):
        yield mine[start : start + micro_batch]


def example_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Encoded examples (:func:`selfexplain.train.trainer.encoded_examples`) as the columns the
    loop indexes with an array of example indices: each column as pandas holds it (token lists as
    object arrays of lists), vectors stacked into one 2-D float32 array. The training set is small
    next to the model, so each rank holds all of it."""
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    if "vector" in columns and len(frame):
        columns["vector"] = np.stack(columns["vector"]).astype(np.float32, copy=False)
    return columns
