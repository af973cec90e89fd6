"""The systems a run scores, as records: what each is (a trained or untrained explainer, or a
baseline), in which role (the target explaining itself, or another model) and which model.

``results.json`` keeps each system's record beside its scores, so a study labels and orders its
rows from these fields, never by parsing a display label back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

SystemKind = Literal["trained", "untrained", "baseline"]
Role = Literal["self", "other", ""]
Decoding = Literal["greedy", "candidates", ""]
CANDIDATE_CHOICE = "candidate choice"


@dataclass(frozen=True)
class System:
    kind: SystemKind
    role: Role = ""
    """``self`` or ``other`` for an explainer; empty for a baseline (it needs no explainer)."""
    model: str = ""
    """The explainer's model reference (an explainer), or empty."""
    name: str = ""
    """A baseline's name (``majority baseline``, ``last-token rule``...)."""
    decoding: Decoding = ""
    """How an explainer's answer was taken: ``greedy`` decoding (the headline, as in the paper)
    or ``candidates``, the most likely of a fixed candidate set; empty for a baseline."""

    @property
    def label(self) -> str:
        """The row label of a run's own results table."""
        if self.kind == "baseline":
            return self.name
        return f"{self.kind} explainer" + (
            f" ({CANDIDATE_CHOICE})" if self.decoding == "candidates" else ""
        )

    @property
    def study_label(self) -> str:
        """The row label in a study, where runs of both roles share one table."""
        if self.kind == "baseline":
            return self.name
        prefix = "untrained " if self.kind == "untrained" else ""
        suffix = f", {CANDIDATE_CHOICE}" if self.decoding == "candidates" else ""
        return f"{prefix}{self.role} ({self.model}){suffix}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> System:
        return cls(**{"decoding": "greedy" if data.get("kind") != "baseline" else "", **data})


def baseline(name: str) -> System:
    return System("baseline", name=name)
