"""The answer form of the change tasks (ablation, hint removal, patching), as the paper writes it.

An intervention either leaves the target's output as it was or changes it, and the answer says
which *and* names the output:

    The output would remain unchanged from <<<X>>>.      (X: the original output)
    The most likely output would change to <<<Y>>>.     (Y: the new output)

So an exact match needs the original output too: an explainer cannot score on unchanged queries
by saying "unchanged" alone. Outputs are single tokens or choice letters; a token is shown
without its leading space, and a whitespace-only token by name (``\\n``, ``␣``), so that two
different blank tokens never compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNCHANGED = "The output would remain unchanged from <<<{}>>>."
CHANGED = "The most likely output would change to <<<{}>>>."
_UNCHANGED = re.compile(r"remain\s+unchanged\s+from\s+<<<(.*?)>>>", re.IGNORECASE | re.DOTALL)
_CHANGED = re.compile(r"change\s+to\s+<<<(.*?)>>>", re.IGNORECASE | re.DOTALL)
_BLANKS = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


@dataclass(frozen=True)
class ChangeAnswer:
    """What an answer says: whether the output changes, and the output it names (the original
    output when unchanged, the new one when changed; ``""`` when it names none)."""

    changed: bool
    output: str


def display_token(text: str) -> str:
    """A token as answers show it: stripped, or spelled out when it is only whitespace."""
    if text.strip():
        return text.strip()
    return "".join(_BLANKS.get(ch, f"\\u{ord(ch):04x}") for ch in text) or "∅"


def truth_of(row: dict) -> ChangeAnswer:
    """The ground truth of a corpus row. ``new_top1`` is the output after the intervention (equal
    to the original output when nothing changed); ``changed`` says which case it is."""
    return ChangeAnswer(bool(row["changed"]), display_token(row["new_top1"]))


def format_change(answer: ChangeAnswer) -> str:
    """The answer text the explainer is trained to produce (leading space: it follows "Answer:")."""
    return " " + (CHANGED if answer.changed else UNCHANGED).format(answer.output)


def format_answer(row: dict) -> str:
    return format_change(truth_of(row))


def parse_answer(text: str) -> ChangeAnswer | None:
    """The first answer form in ``text`` (case-insensitive, either phrasing), or None."""
    found = [(m.start(), changed, m.group(1)) for changed, pattern in ((False, _UNCHANGED), (True, _CHANGED))
             for m in [pattern.search(text)] if m]
    if not found:
        return None
    _, changed, output = min(found)
    return ChangeAnswer(changed, output.strip() or output)
