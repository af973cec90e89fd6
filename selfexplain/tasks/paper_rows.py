"""One record of the paper's datasets -> one selfexplain corpus row, or a rejection with its
reason. The field names are the paper's (see :mod:`selfexplain.corpus.paper_files` for where its
loaders read them); the rows are in the schemas of selfexplain's own tasks, so an imported corpus
trains and is scored like a generated one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from selfexplain.corpus.paper_files import feature_direction
from selfexplain.corpus.schema import stable_id
from selfexplain.models.hooks import capture_residual
from selfexplain.storage import Location
from selfexplain.tasks import Rejected
from selfexplain.tasks.hint_questions import LETTERS

ACT_PATCH_COLUMNS = (
    "layer",
    "input_tokens",
    "original_continuation",
    "ablated_continuation",
    "is_different",
)
"""What the paper's loader requires (``dataloaders/act_patch.py`` lines 37-46)."""
HINT_COLUMNS = (
    "hint_user_prompt",
    "original_user_prompt",
    "random_hint_prediction",
    "zeroshot_prediction",
    "hint",
)
# The paper's hint sentence (dataloaders/hint_attribution.py line 130) names a letter in brackets.
_HINT_LETTER = re.compile(r"\(([A-Z])\)")
# MMLU's four options: the paper's hint sentence names one of (A)-(D) (hint_attribution.py line 130)
MMLU_LETTERS = list(LETTERS[:4])


@dataclass
class TargetReader:
    """The target as the importer needs it: its tokenizer always, its model (loaded on first use)
    to read the counterfactual prompt's next token and, where a record has none, the vector."""

    name: str
    tokenizer: Any
    load: Callable[[], tuple[Any, Any]]
    """Returns the (model, tokenizer) pair; called once, when first needed."""
    _model: Any = field(default=None, repr=False)

    @property
    def model(self):
        if self._model is None:
            self._model, _ = self.load()
        return self._model

    def text(self, tokens) -> str:
        return self.tokenizer.convert_tokens_to_string(list(tokens))

    @torch.no_grad()
    def counterfactual(self, text: str, position: int, layers: list[int]):
        """(next-token id, the residual at ``position`` averaged over ``layers``) of ``text``."""
        ids = torch.tensor([self.tokenizer(text)["input_ids"]])
        if not 0 <= position < ids.shape[1]:
            raise Rejected(f"counterfact_pos {position} is beyond the counterfactual's tokens")
        model = self.model
        with capture_residual(model, layers) as captured:
            logits = model(input_ids=ids.to(model.device)).logits[0, -1]
        vector = torch.stack([captured[layer][0, position] for layer in layers]).mean(dim=0)
        return int(logits.argmax()), vector.float().cpu().numpy()


def patching_row(record: dict, split: str, target: TargetReader, d_model: int) -> dict:
    """An ``act_patch`` record (read as ``dataloaders/act_patch.py`` lines 81-140 read it) as a
    patching row."""
    tok = target.tokenizer
    position = _field(record, "patch_position")
    layers = record["layer"] if isinstance(record["layer"], list) else [record["layer"]]
    if not layers or not all(isinstance(layer, int) and layer >= 0 for layer in layers):
        raise Rejected(f"'layer' must name decoder blocks, not {record['layer']!r}")
    prompt = target.text(record["input_tokens"])
    counterfactual = _field(record, "counterfactual_text")
    original = target.text(record["original_continuation"])
    patched = target.text(record["ablated_continuation"])
    if tok.eos_token and (tok.eos_token in original or tok.eos_token in patched):
        # the paper's loader skips these rows (act_patch.py lines 99-103)
        raise Rejected("a continuation holds the end-of-text token")
    orig_pos, cf_pos = int(_field(position, "orig_pos")), int(_field(position, "counterfact_pos"))
    prompt_ids = tok(prompt)["input_ids"]
    token = _field(position, "orig_text_token")
    if (
        not 0 <= orig_pos < len(prompt_ids)
        or tok.convert_ids_to_tokens(prompt_ids[orig_pos]) != token
    ):
        # the paper asserts the same before patching (act_patch.py lines 262-267)
        raise Rejected(f"orig_pos {orig_pos} is not the token {token!r} in the target's tokens")
    cf_id, recomputed = target.counterfactual(counterfactual, cf_pos, layers)
    vector = position.get("intervention_vector")
    vector = recomputed if vector is None else np.asarray(vector, dtype=np.float32).reshape(-1)
    if vector.shape != (d_model,) or not np.isfinite(vector).all():
        raise Rejected(
            f"intervention_vector has {vector.size} values; the target's width is {d_model}"
        )
    orig_id, new_id = (
        _first_id(tok, record[k]) for k in ("original_continuation", "ablated_continuation")
    )
    site = (prompt, counterfactual, "residual", layers, orig_pos)
    return {
        "record_id": stable_id(target.name, "patching", *site),
        "pair_id": stable_id(prompt, counterfactual),
        "split": split, "target_model": target.name, "relation": "counterfact", "template": "",
        # each prompt is its own entity: the held-out unit is the prompt pair
        "entity": prompt, "cf_entity": counterfactual,
        "prompt": prompt, "counterfactual": counterfactual, "num_tokens": len(prompt_ids),
        "component": "residual", "layer": layers[0], "layers": layers, "position": orig_pos,
        "token": tok.convert_tokens_to_string([token]),
        "cf_token": tok.convert_tokens_to_string([_field(position, "counterfact_text_token")]),
        "vector": vector,
        "orig_top1_id": orig_id, "orig_top1": original,
        "cf_top1_id": cf_id, "cf_top1": tok.decode([cf_id]),
        "new_top1_id": new_id, "new_top1": patched,
        # the release holds no probabilities or logits
        "new_prob_of_orig": math.nan, "logit_diff": math.nan, "clean_logit_diff": math.nan,
        "changed": bool(record["is_different"]),
    }  # fmt: skip


