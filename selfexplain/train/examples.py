"""Turning corpus rows into training examples: (query -> answer) with the loss on the answer only.

Batches are *left*-padded, as at generation time, so every answer ends in the last column. The
loss then needs logits for only the last ``answer_width + 1`` positions: the unembedding (the
largest matrix of a small model: 49k x 576 for SmolLM2) runs on a few positions per row instead
of all of them, which makes a CPU training step about a quarter faster. Query tokens are never
trained on; the answer ends with EOS so generation knows where to stop.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from selfexplain.corpus.subsets import (
    in_data_fraction,
    in_distribution_key,
    is_in_distribution_query,
)
from selfexplain.explainer.templates import DEFAULT_TEMPLATES, phrasings
from selfexplain.explainer.vectors import add_vector_tokens, in_explainer_markers
from selfexplain.models.loading import load_tokenizer
from selfexplain.tasks import get_task

IGNORE_INDEX = -100


def encode_example(tokenizer, query: str, answer: str) -> tuple[list[int], int]:
    """(token ids of query + answer + EOS, index of the first answer token)."""
    query_ids = tokenizer(in_explainer_markers(tokenizer, query), add_special_tokens=True)[
        "input_ids"
    ]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return query_ids + answer_ids + [tokenizer.eos_token_id], len(query_ids)


class LengthFilter:
    """The one length filter of training *and* evaluation: a row is used only when its query and
    answer fit ``max_length`` tokens of the *target's* tokenizer. Measured with one tokenizer
    whatever the explainer, so self and other explainers train on the same rows and are scored
    on the same queries (nothing is truncated; the filter only bounds cost, as the paper's
    500-token cut does)."""

    def __init__(
        self, target_tokenizer_dir: str, task, max_length: int, trust_remote_code: bool = False
    ):

        self.tokenizer = load_tokenizer(target_tokenizer_dir, trust_remote_code)
        add_vector_tokens(self.tokenizer)  # the vector span counts as the three tokens it is
        self.task, self.max_length = task, max_length

    def fits(self, row: dict) -> bool:
        ids, _ = encode_example(
            self.tokenizer, self.task.format_query(row), self.task.format_answer(row)
        )
        return len(ids) <= self.max_length


def collate(
    input_ids, answer_starts, pad_id: int, vectors=None, layers=None
) -> dict[str, torch.Tensor]:
    """Left-padded batch; ``labels`` hold the answer tokens and -100 elsewhere; position ids
    count real tokens only, matching how ``generate`` numbers a left-padded prompt. Vector tasks
    add ``vectors`` (one per row) and their target ``vector_layers``."""
    width = max(len(ids) for ids in input_ids)
    batch = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    labels = np.full((len(input_ids), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, (ids, start) in enumerate(zip(input_ids, answer_starts)):
        ids = np.asarray(ids, dtype=np.int64)
        offset = width - len(ids)
        batch[row, offset:] = ids
        mask[row, offset:] = 1
        labels[row, offset + start :] = ids[start:]
    mask_t = torch.from_numpy(mask)
    out = {
        "input_ids": torch.from_numpy(batch),
        "attention_mask": mask_t,
        "position_ids": (mask_t.cumsum(dim=1) - 1).clamp(min=0),
        "labels": torch.from_numpy(labels),
    }
    if vectors is not None:
        out["vectors"] = torch.from_numpy(
            np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
        )
        out["vector_layers"] = torch.tensor(np.asarray(layers, dtype=np.int64))
    return out


def answer_only_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean next-token cross-entropy over answer tokens, computing logits only where needed.

    ``model`` is a causal LM or a DeepSpeed engine wrapping one.
    """
    labels = batch["labels"]
    answer_width = int((labels != IGNORE_INDEX).sum(dim=1).max())
    vector_inputs = {k: batch[k] for k in ("vectors", "vector_layers") if k in batch}
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=answer_width + 1,
        **vector_inputs,
    ).logits
    # logits at column t predict the token at t + 1: the last answer_width+1 columns predict the
    # last answer_width tokens (the final column's prediction, after EOS, is dropped).
    predictions = logits[:, :-1, :].float()
    targets = labels[:, -answer_width:]
    return F.cross_entropy(
        predictions.reshape(-1, predictions.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def encode_examples(batch: pd.DataFrame, **options) -> pd.DataFrame:
    """:class:`ExampleEncoder` over a frame of corpus rows, the encoder (its tokenizers) built once
    per process and set of ``options`` (its constructor's arguments): a study's stages and the
    benchmarks encode the same corpora again in one process."""
    return _cached_encoder(**options)(batch)


@functools.lru_cache(maxsize=4)
def _cached_encoder(**options) -> ExampleEncoder:
    return ExampleEncoder(**options)


class ExampleEncoder:
    """Corpus rows -> encoded examples with their role (trained on, or a
    validation query of either kind) and ``source`` (the run whose corpus they come from),
    dropping those over ``max_length``.

    In a task mix every source must give the same columns: with ``vector_width`` set, a text
    task's rows carry a zero vector at layer -1. They hold no placeholder token, so the explainer
    never reads it.
    """

    def __init__(
        self,
        task: str,
        tokenizer_dir: str,
        max_length: int,
        trust_remote_code: bool = False,
        in_distribution_holdout: float = 0.0,
        in_distribution_by: str = "row",
        data_fraction: float = 1.0,
        seed: int = 0,
        source: str = "",
        vector_width: int = 0,
        target_tokenizer_dir: str = "",
        templates: str = DEFAULT_TEMPLATES,
    ):

        self.task = get_task(task)
        self.tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
        self.source, self.vector_width = source, vector_width
        if self.task.vector_input or vector_width:
            add_vector_tokens(self.tokenizer)
        self.length_filter = LengthFilter(
            target_tokenizer_dir or tokenizer_dir, self.task, max_length, trust_remote_code
        )
        self.subset = (in_distribution_holdout, data_fraction, seed)
        self.in_distribution_by = in_distribution_by
        self.templates = templates

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = [{**r, "templates": self.templates} for r in batch.to_dict("records")]
        roles = [self._role(r) for r in rows]
        rows = [r for r, role in zip(rows, roles) if role]
        roles = [role for role in roles if role]
        encoded = [
            encode_example(self.tokenizer, self.task.format_query(r), self.task.format_answer(r))
            for r in rows
        ]
        keep = [self.length_filter.fits(r) for r in rows]
        # every phrasing of each training query, so each epoch can ask it in a fresh one
        # (train/order.py)
        variants = [
            [
                encode_example(
                    self.tokenizer,
                    self.task.format_query({**r, "template_variant": v}),
                    self.task.format_answer(r),
                )
                for v in range(phrasings(self.task, self.templates))
            ]
            if role == "train"
            else [pair]
            for r, role, pair in zip(rows, roles, encoded)
        ]
        columns = {
            "source": [self.source] * sum(keep),
            "record_id": [r["record_id"] for r, k in zip(rows, keep) if k],
            "role": [role for role, k in zip(roles, keep) if k],
            "input_ids": [ids for (ids, _), k in zip(encoded, keep) if k],
            "answer_start": [start for (_, start), k in zip(encoded, keep) if k],
            "variant_ids": [[ids for ids, _ in v] for v, k in zip(variants, keep) if k],
            "variant_starts": [[start for _, start in v] for v, k in zip(variants, keep) if k],
        }
        if self.task.vector_input:
            columns["vector"] = [
                np.asarray(r["vector"], dtype=np.float32) for r, k in zip(rows, keep) if k
            ]
            columns["layer"] = [int(r["layer"]) for r, k in zip(rows, keep) if k]
        elif self.vector_width:
            columns["vector"] = [np.zeros(self.vector_width, dtype=np.float32)] * sum(keep)
            columns["layer"] = [-1] * sum(keep)
        return pd.DataFrame(columns)

    def _role(self, row: dict) -> str | None:
        """``train`` (trained on), ``in-distribution`` or ``held-out`` (validation queries), or
        None for training rows outside the data fraction."""
        holdout, fraction, seed = self.subset
        if row["split"] == "test":
            return "held-out"
        key = in_distribution_key(self.task, row, self.in_distribution_by)
        if is_in_distribution_query(key, holdout, seed):
            return "in-distribution"
        return "train" if in_data_fraction(row["record_id"], fraction, seed) else None
