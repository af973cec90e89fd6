"""The change tasks' answers, baselines and scores (input ablation, hint removal, activation
patching): everything they share, as the :class:`ChangeTask` base class.

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
from collections import Counter
from typing import TYPE_CHECKING

from selfexplain.scoring.answers import ChangeAnswer
from selfexplain.scoring.baselines import nearest_training_rows
from selfexplain.scoring.metrics import change_outcomes, score_change_predictions

if TYPE_CHECKING:
    from selfexplain.tasks import ScoringContext

UNCHANGED = "The output would remain unchanged from <<<{}>>>."
CHANGED = "The most likely output would change to <<<{}>>>."
_UNCHANGED = re.compile(r"remain\s+unchanged\s+from\s+<<<(.*?)>>>", re.IGNORECASE | re.DOTALL)
_CHANGED = re.compile(r"change\s+to\s+<<<(.*?)>>>", re.IGNORECASE | re.DOTALL)
_BLANKS = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


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


def parse_answer(text: str) -> ChangeAnswer | None:
    """The first answer form in ``text`` (case-insensitive, either phrasing), or None."""
    found = [
        (m.start(), changed, m.group(1))
        for changed, pattern in ((False, _UNCHANGED), (True, _CHANGED))
        for m in [pattern.search(text)]
        if m
    ]
    if not found:
        return None
    _, changed, output = min(found)
    return ChangeAnswer(changed, output.strip() or output)


class ChangeTask:
    """Answers, baselines and scores shared by the tasks whose answer says whether an
    intervention changes the target's output, and names the output.

    The column contract: every corpus row of a change task holds

    - ``changed`` (bool): whether the intervention changed the target's output;
    - ``new_top1`` (str): the output after the intervention, equal to the original output when
      nothing changed (a token; for hint removal, the answer without the hint);
    - the original output, in the column :attr:`original_column` names.

    A subclass adds the ground truth, the question (``format_query``) and, where a person would
    guess a rule without an explainer, :meth:`rule_answer` with its :attr:`rule_name`.

    Nothing that scores a query may read what the query hides. :meth:`visible_output` is the one
    output a system may know without an explainer (the target's output on the query's own prompt,
    where that does not give the answer away), and :meth:`candidate_answers` depends only on it,
    on what the query shows and on the training rows: never on the row's ``changed`` or
    ``new_top1``.
    """

    original_column = "orig_top1"
    headline_metric = "exact_match"
    per_query_metric = "exact"
    answers_are_free_text = False
    selfie_baseline = False
    rule_name: str | None = None

    def format_answer(self, row: dict) -> str:
        return format_change(truth_of(row))

    def parse_answer(self, text: str) -> ChangeAnswer | None:
        return parse_answer(text)

    def original_output(self, row: dict) -> str:
        """The target's output before the intervention (what an "unchanged" answer must name)."""
        return display_token(row[self.original_column])

    def visible_output(self, row: dict, context: ScoringContext) -> str:
        """The output a system may name without an explainer. For ablation and patching it is the
        target's output on the query's own prompt: it does not depend on the intervention, so it
        says nothing about whether the intervention changes it."""
        return self.original_output(row)

    def rule_answer(self, row: dict, context: ScoringContext) -> ChangeAnswer:
        raise NotImplementedError(f"{type(self).__name__} has no rule baseline")

    # --- baselines: they answer in the explainer's form from what the query shows, plus the
    # visible output (known without any explainer), so they are, if anything, generous.

    def majority_answer(
        self, train_rows: list[dict], row: dict, context: ScoringContext
    ) -> ChangeAnswer:
        """The most common training class; if that is "changed", the most common new output."""
        if not train_rows:
            raise ValueError(
                "the training split is empty; the majority baseline needs training rows"
            )
        changed = sum(bool(r["changed"]) for r in train_rows)
        if changed * 2 <= len(train_rows):
            return ChangeAnswer(False, self.visible_output(row, context))
        outputs = Counter(truth_of(r).output for r in train_rows if r["changed"])
        return ChangeAnswer(True, outputs.most_common(1)[0][0])

    def neighbour_answer(self, neighbour: dict, row: dict, context: ScoringContext) -> ChangeAnswer:
        """The nearest training row's answer, applied to this query (the visible output if the
        neighbour was unchanged)."""
        if bool(neighbour["changed"]):
            return ChangeAnswer(True, truth_of(neighbour).output)
        return ChangeAnswer(False, self.visible_output(row, context))

    def baselines(self, rows: list[dict], context: ScoringContext) -> dict[str, list]:
        """Majority, nearest training example (by vector among rows of the same layer, or by the
        query's meaning for text tasks), and the task's rule where it has one."""
        train_rows = context.train_rows
        if not train_rows:
            raise ValueError("the training split is empty; the baselines need training rows")
        nearest = nearest_training_rows(self, train_rows, rows)
        answers = {
            "majority baseline": [self.majority_answer(train_rows, r, context) for r in rows],
            "nearest-neighbour baseline": [
                self.neighbour_answer(train_rows[i], r, context) for i, r in zip(nearest, rows)
            ],
        }
        if self.rule_name:
            answers[self.rule_name] = [self.rule_answer(r, context) for r in rows]
        return answers

    # --- candidate choice: one fixed answer set per query, the same for every system

    def training_outputs(self, context: ScoringContext) -> list[str]:
        """Every new output of a changed training row, most common first (ties by text)."""
        common = Counter(truth_of(r).output for r in context.train_rows if r["changed"])
        ordered = sorted(common, key=lambda output: (-common[output], output))
        return ordered[: context.candidate_outputs] if context.candidate_outputs else ordered

    def candidate_options(
        self, row: dict, context: ScoringContext, outputs: list[str]
    ) -> list[ChangeAnswer]:
        """A query's candidate answers: "unchanged from <<<the visible output>>>" and "change to
        <<<y>>>" for every ``y`` of ``outputs`` (the training outputs) other than it."""
        visible = self.visible_output(row, context)
        return [ChangeAnswer(False, visible)] + [
            ChangeAnswer(True, y) for y in outputs if y != visible
        ]

    def candidate_answers(self, rows: list[dict], context: ScoringContext) -> list[list[str]]:
        """Per query, the well-formed answers a system chooses among (the one it finds most
        likely). They depend only on what the query shows, the visible output and the training
        rows, so the set's size and content say nothing about a query's label."""
        outputs = self.training_outputs(context)
        return [
            [format_change(option) for option in self.candidate_options(row, context, outputs)]
            for row in rows
        ]

    def score(
        self, rows: list[dict], answers: dict[str, list], context: ScoringContext
    ) -> dict[str, dict]:
        truth = [truth_of(r) for r in rows]
        units = [self.held_out_unit(r) for r in rows]
        return {
            name: score_change_predictions(
                predicted, truth, units, intervals=True, seed=context.seed
            )
            for name, predicted in answers.items()
        }

    def family(self, row: dict) -> str:
        return ""

    def per_query(self, rows: list[dict], answers: dict[str, list]) -> dict[str, list]:
        truth = [truth_of(r) for r in rows]
        columns = {}
        for name, predicted in answers.items():
            outcomes = change_outcomes(predicted, truth)
            for metric in (
                "exact",
                "content",
                "correct",
                "said",
            ):  # said: 1 changed, 0 unchanged, -1 unread
                columns[f"{metric}: {name}"] = outcomes[metric].tolist()
        return columns
