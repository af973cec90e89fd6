"""What every corpus schema is built from: typed fields with docs, fixed-width vectors, stable
ids. Each task declares its schema (``Task.schema``) with these.

Every column is typed here rather than inferred, so pandas, pyarrow, DuckDB or HF ``datasets``
read the shards without selfexplain, and a shard from any worker has exactly the same schema.
Vectors are ``fixed_size_list<float32>[d]``: the width is part of the type, so any reader gets
the shape without Ray's private tensor metadata.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa


def schema_field(name: str, kind: pa.DataType, doc: str = "", nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"doc": doc} if doc else None)


def vector_type(d_model: int) -> pa.DataType:
    return pa.list_(pa.float32(), d_model)


REJECTS_SCHEMA = pa.schema(
    [
        schema_field("item_id", pa.string(), "hash of the work item"),
        schema_field("task", pa.string()),
        schema_field("reason", pa.string(), "why no ground truth was written for it"),
        schema_field("item", pa.string(), "the work item as JSON"),
    ]
)


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows (dicts; vectors as numpy arrays or lists) to a table of exactly ``schema``.

    Vector columns are stacked into one float32 block and wrapped as fixed-size lists, which is
    far faster than letting pyarrow walk thousands of Python floats per row.
    """
    columns = []
    for schema_field in schema:
        values = [row[schema_field.name] for row in rows]
        if pa.types.is_fixed_size_list(schema_field.type):
            width = schema_field.type.list_size
            block = np.asarray(values, dtype=np.float32).reshape(len(rows), width)
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), width))
        else:
            columns.append(pa.array(values, type=schema_field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def item_id(task: str, item: dict) -> str:
    """A work item's id: independent of its split and of how the job is sharded."""
    content = {k: v for k, v in item.items() if k not in ("split", "groups", "cross")}
    return stable_id(task, json.dumps(content, sort_keys=True))


def stable_id(*parts: object) -> str:
    """A deterministic id: the same inputs give the same id on every machine and run."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:20]
