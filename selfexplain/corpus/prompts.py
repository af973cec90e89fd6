"""Prompt sources for ground-truth jobs: the built-in set, a text file or a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

from selfexplain.data import builtin_prompts


class PromptFileError(ValueError):
    """The prompt source cannot be used; the message names the file and the fix."""


def load_prompts(source: str, max_prompts: int = 0) -> list[str]:
    """Prompts in file order, duplicates dropped; ``max_prompts`` > 0 keeps that many, evenly
    spread over the file. Prompt files are often grouped by topic (the packaged one is), and the
    first few prompts would be a handful of template families: too few to hold out by family."""
    if source == "builtin":
        prompts = builtin_prompts()
    else:
        prompts = _read_file(Path(source))
    unique = list(dict.fromkeys(p for p in prompts if p.strip()))
    if not unique:
        raise PromptFileError(f"prompt file {source} holds no prompts; add one prompt per line")
    if not max_prompts or max_prompts >= len(unique):
        return unique
    return [unique[index * len(unique) // max_prompts] for index in range(max_prompts)]


def _read_file(path: Path) -> list[str]:
    if not path.is_file():
        raise PromptFileError(f"prompt file {path} not found; set generate.prompts to a .txt/.jsonl file or 'builtin'")
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".jsonl":
        return [line.strip() for line in text.splitlines()]
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise PromptFileError(f"{path}:{number} is not valid JSON ({err.msg}); write one object a line") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise PromptFileError(f"{path}:{number} has no string field 'prompt'; write {{\"prompt\": \"...\"}}")
        prompts.append(record["prompt"].strip())
    return prompts
