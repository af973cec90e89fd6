"""Explicit pyarrow schemas for the ground-truth corpus, one per task.

Every column is typed here rather than inferred, so pandas, pyarrow, DuckDB or HF ``datasets``
read the shards without selfexplain, and a shard from any worker has exactly the same schema.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

ABLATION_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False,
                 metadata={"doc": "hash of target model, task, prompt and removed position"}),
        pa.field("prompt_id", pa.string(), nullable=False, metadata={"doc": "hash of the prompt text"}),
        pa.field("split", pa.string(), nullable=False, metadata={"doc": "train or test (held out by prompt)"}),
        pa.field("target_model", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("num_tokens", pa.int32(), nullable=False),
        pa.field("token_index", pa.int32(), nullable=False, metadata={"doc": "position of the removed token"}),
        pa.field("token", pa.string(), nullable=False, metadata={"doc": "the removed token, decoded"}),
        pa.field("orig_top1_id", pa.int32(), nullable=False),
        pa.field("orig_top1", pa.string(), nullable=False),
        pa.field("orig_top1_prob", pa.float32(), nullable=False),
        pa.field("new_top1_id", pa.int32(), nullable=False),
        pa.field("new_top1", pa.string(), nullable=False),
        pa.field("new_top1_prob", pa.float32(), nullable=False),
        pa.field("new_prob_of_orig", pa.float32(), nullable=False,
                 metadata={"doc": "probability of the original top-1 token after the removal"}),
        pa.field("prob_change", pa.float32(), nullable=False,
                 metadata={"doc": "new_prob_of_orig - orig_top1_prob"}),
        pa.field("changed", pa.bool_(), nullable=False, metadata={"doc": "new_top1_id != orig_top1_id"}),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"ablation": ABLATION_SCHEMA}


def stable_id(*parts: object) -> str:
    """A deterministic id: the same inputs give the same id on every machine and run."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:20]