def hint_row(record: dict, split: str, target: TargetReader) -> dict:
    """A hint record (read as ``dataloaders/hint_attribution.py`` lines 60-70 and 150-225 read it)
    as a hint row: the multiple-choice form, asked with the hint, answered as the target answers
    once it is removed."""
    with_hint = str(_field(record, "random_hint_prediction")).strip()
    without = str(_field(record, "zeroshot_prediction")).strip()
    letter = _HINT_LETTER.search(str(_field(record, "hint")))
    if not letter:
        raise Rejected("the hint names no answer letter in brackets, e.g. (B)")
    question = str(_field(record, "original_user_prompt"))
    changed = record.get("changed_pred_bc_hint")
    if changed is not None and bool(changed) != (with_hint != without):
        # the paper asserts they agree (hint_attribution.py line 227)
        raise Rejected("changed_pred_bc_hint disagrees with the two predictions")
    hinted = record.get("hint_prompt_full") or record["hint_user_prompt"]
    return {
        "record_id": stable_id(target.name, "hint", hinted),
        "question_id": stable_id(question),
        "split": split, "target_model": target.name, "form": "choice", "subject": "mmlu",
        "entity": question, "question": question, "choices": [], "outputs": MMLU_LETTERS,
        # not in the release; no system is shown it
        "correct": "",
        "hint_answer": letter.group(1), "prompt": str(record["hint_user_prompt"]),
        "answer_with_hint": with_hint, "answer_without_hint": without,
        "prob_hint_answer": math.nan, "prob_hint_answer_without": math.nan,
        "changed": with_hint != without, "new_top1": without,
    }  # fmt: skip


def features_row(example, label, split: str, target: TargetReader, features: Location) -> dict:
    """A ``((layer, feature_idx), label)`` pair of ``<split>_explanations.pkl`` as a features row:
    the decoder column as the direction (unit norm, its norm as the scale), ``chosen_label`` as
    the description."""
    try:
        layer, index = (int(v) for v in example)
    except (TypeError, ValueError):
        raise Rejected(f"the example {example!r} is not a (layer, feature_idx) pair") from None
    description = str((label or {}).get("chosen_label") or "").strip()
    if not description:
        raise Rejected("the label has no chosen_label (no description)")
    direction = feature_direction(features, layer, index)
    if direction is None:
        raise Rejected(f"feature {index} is beyond features/layer_{layer}.pkl's columns")
    scale = float(np.linalg.norm(direction))
    if not np.isfinite(scale) or scale == 0:
        raise Rejected("the feature's direction is zero or not finite")
    context = (label or {}).get("context")
    contexts = [context] if isinstance(context, str) and context else []
    return {
        "record_id": stable_id(target.name, "features", f"sae:paper:{layer}:{index}", layer),
        "feature_id": f"sae:paper:{index}", "split": split, "target_model": target.name,
        "source": "saelens", "kind": f"paper layer {layer}", "name": str(index), "layer": layer,
        "vector": direction / scale, "scale": scale, "description": description,
        "quality": math.nan, "top_contexts": contexts,
        "top_activations": [],
    }  # fmt: skip


def _first_id(tokenizer, tokens) -> int:
    """The id of a continuation's first token, which must be in the target's vocabulary."""
    first = list(tokens)[:1]
    token_id = tokenizer.convert_tokens_to_ids(first[0]) if first else None
    if token_id is None or (token_id == tokenizer.unk_token_id and first[0] != tokenizer.unk_token):
        raise Rejected(f"the continuation's token {first[:1]!r} is not in the target's vocabulary")
    return int(token_id)


def _field(record: dict, name: str):
    value = record.get(name) if isinstance(record, dict) else None
    if value is None:
        raise Rejected(f"the record has no {name!r}")
    return value


def item_json(record) -> str:
    """A rejected record for the rejects table (vectors left out: they are long and say nothing
    about why)."""

    def short(value):
        if isinstance(value, dict):
            return {k: short(v) for k, v in value.items() if k != "intervention_vector"}
        if isinstance(value, (list, tuple)) and len(value) > 64:
            return f"<{len(value)} values>"
        return value

    return json.dumps(short(record), default=str)[:2000]


def _features_record(record, split: str, target: TargetReader, d_model: int, origin: Location):
    if not isinstance(record, (list, tuple)) or len(record) != 2:
        raise Rejected("not an (example, label) pair")
    return features_row(record[0], record[1], split, target, origin / "features")


@dataclass(frozen=True)
class PaperLayout:
    """How one task's released data is laid out and read."""

    archive: bool
    """A pickled explanation archive (features), else a dataset of files per split."""
    columns: tuple[str, ...]
    """The columns a dataset's files must have."""
    row: Callable[..., dict]
    """(record, split, target reader, target width, source folder) -> a corpus row."""


PAPER_LAYOUTS = {
    "patching": PaperLayout(
        False, ACT_PATCH_COLUMNS, lambda r, split, t, d, _: patching_row(r, split, t, d)
    ),
    "hint": PaperLayout(False, HINT_COLUMNS, lambda r, split, t, d, _: hint_row(r, split, t)),
    "features": PaperLayout(True, (), _features_record),
}
