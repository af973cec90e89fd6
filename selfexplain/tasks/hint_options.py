"""The hint task's generate options (``generate.<key>``): a light module, so the config can
gather them without importing the task's model code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HintOptions:
    questions: str = "builtin"
    """hint: ``builtin`` (completion prompts of the packaged facts, "The capital of France is",
    each with a hint sentence naming another answer: for targets that answer facts but not
    multiple choice, such as a 135M model), ``builtin-choice`` (609 packaged multiple-choice
    questions: 50 hand-written, 559 templated by ``make data`` about countries and US states), or
    a multiple-choice file in the MMLU layout (question, choices, answer, optional subject and
    entity): .jsonl, .csv (question,A,B,C,D,answer) or .parquet."""
    hints_per_fact: int = 6
    """hint, completion prompts: how many other answers each fact is hinted toward (one row
    each)."""
    hint_filter: bool = True
    """hint, completion prompts: keep a fact only when the target completes it correctly without
    a hint *and* the hint wins on some hinted answers and loses on others (so whether it changes
    is not readable from the fact alone); the others go to the rejects with the reason."""

    def rules(self) -> list[tuple[bool, str, str]]:
        return [
            (1 <= self.hints_per_fact <= 32, "generate.hints_per_fact", "use 1-32 hinted answers")
        ]
