"""Data shipped with selfexplain: the built-in prompt set and the templated facts."""

from __future__ import annotations

import json
from importlib import resources


def builtin_prompts() -> list[str]:
    """Short English prompts whose next token a small model predicts with some confidence:
    facts, sequences, idioms and grammar, so that removing a token sometimes matters and
    sometimes does not."""
    text = (resources.files("selfexplain") / "data" / "prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def builtin_facts() -> dict:
    """The templated facts (``facts.json``): relation -> ``{"templates": [...], "facts": {entity:
    answer}}``. Patching pairs them; hint removal completes them with a hint."""
    text = (resources.files("selfexplain") / "data" / "facts.json").read_text(encoding="utf-8")
    return json.loads(text)["relations"]
