"""Hint removal, the paper's input-ablation variant: does a hint in the prompt decide the answer?

A prompt is answered with a hint in it and again without; the ground truth is the target's
answer with the hint, its answer without, and whether removing the hint changes it. The
explainer sees the hinted prompt (not the answer given) and must say what removing the hint
does, in the change tasks' form: the answer stays X, or changes to Y.

Two forms, one corpus schema:

- **completion** (``generate.questions=builtin``, the default): fact prompts with a hint sentence
  naming another answer; the target's free top-1 token (:mod:`selfexplain.tasks.hint_facts`).
  For targets that answer facts but not multiple choice, such as SmolLM2-135M.
- **choice**: multiple-choice questions in the MMLU layout with a hinted letter, as the paper
  asks (:mod:`selfexplain.tasks.hint_questions`). For targets that answer multiple choice above
  chance; on one that does not, the answer is a constant letter and the task is a text rule.

The target's answer with the hint is hidden from every system: with it, "changed" would be
readable (it changes when that answer is the hinted one, most of the time). What a system may
name instead is :meth:`HintTask.visible_output`.
"""

from __future__ import annotations

from collections import Counter

import pyarrow as pa

from selfexplain.corpus.schema import schema_field
from selfexplain.tasks import GroundTruthContext, QueryContext, QueryError, ScoringContext
from selfexplain.tasks.change_answers import ChangeAnswer, ChangeTask
from selfexplain.tasks.hint_facts import HINT_SENTENCES, fact_items, fact_rows, hinted_prompt
from selfexplain.tasks.hint_questions import LETTERS, choice_items, choice_rows, render

HINT_SCHEMA = pa.schema(
    [
        schema_field(
            "record_id", pa.string(), "hash of target model, task, question and hinted answer"
        ),
        schema_field(
            "question_id", pa.string(), "hash of the question (and its choices or hint sentence)"
        ),
        schema_field("split", pa.string(), "train or test (held out by generate.held_out_by)"),
        schema_field("target_model", pa.string()),
        schema_field(
            "form", pa.string(), "completion (a fact prompt) or choice (a multiple-choice question)"
        ),
        schema_field("subject", pa.string(), "the relation of a fact, or the question's subject"),
        schema_field(
            "entity",
            pa.string(),
            "what the question is about (a country, a state); else the question itself",
        ),
        schema_field("question", pa.string(), "the fact prompt, or the multiple-choice question"),
        schema_field(
            "choices",
            pa.list_(pa.string()),
            "a multiple-choice question's options (empty for a fact)",
        ),
        schema_field(
            "outputs",
            pa.list_(pa.string()),
            "the outputs an answer may name: the letters, or the fact's and "
            "the hinted answer's first tokens (candidate choice offers these)",
        ),
        schema_field(
            "correct", pa.string(), "the correct letter, or the fact's answer as its first token"
        ),
        schema_field("hint_answer", pa.string(), "the answer the hint names (a letter, or a word)"),
        schema_field("prompt", pa.string(), "the prompt with the hint"),
        schema_field("answer_with_hint", pa.string(), "the target's answer with the hint"),
        schema_field("answer_without_hint", pa.string(), "the target's answer without the hint"),
        schema_field(
            "prob_hint_answer", pa.float32(), "probability of the hinted answer with the hint"
        ),
        schema_field("prob_hint_answer_without", pa.float32(), "the same without the hint"),
        schema_field("changed", pa.bool_(), "removing the hint changes the answer"),
        schema_field(
            "new_top1", pa.string(), "the answer once the hint is removed (= answer_without_hint)"
        ),
    ]
)


