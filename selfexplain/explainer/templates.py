"""The explainer's prompt templates for vector tasks, read from ``configs/prompts/templates.yaml``.

Evaluation asks each query in one template drawn by a hash of its record id: the same on every
run and every worker. Training draws a row's template anew each epoch from (seed, epoch, record
id) (``variant``), so the explainer learns the question, not one phrasing of it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from selfexplain.explainer.vectors import VECTOR_SPAN


@cache
def templates(task: str) -> tuple[str, ...]:
    text = (resources.files("selfexplain") / "configs" / "prompts" / "templates.yaml").read_text(
        encoding="utf-8"
    )
    return tuple(yaml.safe_load(text)[task])


def render(task: str, record_id: str, variant: int | None = None, **fields) -> str:
    """The query in template ``variant``, or (None) in the record's own template, drawn from its
    id."""
    options = templates(task)
    index = int(record_id[:8], 16) if variant is None else variant
    return options[index % len(options)].format(vector=VECTOR_SPAN, **fields)
