"""The explainer's prompt templates for vector tasks, read from ``configs/prompts/templates.yaml``.

One template is drawn per example by a hash of its record id: the draw is the same on every run
and every worker, and a held-out query may be phrased in a way its training neighbours were not.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml

from selfexplain.explainer.vectors import VECTOR_SPAN


@cache
def templates(task: str) -> tuple[str, ...]:
    text = (resources.files("selfexplain") / "configs" / "prompts" / "templates.yaml").read_text(encoding="utf-8")
    return tuple(yaml.safe_load(text)[task])


def render(task: str, record_id: str, **fields) -> str:
    options = templates(task)
    template = options[int(record_id[:8], 16) % len(options)]
    return template.format(vector=VECTOR_SPAN, **fields)
