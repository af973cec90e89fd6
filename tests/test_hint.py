"""Hint removal: fact completions and questions in the MMLU layout, the target's answer with and
without a hint."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfexplain.config import load_config
from selfexplain.tasks import GroundTruthContext, Rejected
from selfexplain.tasks.change_answers import ChangeAnswer, display_token
from selfexplain.tasks.hint import HINT_TASK
from selfexplain.tasks.hint_facts import first_token
from selfexplain.tasks.hint_questions import (
    QuestionFileError,
    _letter_probs,
    read_questions,
    render,
)

QUESTION = {
    "question": "What is 2 plus 2?",
    "choices": ["3", "4", "5", "6"],
    "answer": 1,
    "subject": "math",
}


def test_question_files_in_every_mmlu_layout_read_the_same(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps(dict(QUESTION, answer="B")) + "\n")
    pq.write_table(pa.Table.from_pylist([QUESTION]), tmp_path / "q.parquet")
    with (tmp_path / "q.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "A", "B", "C", "D", "answer", "subject"])
        writer.writerow([QUESTION["question"], *QUESTION["choices"], "B", "math"])
    for name in ("q.jsonl", "q.parquet", "q.csv"):  # no entity given: the question is its own
        assert read_questions(str(tmp_path / name)) == [
            dict(QUESTION, entity=QUESTION["question"])
        ], name
    builtin = read_questions("builtin-choice")
    assert len(builtin) >= 500  # hand-written and templated
    assert {q["entity"] for q in builtin} >= {"Peru", "Texas"}


def test_bad_question_rows_name_the_row_and_the_fix(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps(dict(QUESTION, answer=7)) + "\n")
    with pytest.raises(QuestionFileError, match="row 1: 'answer' must be a choice index or letter"):
        read_questions(str(tmp_path / "bad.jsonl"))
    with pytest.raises(QuestionFileError, match="not found"):
        read_questions(str(tmp_path / "missing.csv"))


def test_hint_rows_match_the_targets_letter_choice_with_and_without_the_hint(tiny_llama):
    model, tokenizer = tiny_llama
    config = load_config(
        "tiny", ["task=hint", "generate.max_items=10", "generate.questions=builtin-choice"]
    )
    context = GroundTruthContext(model, tokenizer, "tiny-llama", config.generate, [])
    items = HINT_TASK.work_items(config, tokenizer)
    assert all(len(item["hints"]) == 2 and item["hints"][0] != item["hints"][1] for item in items)
    for item in items:
        rows = HINT_TASK.ground_truth(item, context)
        without = _letter_probs(
            model, tokenizer, [render(item, None, tokenizer)], len(item["choices"])
        )[0]
        for row in rows:
            with_hint = _letter_probs(model, tokenizer, [row["prompt"]], len(item["choices"]))[0]
            assert row["answer_with_hint"] == "ABCD"[int(with_hint.argmax())]
            assert row["answer_without_hint"] == "ABCD"[int(without.argmax())]
            assert row["changed"] == (row["answer_with_hint"] != row["answer_without_hint"])
            assert f"the answer is {row['hint_answer']}." in row["prompt"]
            # the answer names the output after removal (= the hinted answer when unchanged)
            parsed = HINT_TASK.parse_answer(HINT_TASK.format_answer(row))
            assert parsed == ChangeAnswer(row["changed"], row["answer_without_hint"])
            # the query must not show the target's hinted answer: "changed" would be readable off it
            assert f"{row['prompt']} {row['answer_with_hint']}" not in HINT_TASK.format_query(row)
            assert "If the hint were removed" in HINT_TASK.format_query(row)


def test_fact_completions_with_a_hint_record_the_targets_free_top1(tiny_llama):
    model, tokenizer = tiny_llama
    config = load_config(
        "tiny",
        [
            "task=hint",
            "generate.max_items=6",
            "generate.hint_filter=false",
            "generate.hints_per_fact=3",
        ],
    )
    context = GroundTruthContext(model, tokenizer, "tiny-llama", config.generate, [])
    items = HINT_TASK.work_items(config, tokenizer)
    assert len(items) == 6 and all(item["form"] == "completion" for item in items)
    item = items[0]
    rows = HINT_TASK.ground_truth(item, context)
    assert len(rows) == 3 and len({r["hint_answer"] for r in rows}) == 3
    without = _top1(model, tokenizer, item["question"])
    for row in rows:
        assert row["prompt"].endswith(item["question"]) and row["hint_answer"] in row["prompt"]
        assert row["answer_without_hint"] == without and row["answer_with_hint"] == _top1(
            model, tokenizer, row["prompt"]
        )
        assert row["changed"] == (row["answer_with_hint"] != row["answer_without_hint"])
        # the candidate outputs: the fact's answer and the hinted one, as first tokens
        assert row["outputs"] == [
            display_token(tokenizer.decode([first_token(tokenizer, a)]))
            for a in (item["answer"], row["hint_answer"])
        ]
        assert row["answer_with_hint"] not in HINT_TASK.format_query(row).split(row["prompt"])[1]
    # with the filter, a random model knows no fact: every item is rejected, with the reason
    filtered = GroundTruthContext(
        model,
        tokenizer,
        "tiny-llama",
        load_config("tiny", ["task=hint", "generate.hint_filter=true"]).generate,
        [],
    )
    with pytest.raises(Rejected, match="a fact the target does not know"):
        HINT_TASK.ground_truth(item, filtered)


def _top1(model, tokenizer, prompt: str) -> str:
    import torch

    with torch.no_grad():
        logits = model(**tokenizer(prompt, return_tensors="pt")).logits[0, -1]
    return display_token(tokenizer.decode([int(logits.argmax())]))
