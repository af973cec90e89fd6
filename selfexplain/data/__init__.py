"""Data shipped with selfexplain: the built-in prompt set used when no prompt file is given."""

from __future__ import annotations

from importlib import resources


def builtin_prompts() -> list[str]:
    """Short English prompts whose next token a small model predicts with some confidence:
    facts, sequences, idioms and grammar, so that removing a token sometimes matters and
    sometimes does not."""
    text = (resources.files("selfexplain") / "data" / "prompts.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
