"""Explanation tasks. Each is a small :class:`Task`: ground truth from the target model, then the
explainer's question and answer in words, then a parser that reads an answer back for scoring.
Job runners, training and evaluation only talk to this protocol, never to a task module.
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from selfexplain.corpus.schema import SCHEMAS
from selfexplain.tasks import ablation


class Task(Protocol):
    name: str
    schema: pa.Schema

    def ground_truth(self, model, tokenizer, prompt: str, target_name: str) -> list[dict]:
        """Corpus rows (without ``split``) for one input."""

    def format_query(self, row: dict) -> str:
        """The explainer's prompt for one corpus row."""

    def format_answer(self, row: dict) -> str:
        """The ground truth as the explainer should say it."""

    def parse_answer(self, text: str) -> tuple[bool | None, str | None]:
        """Read a generated answer back: (changed, new token), None where unreadable."""


class AblationTask:
    name = "ablation"
    schema = SCHEMAS["ablation"]
    ground_truth = staticmethod(ablation.ablate_prompt)
    format_query = staticmethod(ablation.format_query)
    format_answer = staticmethod(ablation.format_answer)
    parse_answer = staticmethod(ablation.parse_answer)


TASKS: dict[str, Task] = {"ablation": AblationTask()}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]
