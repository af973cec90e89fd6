"""Input-ablation ground truth, answer formats and metrics, checked against direct computations."""

import pytest
import torch

from selfexplain.scoring.metrics import score_change_predictions
from selfexplain.tasks import ScoringContext, get_task
from selfexplain.tasks.ablation import ABLATION, ablate_prompt
from selfexplain.tasks.change_answers import ChangeAnswer, display_token

format_query, format_answer, parse_answer = (
    ABLATION.format_query,
    ABLATION.format_answer,
    ABLATION.parse_answer,
)


def _naive(model, tokenizer, prompt):
    """One forward per removed token: the obvious loop the batched version must agree with."""
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        orig = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
        out = []
        for i in range(len(ids)):
            kept = ids[:i] + ids[i + 1 :]
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
        assert row["prob_change"] == pytest.approx(
            float(probs[row["orig_top1_id"]] - orig.max()), abs=1e-5
        )
        assert row["changed"] == (row["new_top1_id"] != row["orig_top1_id"])
    assert len({r["record_id"] for r in rows}) == len(rows)


def test_single_token_prompt_gives_no_rows(tiny_llama):
    model, tokenizer = tiny_llama
    assert ablate_prompt(model, tokenizer, "The", "tiny-llama") == []


def test_answers_take_the_papers_form_and_round_trip_through_the_parser():
    base = {
        "prompt": "The capital of France is",
        "token": " France",
        "token_index": 3,
        "orig_top1": " Paris",
    }
    unchanged = format_answer({**base, "changed": False, "new_top1": " Paris"})
    assert unchanged == " The output would remain unchanged from <<<Paris>>>."
    assert parse_answer(unchanged) == ChangeAnswer(False, "Paris")
    changed = format_answer({**base, "changed": True, "new_top1": " the"})
    assert changed == " The most likely output would change to <<<the>>>."
    assert parse_answer(changed) == ChangeAnswer(True, "the")
    assert parse_answer("  banana split") is None
    assert "France" in format_query(base) and "token 3" in format_query(base)


def test_blank_tokens_stay_distinct():
    assert {display_token(t) for t in (" ", "\n", "  ", "\t")} == {"␣", "\\n", "␣␣", "\\t"}
    assert display_token(" Paris") == "Paris"
    newline = format_answer({"changed": True, "new_top1": "\n"})
    assert (
        parse_answer(newline)
        == ChangeAnswer(True, "\\n")
        != parse_answer(format_answer({"changed": True, "new_top1": " "}))
    )


def test_paper_metrics_on_hand_made_cases():
    truth = [
        ChangeAnswer(True, "Paris"),
        ChangeAnswer(True, "Rome"),
        ChangeAnswer(False, "x"),
        ChangeAnswer(False, "y"),
    ]
    scores = score_change_predictions(truth, truth)
    assert scores["exact_match"] == scores["has_changed_f1"] == scores["content_match"] == 1.0
    assert scores["balanced_accuracy"] == 1.0

    # "unchanged" without naming the original output right is not an exact match
    unchanged_wrong_output = [ChangeAnswer(False, "z")] * 4
    scores = score_change_predictions(unchanged_wrong_output, truth)
    assert scores["exact_match"] == 0.0 and scores["content_match"] == 0.0
    assert scores["balanced_accuracy"] == 0.5
    assert scores["has_changed_f1"] == pytest.approx((0 + 2 * 2 / (2 * 2 + 2)) / 2)

    mixed = [
        ChangeAnswer(True, "London"),
        ChangeAnswer(False, "Rome"),
        None,
        ChangeAnswer(False, "y"),
    ]
    scores = score_change_predictions(mixed, truth)
    assert scores["exact_match"] == 0.25  # only the last: class and output right
    assert scores["content_match"] == 0.5  # Rome named, under the wrong class, counts here
    assert scores["balanced_accuracy"] == pytest.approx((0.5 + 0.5) / 2)
    # changed: tp 1, fp 0, fn 1 -> 2/3; unchanged: tp 1, fp 1, fn 1 (unparsed) -> 1/2
    assert scores["has_changed_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert scores["changed_exact_match"] == 0.0
    assert scores["parse_rate"] == 0.75


def test_majority_baseline_names_the_queries_own_original_output():
    rows = [
        {"changed": True, "new_top1": " a", "orig_top1": " o"},
        {"changed": True, "new_top1": " a", "orig_top1": " o"},
        {"changed": True, "new_top1": " b", "orig_top1": " o"},
        {"changed": False, "new_top1": " c", "orig_top1": " c"},
    ]
    query = {"changed": False, "new_top1": " q", "orig_top1": " q"}
    ablation = get_task("ablation")
    context = ScoringContext(seed=0, train_rows=rows, corpus=None, target_layers=2)
    assert ablation.majority_answer(rows, query, context) == ChangeAnswer(True, "a")
    assert ablation.majority_answer(rows[2:], query, context) == ChangeAnswer(False, "q")
