"""What a change-task answer says, as a record: whether the output changes, and the output named."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeAnswer:
    """What an answer says: whether the output changes, and the output it names (the original
    output when unchanged, the new one when changed; ``""`` when it names none)."""

    changed: bool
    output: str
