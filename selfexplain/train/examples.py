"""Turning corpus rows into training examples: (query -> answer) with the loss on the answer only.

The query tokens get label -100, so the explainer is never trained to reproduce the question,
only to answer it; the answer ends with EOS so that generation knows where to stop.
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = -100


def encode_example(tokenizer, query: str, answer: str) -> tuple[list[int], int]:
    """(token ids of query + answer + EOS, index of the first answer token)."""
    query_ids = tokenizer(query, add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return query_ids + answer_ids + [tokenizer.eos_token_id], len(query_ids)


def collate(input_ids: list, answer_starts: list, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch with ``labels`` masked outside the answer and on padding."""
    width = max(len(ids) for ids in input_ids)
    batch = np.full((len(input_ids), width), pad_id, dtype=np.int64)
    labels = np.full((len(input_ids), width), IGNORE_INDEX, dtype=np.int64)
    mask = np.zeros((len(input_ids), width), dtype=np.int64)
    for row, (ids, start) in enumerate(zip(input_ids, answer_starts)):
        ids = np.asarray(ids, dtype=np.int64)
        batch[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
        labels[row, start : len(ids)] = ids[start:]
    return {
        "input_ids": torch.from_numpy(batch),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(labels),
    }


class ExampleEncoder:
    """Ray Data callable: corpus rows -> encoded examples, dropping those over ``max_length``."""

    def __init__(self, task: str, tokenizer_dir: str, max_length: int):
        from selfexplain.models.loading import load_tokenizer
        from selfexplain.tasks import get_task

        self.task = get_task(task)
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.max_length = max_length

    def __call__(self, batch):
        rows = batch.to_dict("records")
        encoded = [encode_example(self.tokenizer, self.task.format_query(r), self.task.format_answer(r)) for r in rows]
        keep = [len(ids) <= self.max_length for ids, _ in encoded]
        import pandas as pd

        return pd.DataFrame(
            {
                "record_id": [r["record_id"] for r, k in zip(rows, keep) if k],
                "input_ids": [ids for (ids, _), k in zip(encoded, keep) if k],
                "answer_start": [start for (_, start), k in zip(encoded, keep) if k],
            }
        )
