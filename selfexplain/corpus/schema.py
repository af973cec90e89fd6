"""Explicit pyarrow schemas for the ground-truth corpus, one per task.

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


def _field(name: str, kind: pa.DataType, doc: str = "", nullable: bool = False) -> pa.Field:
    return pa.field(name, kind, nullable=nullable, metadata={"doc": doc} if doc else None)


def vector_type(d_model: int) -> pa.DataType:
    return pa.list_(pa.float32(), d_model)

ABLATION_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False,
                 metadata={"doc": "hash of target model, task, prompt and removed position"}),
        pa.field("prompt_id", pa.string(), nullable=False, metadata={"doc": "hash of the prompt text"}),
        pa.field("family", pa.string(), nullable=False,
                 metadata={"doc": "template family of the prompt (prompts a word or two apart; see corpus/families.py)"}),
        pa.field("split", pa.string(), nullable=False,
                 metadata={"doc": "train or test (held out by generate.held_out_by: family or prompt)"}),
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



def patching_schema(d_model: int) -> pa.Schema:
    return pa.schema([
        _field("record_id", pa.string(), "hash of target model, task, both prompts, component, layer and position"),
        _field("pair_id", pa.string(), "hash of the prompt pair"),
        _field("split", pa.string(), "train or test (held out by generate.held_out_by)"),
        _field("target_model", pa.string()),
        _field("relation", pa.string(), "fact relation of a templated pair, or 'user'"),
        _field("template", pa.string(), "prompt template with {} for the entity, or '' for user pairs"),
        _field("entity", pa.string(), "the original prompt's subject"),
        _field("cf_entity", pa.string(), "the counterfactual prompt's subject"),
        _field("prompt", pa.string(), "the original prompt, the one that is patched"),
        _field("counterfactual", pa.string(), "the prompt whose activation is written in"),
        _field("num_tokens", pa.int32()),
        _field("component", pa.string(), "residual, attn or mlp"),
        _field("layer", pa.int32(), "decoder block index (the first of the block, with block patching)"),
        _field("layers", pa.list_(pa.int32()), "the layers written: [layer], or every layer of the block"),
        _field("position", pa.int32(), "token position patched (same in both prompts)"),
        _field("token", pa.string(), "original prompt's token at the position"),
        _field("cf_token", pa.string(), "counterfactual prompt's token at the position"),
        _field("vector", vector_type(d_model), "the counterfactual activation written in (what the explainer "
               "receives; with block patching its mean over the block)"),
        _field("orig_top1_id", pa.int32()),
        _field("orig_top1", pa.string(), "next token of the unpatched original prompt"),
        _field("cf_top1_id", pa.int32()),
        _field("cf_top1", pa.string(), "next token of the counterfactual prompt"),
        _field("new_top1_id", pa.int32()),
        _field("new_top1", pa.string(), "next token after patching"),
        _field("new_prob_of_orig", pa.float32(), "probability of the original next token after patching"),
        _field("logit_diff", pa.float32(), "logit(orig_top1) - logit(cf_top1) after patching"),
        _field("clean_logit_diff", pa.float32(), "the same before patching"),
        _field("changed", pa.bool_(), "new_top1_id != orig_top1_id"),
    ], metadata={"d_model": str(d_model)})


def features_schema(d_model: int) -> pa.Schema:
    return pa.schema([
        _field("record_id", pa.string(), "hash of target model, task, feature id and layer"),
        _field("feature_id", pa.string(), "concept:<name> or sae:<sae id>:<index>"),
        _field("split", pa.string(), "train or test (held out by generate.held_out_by)"),
        _field("target_model", pa.string()),
        _field("source", pa.string(), "concepts or saelens"),
        _field("kind", pa.string(), "concept kind (places, emotions, code...) or the SAE id"),
        _field("name", pa.string(), "concept name or feature index"),
        _field("layer", pa.int32(), "decoder block whose output stream the direction lives in"),
        _field("vector", vector_type(d_model), "unit-norm feature direction"),
        _field("scale", pa.float32(), "norm of the raw direction (difference of means, or decoder row)"),
        _field("description", pa.string(), "the ground-truth description"),
        _field("quality", pa.float32(), "held-out probe accuracy of a concept direction (NaN for SAE features)",
               nullable=True),
        _field("top_contexts", pa.list_(pa.string()), "texts from the text set where the feature fires most"),
        _field("top_activations", pa.list_(pa.float32()), "max projection on the direction over each context's tokens"),
    ], metadata={"d_model": str(d_model)})


HINT_SCHEMA = pa.schema([
    _field("record_id", pa.string(), "hash of target model, task, question and hint letter"),
    _field("question_id", pa.string(), "hash of the question and its choices"),
    _field("split", pa.string(), "train or test (held out by generate.held_out_by)"),
    _field("target_model", pa.string()),
    _field("subject", pa.string()),
    _field("question", pa.string()),
    _field("choices", pa.list_(pa.string())),
    _field("correct", pa.string(), "the correct letter"),
    _field("hint_letter", pa.string(), "the letter the hint points to"),
    _field("prompt", pa.string(), "the prompt with the hint"),
    _field("answer_with_hint", pa.string(), "the target's letter with the hint"),
    _field("answer_without_hint", pa.string(), "the target's letter without the hint"),
    _field("prob_hint_letter", pa.float32(), "probability of the hinted letter with the hint (over the letters)"),
    _field("prob_hint_letter_without", pa.float32(), "the same without the hint"),
    _field("changed", pa.bool_(), "removing the hint changes the answer"),
    _field("new_top1", pa.string(), "the answer once the hint is removed (= answer_without_hint)"),
])

REJECTS_SCHEMA = pa.schema([
    _field("item_id", pa.string(), "hash of the work item"),
    _field("task", pa.string()),
    _field("reason", pa.string(), "why no ground truth was written for it"),
    _field("item", pa.string(), "the work item as JSON"),
])

SCHEMAS = {"ablation": lambda d_model: ABLATION_SCHEMA, "hint": lambda d_model: HINT_SCHEMA,
           "patching": patching_schema, "features": features_schema}


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
