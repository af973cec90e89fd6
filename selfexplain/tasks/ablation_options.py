"""The ablation task's generate options (``generate.<key>``): a light module, so the config can
gather them without importing the task's model code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AblationOptions:
    prompts: str = "builtin"
    """ablation: prompt source, ``builtin`` (the packaged set) or a path to a .txt (one prompt a
    line) or .jsonl (one object a line with a ``prompt`` field) file."""

    def rules(self) -> list[tuple[bool, str, str]]:
        return []
