"""The explainer's prompt templates for vector tasks, in one of two sets (``templates`` in the
run config): ``selfexplain`` (``configs/prompts/templates.yaml``) or ``paper`` (the paper's own,
``configs/prompts/paper.yaml``).

Evaluation asks each query in one template drawn by a hash of its record id: the same on every
run and every worker. Training draws a row's template anew each epoch from (seed, epoch, record
id) (``variant``), so the explainer learns the question, not one phrasing of it. A row names its
set in ``row["templates"]`` (put there by whoever formats it from the run's config or the
explainer's record); without it, the ``selfexplain`` set.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from selfexplain.explainer.vectors import VECTOR_SPAN

TEMPLATE_SETS = {"selfexplain": "templates.yaml", "paper": "paper.yaml"}
DEFAULT_TEMPLATES = "selfexplain"


@cache
def templates(task: str, template_set: str = DEFAULT_TEMPLATES) -> tuple[str, ...]:
    folder = resources.files("selfexplain") / "configs" / "prompts"
    text = (folder / TEMPLATE_SETS[template_set]).read_text(encoding="utf-8")
    return tuple(yaml.safe_load(text)[task])


def phrasings(task, template_set: str = DEFAULT_TEMPLATES) -> int:
    """How many phrasings ``task``'s query has in ``template_set`` (1 for a fixed query)."""
    return len(templates(task.name, template_set)) if task.query_templates > 1 else 1


def render(task: str, row: dict, **fields) -> str:
    """``row``'s query in template ``row["template_variant"]``, or (None) in the record's own
    template, drawn from its id; from the set ``row["templates"]``."""
    options = templates(task, row.get("templates") or DEFAULT_TEMPLATES)
    variant = row.get("template_variant")
    index = int(row["record_id"][:8], 16) if variant is None else variant
    return options[index % len(options)].format(vector=VECTOR_SPAN, **fields)
