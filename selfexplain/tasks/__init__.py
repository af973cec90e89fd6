"""Explanation tasks. Each is a small :class:`Task`: work items planned on the driver, ground truth
computed from the target model on a Ray Data actor, and (for tasks the explainer is trained on)
the explainer's question and answer in words plus a parser that reads an answer back.
Job runners, training and evaluation only talk to this protocol, never to a task module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa


class Rejected(Exception):
    """A work item (or one of its rows) that cannot become ground truth. The job records it in the
    rejects table with this reason instead of crashing or dropping it silently."""


@dataclass
class GroundTruthContext:
    """What a task's ground truth needs on an actor: the loaded target and the job's options."""

    model: Any
    tokenizer: Any
    target_name: str
    options: Any
    """The run's :class:`selfexplain.config.GenerateConfig`."""
    layers: list[int]
    """Target layers to use (``generate.layers`` with ``[]`` resolved to every layer)."""
    cache: dict = field(default_factory=dict)
    """Per-actor memo for work shared between items (e.g. activations of a text set)."""
    partial_rejects: list[str] = field(default_factory=list)
    """Reasons for parts of the current item that were dropped while the rest was kept; the job
    moves them to the rejects table after each item."""

    def reject_part(self, reason: str) -> None:
        self.partial_rejects.append(reason)


class Task(Protocol):
    name: str
    vector_input: bool
    """Whether the explainer's query carries the row's ``vector`` as a continuous token."""
    query_templates: int
    """How many phrasings the query has (``row["template_variant"]`` picks one; 1 = fixed)."""

    def schema(self, d_model: int) -> pa.Schema:
        """The corpus schema; vector columns are ``fixed_size_list<float32>[d_model]``."""

    def work_items(self, config, tokenizer) -> list[dict]:
        """JSON-able work items in a deterministic order; each has ``groups``, the keys it can be
        held out by (``{"prompt": ...}``, ``{"entity": [...], "template": ...}``...). A list value
        names several groups (a pair's two entities): the item is kept only when all of them
        fall on the same side of the split."""

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        """Corpus rows (without ``split``) for one item; raises :class:`Rejected` for bad input."""

    def held_out_unit(self, row: dict) -> str:
        """The group a corpus row belongs to for resampling: rows of one unit share their input
        (a prompt family, a question, an entity pair, a feature), so intervals resample units."""


def get_task(name: str) -> Task:
    from selfexplain.tasks.ablation import ABLATION
    from selfexplain.tasks.features import FEATURES
    from selfexplain.tasks.hint import HINT_TASK
    from selfexplain.tasks.patching import PATCHING

    tasks = {task.name: task for task in (ABLATION, HINT_TASK, PATCHING, FEATURES)}
    if name not in tasks:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(tasks)}")
    return tasks[name]
