"""Hint removal on multiple-choice questions, the paper's form (MMLU with a hint).

A question is asked in the target's chat template with a hint inserted ("A reliable source says
the answer is C."), and again without it; the target's answer is the choice letter it scores
highest. This form suits targets that answer multiple choice above chance: a 135M model does
not (SmolLM2-135M answers "C" to every packaged question), and there the completion form
(:mod:`selfexplain.tasks.hint_facts`) is the one to use.

Questions come from the built-in bank (``generate.questions=builtin-choice``:
``selfexplain/data/questions.jsonl`` and ``questions-generated.jsonl``) or a user file in the
MMLU layout: question, choices, answer (an index or a letter), optional subject and entity;
JSONL, CSV (columns question, A, B, C, D, answer) or Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import random
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq
import torch

from selfexplain.corpus.schema import stable_id
from selfexplain.errors import InputError
from selfexplain.inputs import read_jsonl, read_text
from selfexplain.models.padding import padded_batch
from selfexplain.tasks import GroundTruthContext, Rejected

LETTERS = "ABCDEFGH"
BUILTIN_QUESTION_FILES = ("questions.jsonl", "questions-generated.jsonl")
BUILTIN_CHOICE = "builtin-choice"
HINT = "A reliable source says the answer is {}."


class QuestionFileError(InputError):
    """The question file cannot be used; the message names the row and the fix."""


def _normalize(record: dict, where: str) -> dict:
    question, choices, answer = record.get("question"), record.get("choices"), record.get("answer")
    if (
        not isinstance(question, str)
        or not isinstance(choices, (list, tuple))
        or not 2 <= len(choices) <= len(LETTERS)
    ):
        raise QuestionFileError(
            f"{where}: needs 'question' (text) and 'choices' (2-{len(LETTERS)} options)"
        )
    if not all(isinstance(choice, str) for choice in choices) or not isinstance(
        record.get("subject", ""), str
    ):
        raise QuestionFileError(f"{where}: 'choices' and 'subject' must be text; quote them")
    if isinstance(answer, str) and answer.strip().upper() in LETTERS:
        answer = LETTERS.index(answer.strip().upper())
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise QuestionFileError(
            f"{where}: 'answer' must be a choice index or letter, got {answer!r}"
        )
    return {
        "question": question.strip(),
        "choices": [str(c) for c in choices],
        "answer": answer,
        "subject": str(record.get("subject", "") or ""),
        # what the question is about; a question with none is its own entity
        "entity": str(record.get("entity", "") or question.strip()),
    }


def read_questions(source: str) -> list[dict]:
    if (
        source == BUILTIN_CHOICE
    ):  # the hand-written bank, then the one `make data` templates from packaged tables
        questions = []
        for name in BUILTIN_QUESTION_FILES:
            text = (resources.files("selfexplain") / "data" / name).read_text(encoding="utf-8")
            questions += [
                _normalize(json.loads(line), f"{name}:{n}")
                for n, line in enumerate(text.splitlines(), 1)
                if line.strip()
            ]
        return questions
    path = Path(source)
    fix = (
        "set generate.questions to a .jsonl, .csv or .parquet file in the MMLU layout, or "
        "'builtin' "
        "(fact completions) or 'builtin-choice'"
    )
    if path.suffix not in (".jsonl", ".csv", ".parquet"):
        raise QuestionFileError(f"question file {path}: {fix}")
    if path.suffix == ".parquet":
        if not path.is_file():
            raise QuestionFileError(f"question file {path} not found; {fix}")
        try:
            records = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise QuestionFileError(
                f"question file {path} is not a readable Parquet file ({err}); {fix}"
            ) from None
    elif path.suffix == ".csv":
        text = read_text(path, QuestionFileError, "question file", fix)
        records = [
            {
                "question": r.get("question"),
                "answer": r.get("answer"),
                "subject": r.get("subject", ""),
                "choices": [r[k] for k in LETTERS if r.get(k)],
            }
            for r in csv.DictReader(io.StringIO(text))
        ]
    else:
        records = [
            record for _, record in read_jsonl(path, QuestionFileError, "question file", fix)
        ]
    questions = [_normalize(r, f"{path} row {n}") for n, r in enumerate(records, start=1)]
    if not questions:
        raise QuestionFileError(f"question file {path} holds no questions")
    return questions


def render(question: dict, hint_letter: str | None, tokenizer=None) -> str:
    """The prompt the target answers; in the tokenizer's chat template when it has one, as the
    paper asks chat models (SmolLM2-Instruct answers at chance without it, and ignores hints)."""
    lines = [f"Question: {question['question']}"]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(question["choices"])]
    if hint_letter:
        lines.append(HINT.format(hint_letter))
    body = "\n".join(lines)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
        )
        return f"{chat}Answer:"
    return f"{body}\nAnswer:"


@torch.no_grad()
def _letter_probs(model, tokenizer, prompts: list[str], num_choices: int) -> torch.Tensor:
    """Float[Tensor, "prompt choice"]: the target's distribution over the choice letters."""
    letter_ids = [
        tokenizer(" " + LETTERS[i], add_special_tokens=False)["input_ids"][-1]
        for i in range(num_choices)
    ]
    batch = padded_batch(tokenizer, prompts, model.device)
    logits = model(**batch, logits_to_keep=1).logits[:, -1, :].float().cpu()
    return torch.softmax(logits[:, letter_ids], dim=-1)


