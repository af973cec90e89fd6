"""Baselines that need no explainer: what a score means is how far it beats these."""

from __future__ import annotations

from collections import Counter


def majority_answer(train_rows: list[dict]) -> tuple[bool, str | None]:
    """The most common training answer: the majority class, and if that is "changed", the most
    common new token among changed training rows."""
    if not train_rows:
        raise ValueError("the training split is empty; the majority baseline needs training rows")
    changed = sum(bool(r["changed"]) for r in train_rows)
    if changed * 2 <= len(train_rows):
        return False, None
    tokens = Counter(r["new_top1"].strip() for r in train_rows if r["changed"])
    return True, tokens.most_common(1)[0][0]


def nearest_rows(bank, queries) -> list[int]:
    """Index of the most cosine-similar bank row for each query row (both 2-D arrays)."""
    import numpy as np

    bank = np.asarray(bank, dtype=np.float32)
    queries = np.asarray(queries, dtype=np.float32)
    bank = bank / np.linalg.norm(bank, axis=1, keepdims=True).clip(min=1e-12)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(min=1e-12)
    return (queries @ bank.T).argmax(axis=1).tolist()


def heuristic_change(task: str, row: dict, num_layers: int) -> tuple[bool, str | None] | None:
    """A rule a person would guess without any model, or None where the task has none.

    - ablation: only removing the last token changes the next token (it is what the model
      continues from).
    - patching: the standard picture of factual recall: the subject's information sits at the
      positions where the two prompts differ in the early layers and has moved to the last
      position by the late layers. Patching there changes the answer to the counterfactual's.
    """
    if task == "ablation":
        # the new token cannot be guessed by rule: a "changed" guess names none
        return row["token_index"] == row["num_tokens"] - 1, None
    if task == "patching":
        early = row["layer"] < num_layers / 2
        changed = (row["token"] != row["cf_token"] and early) or (row["position"] == row["num_tokens"] - 1 and not early)
        return changed, row["cf_top1"].strip() if changed else None
    return None
