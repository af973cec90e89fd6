"""Task mixing: one explainer trained on the corpora of several runs, in configured ratios.

``train.mix`` maps run names to ratios (``{demo-features: 2, demo-patching: 1, demo-ablation: 1}``).
Each named run's corpus brings its own task (read from its manifest), so a mixed run trains on
feature descriptions, patching and ablation examples together; the ratios set each corpus's
share of the examples of an epoch. The epoch keeps the size of all corpora together: a corpus
whose share is larger than its size repeats rows, a smaller share keeps a subset. Both choices
come from a hash of each row's id, so they are the same on every rerun and every resume.

A run without ``train.mix`` is the one-source case: its own corpus (or ``corpus_from``'s), ratio 1.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from selfexplain.config import ConfigError, RunConfig
from selfexplain.corpus.io import MANIFEST, read_manifest
from selfexplain.storage import Location


@dataclass(frozen=True)
class CorpusSource:
    run: str
    """The run whose corpus this is (the mixed run's own name for a single-corpus run)."""
    task: str
    corpus: Location
    ratio: float
    manifest: dict = field(compare=False, repr=False)
    """The corpus's manifest (task, target, config, counts), read once here."""


def corpus_sources(config: RunConfig) -> list[CorpusSource]:
    """The corpora a run trains on, checked: each exists and was made from this run's target."""
    if not config.train.mix:
        return [
            CorpusSource(
                config.corpus_from or config.name,
                config.task,
                config.corpus_dir,
                1.0,
                read_manifest(config.corpus_dir),
            )
        ]
    sources = []
    for run, ratio in config.train.mix.items():
        corpus = Location(config.output_dir) / run / "corpus"
        if not (corpus / MANIFEST).exists():
            raise ConfigError(
                f"config key 'train.mix': run {run!r} has no finished corpus at {corpus}; "
                f"generate it first (selfexplain generate TASK CONFIG name={run})"
            )
        manifest = read_manifest(corpus)
        if manifest["target"] != config.target:
            raise ConfigError(
                f"config key 'train.mix': run {run!r} holds ground truth of "
                f"{manifest['target']!r}, "
                f"but this run's target is {config.target!r}; mix corpora of one target"
            )
        sources.append(CorpusSource(run, manifest["task"], corpus, float(ratio), manifest))
    return sources


def mixed_tasks(sources: list[CorpusSource]) -> list[str]:
    return sorted({source.task for source in sources})


def repeat_factors(counts: dict[str, int], ratios: dict[str, float]) -> dict[str, float]:
    """Each source's rows-per-row factor so that source ``s`` makes ``ratios[s] / sum(ratios)`` of
    an epoch of ``sum(counts)`` examples (1.0 everywhere when the ratios match the sizes)."""
    total, weight = sum(counts.values()), sum(ratios[s] for s in counts)
    return {s: total * ratios[s] / weight / counts[s] for s in counts if counts[s]}


def _unit(record_id: str, copy: int, seed: int) -> float:
    digest = hashlib.sha256(f"mix\x1f{seed}\x1f{copy}\x1f{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def resample(batch: pd.DataFrame, factors: dict[str, float], seed: int) -> pd.DataFrame:
    """Ray Data batch function: each row appears ``floor(f)`` times plus once more with probability
    ``f - floor(f)`` (by hash), numbered by a ``copy`` column so that the epoch's shuffle
    (train/order.py) places the copies apart."""
    picks, copies = [], []
    for index, (source, record_id) in enumerate(zip(batch["source"], batch["record_id"])):
        factor = factors[source]
        count = int(factor) + (_unit(record_id, -1, seed) < factor - int(factor))
        picks.extend([index] * count)
        copies.extend(range(count))
    out = batch.iloc[picks].reset_index(drop=True)
    out["copy"] = np.asarray(copies, dtype=np.int64)
    return out
