"""Input-ablation ground truth, answer formats and metrics, checked against direct computations."""

import pytest
import torch

from selfexplain.evaluate.baselines import majority_answer
from selfexplain.evaluate.metrics import score_change_predictions
from selfexplain.tasks.ablation import ablate_prompt, format_answer, format_query, parse_answer


def _naive(model, tokenizer, prompt):
    """One forward per removed token: the obvious loop the batched version must agree with."""
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        orig = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        out = []
        for i in range(len(ids)):
            kept = ids[:i] + ids[i + 1:]
            out.append(torch.softmax(model(input_ids=torch.tensor([kept])).logits[0, -1], -1))
    return orig, out


def test_batched_ablation_matches_one_forward_per_token(tiny_llama):
    model, tokenizer = tiny_llama
    prompt = "The capital of France is"
    rows = ablate_prompt(model, tokenizer, prompt, "tiny-llama")
    orig, naive = _naive(model, tokenizer, prompt)
    assert [r["token_index"] for r in rows] == list(range(len(naive)))
    assert "".join(r["token"] for r in rows) == prompt
    for row, probs in zip(rows, naive):
        assert row["orig_top1_id"] == int(orig.argmax())
        assert row["new_top1_id"] == int(probs.argmax())
        assert row["new_prob_of_orig"] == pytest.approx(float(probs[row["orig_top1_id"]]), abs=1e-5)
        assert row["prob_change"] == pytest.approx(float(probs[row["orig_top1_id"]] - orig.max()), abs=1e-5)
        assert row["changed"] == (row["new_top1_id"] != row["orig_top1_id"])
    assert len({r["record_id"] for r in rows}) == len(rows)


def test_single_token_prompt_gives_no_rows(tiny_llama):
    model, tokenizer = tiny_llama
    assert ablate_prompt(model, tokenizer, "The", "tiny-llama") == []


def test_answers_round_trip_through_the_parser():
    base = {"prompt": "The capital of France is", "token": " France", "token_index": 3, "new_top1": " the"}
    assert parse_answer(format_answer({**base, "changed": False})) == (False, None)
    assert parse_answer(format_answer({**base, "changed": True})) == (True, "the")
    assert parse_answer("  banana split") == (None, None)
    assert "France" in format_query(base) and "token 3" in format_query(base)


def test_metrics_on_hand_made_cases():
    truth_changed = [True, True, False, False]
    truth_tokens = [" Paris", " Rome", " x", " y"]
    perfect = [(True, "Paris"), (True, "Rome"), (False, None), (False, None)]
    scores = score_change_predictions(perfect, truth_changed, truth_tokens)
    assert scores["accuracy"] == scores["balanced_accuracy"] == scores["exact_match"] == 1.0

    always_unchanged = [(False, None)] * 4
    scores = score_change_predictions(always_unchanged, truth_changed, truth_tokens)
    assert scores["accuracy"] == 0.5 and scores["balanced_accuracy"] == 0.5 and scores["new_token_exact"] == 0.0

    right_class_wrong_token = [(True, "London"), (True, "Rome"), (None, None), (False, None)]
    scores = score_change_predictions(right_class_wrong_token, truth_changed, truth_tokens)
    assert scores["accuracy"] == 0.75
    assert scores["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["new_token_exact"] == 0.5
    assert scores["exact_match"] == 0.5
    assert scores["parse_rate"] == 0.75


def test_majority_baseline():
    rows = [{"changed": True, "new_top1": " a"}, {"changed": True, "new_top1": " a"},
            {"changed": True, "new_top1": " b"}, {"changed": False, "new_top1": " c"}]
    assert majority_answer(rows) == (True, "a")
    assert majority_answer(rows[2:]) == (False, None)