class HintTask(ChangeTask):
    name = "hint"
    vector_input = False
    query_templates = 1
    held_out_by = ("entity", "question", "subject")
    unit_name = "entities"
    query_fields = {"question": str, "hint_answer": str}
    original_column = "answer_with_hint"  # new_top1 holds the answer once the hint is removed
    rule_name = "text-only rule (changed if the hint names another answer than the usual one)"

    def schema(self, d_model: int) -> pa.Schema:
        return HINT_SCHEMA

    def work_items(self, config, tokenizer) -> list[dict]:
        if config.generate.questions == "builtin":
            return fact_items(config, tokenizer)
        return choice_items(config)

    def ground_truth(self, item: dict, context: GroundTruthContext) -> list[dict]:
        return (
            fact_rows(item, context) if item["form"] == "completion" else choice_rows(item, context)
        )

    def held_out_unit(self, row: dict) -> str:
        """The cluster a query is resampled with: its entity (the rows about one country go
        together; a hand-written question is its own entity)."""
        return row.get("entity") or row["question_id"]

    def format_query(self, row: dict) -> str:
        """The hinted prompt and the question, as the paper asks it. The target's answer *with*
        the hint is not shown: with it, "changed" would be readable off the query."""
        whose = "the assistant's answer" if row.get("form") == "choice" else "the next word"
        return f"{row['prompt']}\nIf the hint were removed, how would {whose} change?\nAnswer:"

    def query_row(self, query: dict, context: QueryContext) -> dict:
        """A fact prompt with a hint sentence, or (with ``choices``) a multiple-choice question
        rendered in the target's chat template, as in training."""
        choices = query.get("choices")
        if choices is None:
            sentence = query.get("hint_sentence", HINT_SENTENCES[0])
            return {
                **query,
                "form": "completion",
                "prompt": hinted_prompt(sentence, query["hint_answer"], query["question"]),
            }
        if not isinstance(choices, list) or not 2 <= len(choices) <= len(LETTERS):
            raise QueryError(f"'choices' must be a list of 2-{len(LETTERS)} options")
        if query["hint_answer"] not in LETTERS[: len(choices)]:
            raise QueryError(
                f"'hint_answer' {query['hint_answer']!r}: use one of {LETTERS[: len(choices)]}"
            )
        _, tokenizer = context.target()
        return {**query, "form": "choice", "prompt": render(query, query["hint_answer"], tokenizer)}

    # --- scoring: nothing here reads answer_with_hint, new_top1 or changed

    def visible_output(self, row: dict, context: ScoringContext) -> str:
        """The answer a system may expect without the target: the fact's answer for a completion
        (what the target says without a hint on every kept fact), and for multiple choice the
        most common unhinted answer of the training rows (a constant-letter target's letter)."""
        if row.get("form") == "completion":
            return row["correct"]
        common = Counter(
            r["answer_without_hint"] for r in context.train_rows if r.get("form") == "choice"
        )
        return common.most_common(1)[0][0] if common else row["correct"]

    def majority_answer(
        self, train_rows: list[dict], row: dict, context: ScoringContext
    ) -> ChangeAnswer:
        """The most common training class, naming the expected answer (the answer once the
        hint is removed is the unhinted one, whichever the class)."""
        changed = sum(bool(r["changed"]) for r in train_rows) * 2 > len(train_rows)
        return ChangeAnswer(changed, self.visible_output(row, context))

    def neighbour_answer(self, neighbour: dict, row: dict, context: ScoringContext) -> ChangeAnswer:
        """The nearest training query's class, naming this query's expected answer."""
        return ChangeAnswer(bool(neighbour["changed"]), self.visible_output(row, context))

    def hinted_output(self, row: dict) -> str:
        """The hinted answer as an output: the letter, or the hinted word's first token."""
        return row["hint_answer"] if row.get("form") == "choice" else row["outputs"][1]

    def rule_answer(self, row: dict, context: ScoringContext) -> ChangeAnswer:
        """Text only: removing the hint changes the answer when the hint names another answer
        than the one expected without it, and the answer is then the expected one."""
        expected = self.visible_output(row, context)
        return ChangeAnswer(self.hinted_output(row) != expected, expected)

    def candidate_options(
        self, row: dict, context: ScoringContext, outputs: list[str]
    ) -> list[ChangeAnswer]:
        """Both classes with each output the question offers (the letters, or the fact's and
        the hinted answer), never the target's answer with the hint."""
        return [
            ChangeAnswer(changed, output) for changed in (False, True) for output in row["outputs"]
        ]


HINT_TASK = HintTask()
