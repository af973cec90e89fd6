"""Activation patching on CounterFact-style prompt pairs (Meng et al. 2022; the paper's task 2).

A pair is an original and a counterfactual prompt that differ in one entity ("The capital of
France is" / "The capital of Japan is"). For every site (layer, position) the counterfactual's
activation is written into the original run at the same position, and the ground truth is what
the next token becomes. The explainer later receives that activation as a vector and must say
how the output changes.

Built-in pairs come from templated facts (``selfexplain/data/facts.json``); a pair is kept only
if the target answers *both* prompts correctly, so a change means the patched site carried the
fact. Pairs must tokenize to the same length, so every position has a matching one.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import torch

from selfexplain.corpus.schema import schema_field, stable_id, vector_type
from selfexplain.data import builtin_facts
from selfexplain.errors import InputError
from selfexplain.explainer.templates import render, templates
from selfexplain.inputs import read_jsonl
from selfexplain.models.patching import (
    capture_component,
    clean_and_counterfactual_runs,
    patch_sweep,
)
from selfexplain.tasks import GroundTruthContext, QueryContext, QueryError, Rejected, ScoringContext
from selfexplain.tasks.change_answers import ChangeAnswer, ChangeTask, display_token

# The columns around the vector, whose width is the target's (see patching_schema).
COLUMNS_BEFORE_VECTOR = [
    schema_field(
        "record_id",
        pa.string(),
        "hash of target model, task, both prompts, component, layer and position",
    ),
    schema_field("pair_id", pa.string(), "hash of the prompt pair"),
    schema_field("split", pa.string(), "train or test (held out by generate.held_out_by)"),
    schema_field("target_model", pa.string()),
    schema_field("relation", pa.string(), "fact relation of a templated pair, or 'user'"),
    schema_field(
        "template",
        pa.string(),
        "prompt template with {} for the entity, or '' for user pairs",
    ),
    schema_field("entity", pa.string(), "the original prompt's subject"),
    schema_field("cf_entity", pa.string(), "the counterfactual prompt's subject"),
    schema_field("prompt", pa.string(), "the original prompt, the one that is patched"),
    schema_field("counterfactual", pa.string(), "the prompt whose activation is written in"),
    schema_field("num_tokens", pa.int32()),
    schema_field("component", pa.string(), "residual, attn or mlp"),
    schema_field(
        "layer",
        pa.int32(),
        "decoder block index (the first of the block, with block patching)",
    ),
    schema_field(
        "layers",
        pa.list_(pa.int32()),
        "the layers written: [layer], or every layer of the block",
    ),
    schema_field("position", pa.int32(), "token position patched (same in both prompts)"),
    schema_field("token", pa.string(), "original prompt's token at the position"),
    schema_field("cf_token", pa.string(), "counterfactual prompt's token at the position"),
]
COLUMNS_AFTER_VECTOR = [
    schema_field("orig_top1_id", pa.int32()),
    schema_field("orig_top1", pa.string(), "next token of the unpatched original prompt"),
    schema_field("cf_top1_id", pa.int32()),
    schema_field("cf_top1", pa.string(), "next token of the counterfactual prompt"),
    schema_field("new_top1_id", pa.int32()),
    schema_field("new_top1", pa.string(), "next token after patching"),
    schema_field(
        "new_prob_of_orig",
        pa.float32(),
        "probability of the original next token after patching",
    ),
    schema_field("logit_diff", pa.float32(), "logit(orig_top1) - logit(cf_top1) after patching"),
    schema_field("clean_logit_diff", pa.float32(), "the same before patching"),
    schema_field("changed", pa.bool_(), "new_top1_id != orig_top1_id"),
]


def patching_schema(d_model: int) -> pa.Schema:
    vector = schema_field(
        "vector",
        vector_type(d_model),
        "the counterfactual activation written in (what the explainer receives; with block "
        "patching its mean over the block)",
    )
    columns = [*COLUMNS_BEFORE_VECTOR, vector, *COLUMNS_AFTER_VECTOR]
    return pa.schema(columns, metadata={"d_model": str(d_model)})


class PairFileError(InputError):
    """The pairs file cannot be used; the message names the line and the fix."""


def _token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text)["input_ids"])


def templated_pairs(tokenizer, seed: int) -> list[dict]:
    """Every ordered pair of facts with different answers, per relation and template, whose two
    prompts tokenize to the same length; shuffled deterministically. A pair of prompts that two
    relations share (a hand-written and a generated relation can hold the same fact and
    template) is kept once: twice, it would train twice and count twice in a paired join."""
    pairs, seen = [], set()
    for relation, spec in builtin_facts().items():
        for template in spec["templates"]:
            for (entity, answer), (cf_entity, cf_answer) in itertools.permutations(
                spec["facts"].items(), 2
            ):
                if answer == cf_answer:
                    continue
                prompt, counterfactual = template.format(entity), template.format(cf_entity)
                if (prompt, counterfactual) in seen:
                    continue
                seen.add((prompt, counterfactual))
                if _token_count(tokenizer, prompt) != _token_count(tokenizer, counterfactual):
                    continue
                pairs.append(
                    {
                        "prompt": prompt,
                        "counterfactual": counterfactual,
                        "answer": answer,
                        "cf_answer": cf_answer,
                        "relation": relation,
                        "template": template,
                        "entity": entity,
                        "cf_entity": cf_entity,
                    }
                )
    random.Random(seed).shuffle(pairs)
    return pairs


# A pair's optional fields: each is text when given (it becomes a string column of the corpus).
OPTIONAL_PAIR_FIELDS = ("answer", "cf_answer", "relation", "template", "entity", "cf_entity")


def read_pairs_file(path: Path) -> list[dict]:
    fix = (
        'set generate.pairs to a .jsonl file of {"prompt": ..., "counterfactual": ...} objects, '
        "or 'builtin'"
    )
    if path.suffix != ".jsonl":
        raise PairFileError(f"pairs file {path}: {fix}")
    pairs = []
    for number, record in read_jsonl(path, PairFileError, "pairs file", fix):
        if not all(isinstance(record.get(key), str) for key in ("prompt", "counterfactual")):
            raise PairFileError(
                f"{path}:{number} needs string fields 'prompt' and 'counterfactual'"
            )
        if not record["prompt"].strip() or record["prompt"] == record["counterfactual"]:
            raise PairFileError(
                f"{path}:{number}: 'prompt' and 'counterfactual' must be non-empty and differ "
                "(patching needs a token where they differ)"
            )
        not_text = [key for key in OPTIONAL_PAIR_FIELDS if not isinstance(record.get(key, ""), str)]
        if not_text:
            raise PairFileError(
                f"{path}:{number}: field '{not_text[0]}' must be text, not "
                f"{type(record[not_text[0]]).__name__}; quote it"
            )
        pairs.append(
            {
                "prompt": record["prompt"],
                "counterfactual": record["counterfactual"],
                "answer": record.get("answer", ""),
                "cf_answer": record.get("cf_answer", ""),
                "relation": record.get("relation", "user"),
                "template": record.get("template", ""),
                "entity": record.get("entity", record["prompt"]),
                "cf_entity": record.get("cf_entity", record["counterfactual"]),
            }
        )
    if not pairs:
        raise PairFileError(f"pairs file {path} holds no pairs")
    return pairs


def _first_token(tokenizer, answer: str) -> int:
    return tokenizer(" " + answer, add_special_tokens=False)["input_ids"][0]


def patch_pair(item: dict, context: GroundTruthContext) -> list[dict]:
    """Ground-truth rows for every (layer, position) site of one pair."""
    model, tokenizer, options = context.model, context.tokenizer, context.options
    special, ids, cf_ids = _encode_pair(item, tokenizer, options.max_tokens)
    # the clean run's logits decide rejection, and the sweep starts from it
    clean, captured, cf_logits = clean_and_counterfactual_runs(
        model, ids, cf_ids, options.component
    )
    captured = {layer: captured[layer] for layer in context.layers}
    blocks = layer_blocks(context.layers, options.layer_blocks)
    # a site's key is its layer, or the first layer of its block (which gets the block's mean)
    sources = {
        block[0]: torch.stack([captured[layer] for layer in block]).mean(dim=0) for block in blocks
    }
    orig_id, cf_id = int(clean.logits.argmax()), int(cf_logits.argmax())
    _check_pair(item, tokenizer, orig_id, cf_id, captured)
    # Before the first token where the prompts differ, the counterfactual's activation *is* the
    # original's (causal attention): patching there writes the clean value back, "unchanged" by
    # construction. Those no-op sites are not emitted.
    first_difference = int((ids != cf_ids).nonzero()[0, 0])
    positions = [i for i, s in enumerate(special) if not s and i >= first_difference]
    blocks_by_start = {block[0]: block for block in blocks}
    logits = patch_sweep(  # [position, site, vocab]
        model, ids, sources, positions, options.component, blocks=blocks_by_start, clean=clean
    )
    common = _pair_columns(item, context, len(ids), clean.logits, orig_id, cf_id)
    rows = []
    for p_index, position in enumerate(positions):
        for l_index, layer in enumerate(sorted(sources)):
            site = Site(blocks_by_start[layer], position, sources[layer][position])
            rows.append(
                _site_row(item, context, common, (ids, cf_ids), site, logits[p_index, l_index])
            )
    return rows


class Site(NamedTuple):
    """One patched site: the layers written, the position, and the vector written there."""

    block: list[int]
    position: int
    vector: torch.Tensor


def _encode_pair(item: dict, tokenizer, max_tokens: int):
    """(the original prompt's special-tokens mask, its ids, the counterfactual's ids)."""
    encoded = tokenizer(item["prompt"], return_special_tokens_mask=True)
    ids = torch.tensor(encoded["input_ids"])
    cf_ids = torch.tensor(tokenizer(item["counterfactual"])["input_ids"])
    if len(ids) != len(cf_ids):
        raise Rejected(
            f"prompts tokenize to different lengths ({len(ids)} vs {len(cf_ids)}); "
            "patching needs matching positions"
        )
    if len(ids) > max_tokens:
        raise Rejected(f"prompt has {len(ids)} tokens, over generate.max_tokens={max_tokens}")
    return encoded["special_tokens_mask"], ids, cf_ids


def _check_pair(item: dict, tokenizer, orig_id: int, cf_id: int, captured: dict) -> None:
    """A pair becomes ground truth only when the target answers both prompts, differently."""
    for answer, predicted, which in (
        (item["answer"], orig_id, "original"),
        (item["cf_answer"], cf_id, "counterfactual"),
    ):
        if answer and predicted != _first_token(tokenizer, answer):
            raise Rejected(
                f"target does not answer the {which} prompt correctly "
                f"(predicts {tokenizer.decode([predicted])!r}, fact says {answer!r})"
            )
    if orig_id == cf_id:
        raise Rejected("both prompts have the same next token, so no patch can change it")
    if not all(torch.isfinite(v).all() for v in captured.values()):
        raise Rejected("non-finite activation in the counterfactual run")


def _pair_columns(
    item: dict, context: GroundTruthContext, num_tokens: int, orig_logits, orig_id: int, cf_id: int
) -> dict:
    """The columns every site of a pair shares."""
    decode = context.tokenizer.decode
    return {
        "pair_id": stable_id(item["prompt"], item["counterfactual"]),
        "target_model": context.target_name,
        **{key: item[key] for key in ("relation", "template", "entity", "cf_entity", "prompt",
                                      "counterfactual")},
        "num_tokens": num_tokens,
        "component": context.options.component,
        "orig_top1_id": orig_id,
        "orig_top1": decode([orig_id]),
        "cf_top1_id": cf_id,
        "cf_top1": decode([cf_id]),
        "clean_logit_diff": float(orig_logits[orig_id] - orig_logits[cf_id]),
    }  # fmt: skip


def _site_row(
    item: dict, context: GroundTruthContext, common: dict, prompts, site: Site, site_logits
) -> dict:
    """One site's row: the patched output, read from the sweep's logits at that site."""
    ids, cf_ids = prompts
    block, position, vector = site
    decode = context.tokenizer.decode
    orig_id, cf_id = common["orig_top1_id"], common["cf_top1_id"]
    new_id = int(site_logits.argmax())
    record_id = stable_id(
        context.target_name,
        "patching",
        item["prompt"],
        item["counterfactual"],
        context.options.component,
        *block,
        position,
    )
    return {
        **common,
        "record_id": record_id,
        "layer": block[0],
        "layers": block,
        "position": position,
        "token": decode([int(ids[position])]),
        "cf_token": decode([int(cf_ids[position])]),
        "vector": vector.numpy(),
        "new_top1_id": new_id,
        "new_top1": decode([new_id]),
        "new_prob_of_orig": float(torch.softmax(site_logits, dim=-1)[orig_id]),
        "logit_diff": float(site_logits[orig_id] - site_logits[cf_id]),
        "changed": new_id != orig_id,
    }  # fmt: skip


def layer_blocks(layers: list[int], count: int) -> list[list[int]]:
    """``count`` blocks of consecutive layers (the paper's block patching), or one block per
    layer when ``count`` is 0 (single-layer patching)."""
    layers = sorted(layers)
    if not count:
        return [[layer] for layer in layers]
    if count > len(layers):
        raise Rejected(
            f"generate.layer_blocks={count} is more blocks than the {len(layers)} layers used"
        )
    size, extra = divmod(len(layers), count)
    blocks, start = [], 0
    for index in range(count):
        end = start + size + (index < extra)
        blocks.append(layers[start:end])
        start = end
    return blocks


def layer_name(row: dict) -> str:
    """How a query names where the vector is written: ``12``, or a block ``8-15``."""
    layers = list(row.get("layers") or [row["layer"]])
    return str(layers[0]) if len(layers) == 1 else f"{layers[0]}-{layers[-1]}"


class PatchingTask(ChangeTask):
    name = "patching"
    vector_input = True
    query_templates = len(templates("patching"))
    held_out_by = ("entity", "template", "relation")
    unit_name = "entity pairs"
    query_fields = {"prompt": str, "counterfactual": str, "layer": int, "position": int}
    rule_name = "oracle-informed rule (reads the counterfactual)"

    def schema(self, d_model: int) -> pa.Schema:
        return patching_schema(d_model)

    def work_items(self, config, tokenizer) -> list[dict]:
        source = config.generate.pairs
        pairs = (
            templated_pairs(tokenizer, config.seed)
            if source == "builtin"
            else read_pairs_file(Path(source))
        )
        if config.generate.max_items:
            pairs = pairs[: config.generate.max_items]
        for pair in pairs:
            # held out by entity, a pair has two: its split is kept only when both fall on one
            # side, since the vector read is the counterfactual's (see jobs/generate.plan_shards)
            pair["groups"] = {
                "entity": [pair["entity"], pair["cf_entity"]],
                "template": pair["template"] or pair["prompt"],
                "relation": pair["relation"],
            }
        return pairs

    def held_out_unit(self, row: dict) -> str:
        """The cluster a query is resampled with: its (unordered) pair of entities."""
        return "\x1f".join(sorted((row["entity"], row["cf_entity"])))

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        return patch_pair(item, context)

    def format_query(self, row: dict) -> str:
        """The explainer's question: the patched vector, its layer (or block), the token, its
        position and the text."""
        question = render(
            "patching",
            row,
            layer=layer_name(row),
            token=display_token(row["token"]),
            position=row["position"],
            prompt=row["prompt"],
        )
        return f"{question.rstrip()}\nAnswer:"

    def query_row(self, query: dict, context: QueryContext) -> dict:
        """The patched vector, computed from the target on the counterfactual prompt."""
        model, tokenizer = context.target()
        ids, cf_ids = (tokenizer(query[key])["input_ids"] for key in ("prompt", "counterfactual"))
        position, layer = query["position"], query["layer"]
        if context.layers and layer not in context.layers:
            raise QueryError(
                f"'layer' {layer}: this explainer was trained on layers {list(context.layers)}"
            )
        if len(ids) != len(cf_ids) or not 0 <= position < len(ids):
            raise QueryError(
                "prompt and counterfactual must tokenize to the same length, with position inside"
            )
        source = capture_component(
            model, torch.tensor(cf_ids), [layer], query.get("component", "residual")
        )
        return {
            **query,
            "vector": source[layer][position].numpy(),
            "token": tokenizer.decode([ids[position]]),
        }

    def rule_answer(self, row: dict, context: ScoringContext) -> ChangeAnswer:
        """*Oracle-informed* (it reads the counterfactual prompt and its answer, which the
        explainer's query does not show): the subject's information sits at the positions where
        the two prompts differ in the early layers and has moved to the last position by the
        late layers; patching there changes the answer to the counterfactual's."""
        early = row["layer"] < context.target_layers / 2
        changed = (row["token"] != row["cf_token"] and early) or (
            row["position"] == row["num_tokens"] - 1 and not early
        )
        if changed:
            return ChangeAnswer(True, display_token(row["cf_top1"]))
        return ChangeAnswer(False, self.original_output(row))


PATCHING = PatchingTask()
