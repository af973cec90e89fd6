"""The explainer's prompt templates for vector tasks, in one of two sets (``prompts`` in the run
config): ``selfexplain`` (``configs/prompts/templates.yaml``) or ``paper`` (the paper's own,
``configs/prompts/paper.yaml``).

Evaluation asks each query in one template drawn by a hash of its record id: the same on every
run and every worker. Training draws a row's template anew each epoch from (seed, epoch, record
id) (``variant``), so the explainer learns the question, not one phrasing of it. A row names its
set in ``row["prompts"]`` (put there by whoever formats it from the run's config or the
explainer's record); without it, the ``selfexplain`` set.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from selfexplain.explainer.vectors import VECTOR_SPAN

PROMPT_SETS = {"selfexplain": "templates.yaml", "paper": "paper.yaml"}
DEFAULT_PROMPTS = "selfexplain"


@cache
def templates(task: str, prompts: str = DEFAULT_PROMPTS) -> tuple[str, ...]:
    folder = resources.files("selfexplain") / "configs" / "prompts"
    text = (folder / PROMPT_SETS[prompts]).read_text(encoding="utf-8")
    return tuple(yaml.safe_load(text)[task])


def phrasings(task, prompts: str = DEFAULT_PROMPTS) -> int:
    """How many phrasings ``task``'s query has in the set ``prompts`` (1 for a fixed query)."""
    return len(templates(task.name, prompts)) if task.query_templates > 1 else 1


def render(task: str, row: dict, **fields) -> str:
    """``row``'s query in template ``row["template_variant"]``, or (None) in the record's own
    template, drawn from its id; from the set ``row["prompts"]``."""
    options = templates(task, row.get("prompts") or DEFAULT_PROMPTS)
    variant = row.get("template_variant")
    index = int(row["record_id"][:8], 16) if variant is None else variant
    return options[index % len(options)].format(vector=VECTOR_SPAN, **fields)
