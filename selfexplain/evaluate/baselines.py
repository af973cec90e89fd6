"""Baselines that need no trained explainer: what a score means is how far it beats these.

Change-task baselines answer in the same form as an explainer (a :class:`ChangeAnswer`). A
baseline that says "unchanged" is given the query's original output for free (it is what the
target says on the query's own prompt, computable without any explainer), so they are, if
anything, generous.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from selfexplain.tasks.change_answers import ChangeAnswer, display_token, truth_of


def original_output(row: dict) -> str:
    """The target's output before the intervention (what an "unchanged" answer must name)."""
    if bool(row["changed"]):
        return display_token(row.get("orig_top1") or row.get("answer_with_hint", ""))
    return truth_of(row).output


def majority_answer(train_rows: list[dict], row: dict) -> ChangeAnswer:
    """The most common training class; if that is "changed", the most common new output."""
    if not train_rows:
        raise ValueError("the training split is empty; the majority baseline needs training rows")
    changed = sum(bool(r["changed"]) for r in train_rows)
    if changed * 2 <= len(train_rows):
        return ChangeAnswer(False, original_output(row))
    outputs = Counter(truth_of(r).output for r in train_rows if r["changed"])
    return ChangeAnswer(True, outputs.most_common(1)[0][0])


def nearest_rows(bank, queries, bank_layers=None, query_layers=None) -> list[int]:
    """Index of the bank row with the largest dot product for each query row (both 2-D arrays),
    as the paper's nearest neighbour; with layers given, only among bank rows of the query's layer
    (falling back to all rows when that layer has none)."""
    bank = np.asarray(bank, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    scores = queries @ bank.T
    if bank_layers is not None and query_layers is not None:
        same = np.asarray(query_layers)[:, None] == np.asarray(bank_layers)[None, :]
        scores = np.where(same | ~same.any(axis=1, keepdims=True), scores, -np.inf)
    return scores.argmax(axis=1).tolist()


def neighbour_answer(neighbour: dict, row: dict) -> ChangeAnswer:
    """The nearest training row's answer, applied to this query (its own original output if the
    neighbour was unchanged)."""
    if bool(neighbour["changed"]):
        return ChangeAnswer(True, truth_of(neighbour).output)
    return ChangeAnswer(False, original_output(row))


def rule_answer(task: str, row: dict, num_layers: int) -> ChangeAnswer | None:
    """A rule a person would guess without a trained explainer, or None where the task has none.

    - ablation: only removing the last token changes the next token (it is what the model
      continues from); the new token cannot be guessed, so a "changed" guess names none.
    - patching (*oracle-informed*: it reads the counterfactual prompt and its answer, which the
      explainer's query does not show): the subject's information sits at the positions where
      the two prompts differ in the early layers and has moved to the last position by the late
      layers; patching there changes the answer to the counterfactual's.
    """
    if task == "ablation":
        changed = row["token_index"] == row["num_tokens"] - 1
        return ChangeAnswer(True, "") if changed else ChangeAnswer(False, original_output(row))
    if task == "patching":
        early = row["layer"] < num_layers / 2
        changed = (row["token"] != row["cf_token"] and early) or (row["position"] == row["num_tokens"] - 1 and not early)
        return ChangeAnswer(True, display_token(row["cf_top1"])) if changed else ChangeAnswer(False, original_output(row))
    return None


RULE_NAMES = {"ablation": "last-token rule", "patching": "oracle-informed rule (reads the counterfactual)"}
