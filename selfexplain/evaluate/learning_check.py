"""The learning check: an explainer trained on a handful of rows must give back those rows'
answers, decoded greedily as in evaluation.

It proves that the query template, the labels, the answer-only loss mask, the answer parser and
greedy decoding agree. A task that fails it has a bug before any question of generalisation;
nothing else in the results can be trusted until it passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from selfexplain.config import RunConfig
from selfexplain.corpus.io import read_corpus
from selfexplain.evaluate.evaluate import explain_rows, training_rows
from selfexplain.explainer.interface import INTERFACE, VectorInterface
from selfexplain.jobs.ray_session import ray_session
from selfexplain.tasks import get_task
from selfexplain.train.trainer import export_location

PASS_AT = 0.95


@dataclass(frozen=True)
class LearningCheck:
    task: str
    rows: int
    exact_match: float
    """Share of training rows whose greedy answer parses to what the label parses to."""
    text_match: float
    """Share whose greedy answer is the label's text itself (whitespace aside)."""
    misses: list[tuple[str, str]]
    """(label, answer) of up to five rows it got wrong."""

    @property
    def passed(self) -> bool:
        return self.exact_match >= PASS_AT


def check_training_rows(config: RunConfig) -> LearningCheck:
    """Ask a trained run's explainer every row it was trained on; compare with the labels."""
    task = get_task(config.task)
    rows = training_rows(config, read_corpus(config.corpus_dir))
    export = export_location(config).local_path
    interface_file = export / INTERFACE
    with ray_session(config.ray):
        pending = explain_rows.options(num_cpus=1).remote(
            config.task,
            str(export),
            rows,
            config.evaluate.batch_size,
            config.evaluate.max_new_tokens or 64,
            False,
            config.trust_remote_code,
            interface=VectorInterface.read(interface_file) if interface_file.is_file() else None,
        )
        answers = ray.get(pending)["greedy"]
    labels = [task.format_answer(row) for row in rows]
    parsed = [task.parse_answer(a) == task.parse_answer(label) for a, label in zip(answers, labels)]
    same_text = [" ".join(a.split()) == " ".join(b.split()) for a, b in zip(answers, labels)]
    misses = [(label, answer) for label, answer, ok in zip(labels, answers, parsed) if not ok]
    return LearningCheck(
        config.task,
        len(rows),
        sum(parsed) / max(len(rows), 1),
        sum(same_text) / max(len(rows), 1),
        misses[:5],
    )