def choice_items(config) -> list[dict]:
    """Each question with two hints: toward the correct letter and toward one wrong letter."""
    rng = random.Random(config.seed)
    questions = read_questions(config.generate.questions)
    if config.generate.max_items:
        questions = questions[: config.generate.max_items]
    items = []
    for q in questions:
        wrong = [LETTERS[i] for i in range(len(q["choices"])) if i != q["answer"]]
        hints = [LETTERS[q["answer"]], rng.choice(wrong)]
        items.append(
            {
                **q,
                "form": "choice",
                "hints": hints,
                "groups": {
                    "question": stable_id(q["question"]),
                    "entity": q["entity"],
                    "subject": q["subject"] or "none",
                },
            }
        )
    return items


def choice_rows(item: dict, context: GroundTruthContext) -> list[dict]:
    """The target's letter without the hint and with each hint, as corpus rows."""
    question = item
    letters = LETTERS[: len(question["choices"])]
    tokenizer = context.tokenizer
    prompts = [render(question, None, tokenizer)] + [
        render(question, letter, tokenizer) for letter in item["hints"]
    ]
    longest = max(len(context.tokenizer(p)["input_ids"]) for p in prompts)
    if longest > context.options.max_tokens:
        raise Rejected(
            f"question has {longest} tokens, over generate.max_tokens={context.options.max_tokens}"
        )
    probs = _letter_probs(context.model, context.tokenizer, prompts, len(letters))
    if not torch.isfinite(probs).all():
        raise Rejected("non-finite logits")
    without = letters[int(probs[0].argmax())]
    question_id = stable_id(question["question"], *question["choices"])
    rows = []
    for index, (hint_letter, hinted) in enumerate(zip(item["hints"], probs[1:])):
        with_hint = letters[int(hinted.argmax())]
        rows.append(
            {
                "record_id": stable_id(context.target_name, "hint", question_id, hint_letter),
                "question_id": question_id,
                "target_model": context.target_name,
                "form": "choice",
                "subject": question["subject"],
                "entity": question["entity"],
                "question": question["question"],
                "choices": question["choices"],
                "outputs": list(letters),
                "correct": letters[question["answer"]],
                "hint_answer": hint_letter,
                "prompt": prompts[1 + index],
                "answer_with_hint": with_hint,
                "answer_without_hint": without,
                "prob_hint_answer": float(hinted[letters.index(hint_letter)]),
                "prob_hint_answer_without": float(probs[0][letters.index(hint_letter)]),
                "changed": with_hint != without,
                "new_top1": without,
            }
        )
    return rows
