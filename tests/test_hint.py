"""Hint removal: questions in the MMLU layout, the target's answer with and without a hint."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from selfexplain.config import load_config
from selfexplain.tasks import GroundTruthContext
from selfexplain.tasks.change_answers import ChangeAnswer
from selfexplain.tasks.hint import HINT_TASK, QuestionFileError, _letter_probs, read_questions, render

QUESTION = {"question": "What is 2 plus 2?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "math"}


def test_question_files_in_every_mmlu_layout_read_the_same(tmp_path):
    (tmp_path / "q.jsonl").write_text(json.dumps(dict(QUESTION, answer="B")) + "\n")
    pq.write_table(pa.Table.from_pylist([QUESTION]), tmp_path / "q.parquet")
    with (tmp_path / "q.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "A", "B", "C", "D", "answer", "subject"])
        writer.writerow([QUESTION["question"], *QUESTION["choices"], "B", "math"])
    for name in ("q.jsonl", "q.parquet", "q.csv"):  # no entity given: the question is its own
        assert read_questions(str(tmp_path / name)) == [dict(QUESTION, entity=QUESTION["question"])], name
    builtin = read_questions("builtin")
    assert len(builtin) >= 500  # hand-written and templated (issue 13: at least 500)
    assert {q["entity"] for q in builtin} >= {"Peru", "Texas"}


def test_bad_question_rows_name_the_row_and_the_fix(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps(dict(QUESTION, answer=7)) + "\n")
    with pytest.raises(QuestionFileError, match="row 1: 'answer' must be a choice index or letter"):
        read_questions(str(tmp_path / "bad.jsonl"))
    with pytest.raises(QuestionFileError, match="not found"):
        read_questions(str(tmp_path / "missing.csv"))


def test_hint_rows_match_the_targets_letter_choice_with_and_without_the_hint(tiny_llama):
    model, tokenizer = tiny_llama
    config = load_config("tiny", ["task=hint", "generate.max_items=10"])
    context = GroundTruthContext(model, tokenizer, "tiny-llama", config.generate, [])
    items = HINT_TASK.work_items(config, tokenizer)
    assert all(len(item["hints"]) == 2 and item["hints"][0] != item["hints"][1] for item in items)
    for item in items:
        rows = HINT_TASK.ground_truth(item, context)
        without = _letter_probs(model, tokenizer, [render(item, None, tokenizer)], len(item["choices"]))[0]
        for row in rows:
            with_hint = _letter_probs(model, tokenizer, [row["prompt"]], len(item["choices"]))[0]
            assert row["answer_with_hint"] == "ABCD"[int(with_hint.argmax())]
            assert row["answer_without_hint"] == "ABCD"[int(without.argmax())]
            assert row["changed"] == (row["answer_with_hint"] != row["answer_without_hint"])
            assert f"the answer is {row['hint_letter']}." in row["prompt"]
            # the answer names the output after removal (= the hinted answer when unchanged)
            parsed = HINT_TASK.parse_answer(HINT_TASK.format_answer(row))
            assert parsed == ChangeAnswer(row["changed"], row["answer_without_hint"])
            # the query must not show the target's hinted answer: "changed" would be readable off it
            assert f"{row['prompt']} {row['answer_with_hint']}" not in HINT_TASK.format_query(row)
            assert "If the hint were removed" in HINT_TASK.format_query(row)
