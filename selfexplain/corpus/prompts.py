"""Prompt sources for ground-truth jobs: the built-in set, a text file or a JSONL file."""

from __future__ import annotations

import json
from pathlib import Path

from selfexplain.data import builtin_prompts
from selfexplain.errors import InputError
from selfexplain.inputs import read_jsonl, read_text

SUFFIXES = (".txt", ".jsonl", ".json")
FIX = "set generate.prompts to a .txt, .jsonl or .json file, or 'builtin'"


class PromptFileError(InputError):
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
    if path.suffix not in SUFFIXES and path.exists():
        raise PromptFileError(
            f'prompt file {path}: use a .txt (one prompt a line), .jsonl (one {{"prompt": ...}} '
            "object a line) or .json (a list of prompts) file, or 'builtin'"
        )
    if path.suffix == ".txt":
        return [
            line.strip()
            for line in read_text(path, PromptFileError, "prompt file", FIX).splitlines()
        ]
    if path.suffix == ".json":
        return _read_json_list(path)
    prompts = []
    for number, record in read_jsonl(path, PromptFileError, "prompt file", FIX):
        if not isinstance(record.get("prompt"), str):
            raise PromptFileError(
                f'{path}:{number} has no string field \'prompt\'; write {{"prompt": "..."}}'
            )
        prompts.append(record["prompt"].strip())
    return prompts


def _read_json_list(path: Path) -> list[str]:
    """A .json prompt file: a list of strings or of ``{"prompt": ...}`` objects."""
    try:
        records = json.loads(read_text(path, PromptFileError, "prompt file", FIX))
    except json.JSONDecodeError as err:
        raise PromptFileError(f"{path}:{err.lineno} is not valid JSON ({err.msg})") from None
    if not isinstance(records, list):
        raise PromptFileError(
            f"{path} holds a JSON {type(records).__name__}; write a list of prompts"
        )
    prompts = []
    for number, record in enumerate(records, start=1):
        text = record.get("prompt") if isinstance(record, dict) else record
        if not isinstance(text, str):
            raise PromptFileError(
                f'{path}: entry {number} is not a prompt; write strings or {{"prompt": ...}} '
                f"objects"
            )
        prompts.append(text.strip())
    return prompts
