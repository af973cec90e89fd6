"""Evaluation metrics on hand-made cases whose answers are known."""

import math

import numpy as np
import pytest

from selfexplain.corpus.subsets import in_data_fraction, is_in_distribution_query, trains_on
from selfexplain.evaluate.report import markdown_table
from selfexplain.scoring.answers import ChangeAnswer
from selfexplain.scoring.baselines import nearest_rows
from selfexplain.scoring.embeddings import (
    detection_auroc,
    negative_contexts,
    retrieval_hits,
    similarity,
)
from selfexplain.scoring.intervals import (
    bootstrap_interval,
    mean_interval,
    paired_difference_interval,
)
from selfexplain.scoring.metrics import (
    balanced_accuracy,
    score_change_predictions,
    score_descriptions,
)
from selfexplain.tasks import ScoringContext, get_task


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_more_queries():
    rng = np.random.default_rng(0)
    small, large = rng.random(20) < 0.7, rng.random(2000) < 0.7
    low_s, high_s = mean_interval(small)
    low_l, high_l = mean_interval(large)
    assert low_s <= small.mean() <= high_s and low_l <= large.mean() <= high_l
    assert high_l - low_l < (high_s - low_s) / 4
    assert mean_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)  # no spread: a point, not an error
    assert all(math.isnan(x) for x in mean_interval([0.5]))  # one query: nothing to resample


def test_cluster_interval_does_not_shrink_when_rows_repeat_inside_groups():
    rng = np.random.default_rng(1)
    values = (rng.random(30) < 0.6).astype(float)
    groups = list(range(30))
    low, high = mean_interval(values, groups=groups)
    repeated = np.repeat(values, 10)  # every group's row 10 times: no new information
    low_r, high_r = mean_interval(repeated, groups=np.repeat(groups, 10))
    assert (high_r - low_r) == pytest.approx(high - low, rel=0.25)
    naive_low, naive_high = mean_interval(repeated)  # rows as if independent: far too narrow
    assert naive_high - naive_low < (high - low) / 2
    assert all(math.isnan(x) for x in mean_interval(values, groups=[0] * 30))  # one group


def test_paired_difference_is_narrower_than_the_two_intervals_apart():
    rng = np.random.default_rng(2)
    hard = rng.random(200) < 0.5  # some queries are hard for every system
    first = (hard & (rng.random(200) < 0.9)) | (~hard & (rng.random(200) < 0.1))
    second = first & (rng.random(200) < 0.85)
    groups = np.arange(200) // 4
    diff, low, high = paired_difference_interval(
        lambda v: float(np.mean(v)), first, second, groups=groups
    )
    assert diff == pytest.approx(first.mean() - second.mean()) and low <= diff <= high and low > 0
    a_low, a_high = mean_interval(first, groups=groups)
    assert high - low < (a_high - a_low)


def test_balanced_accuracy_interval_resamples_pairs():
    correct = np.array([True] * 10 + [False] * 10)
    changed = np.array([True] * 10 + [False] * 10)  # all changes right, all non-changes wrong
    assert balanced_accuracy(correct, changed) == 0.5
    low, high = bootstrap_interval(balanced_accuracy, correct, changed)
    assert low == high == 0.5  # pairing kept: every resample is still exactly 0.5
    truth = [ChangeAnswer(c, "a") for c in changed]
    scores = score_change_predictions([ChangeAnswer(True, "a")] * 20, truth, intervals=True)
    assert scores["balanced_accuracy_ci"] == (0.5, 0.5)
    assert scores["exact_match_ci"][0] < 0.5 < scores["exact_match_ci"][1]


def test_embedding_similarity_ranks_meaning_over_words():
    sims = similarity(["puppies and hounds", "income tax forms"], ["dogs", "dogs"])
    assert sims[0] > sims[1] + 0.2
    assert similarity(["dogs"], ["dogs"])[0] == pytest.approx(1.0, abs=1e-5)


def test_retrieval_finds_the_right_feature_among_candidates():
    references = [
        "dogs",
        "the color red",
        "counting numbers",
        "anger",
        "french food",
        "python code",
    ]
    good = [
        "puppies",
        "crimson and scarlet",
        "one two three",
        "rage and fury",
        "croissants",
        "def main():",
    ]
    assert retrieval_hits(good, references, k=5).mean() == 1.0
    shuffled = good[1:] + good[:1]  # every description names another feature
    assert retrieval_hits(shuffled, references, k=5).mean() <= 1 / 3
    assert np.isnan(retrieval_hits(good[:3], references[:3], k=5)).all()  # too few candidates


def test_detection_separates_top_contexts_from_others():
    positives = [["The dog chased the ball.", "My puppy sleeps all day."]]
    negatives = [["The invoice is overdue.", "Rain fell over the city."]]
    assert detection_auroc(["dogs"], positives, negatives)[0] == 1.0
    assert detection_auroc(["unpaid bills"], positives, negatives)[0] < 0.5
    assert np.isnan(detection_auroc(["dogs"], [[]], negatives)[0])
    drawn = negative_contexts(["f1", "f2", "f3"], [["a", "b"], ["c"], ["a", "d"]], per_query=2)
    assert set(drawn[0]) <= {"c", "d"} and "c" not in drawn[1] and not set(drawn[2]) & {"a", "d"}


def test_description_scores_carry_semantic_metrics_and_intervals():
    scores = score_descriptions(
        ["dogs", "cats", ""],
        ["dogs", "dogs", "cats"],
        {"similarity": np.array([1.0, 0.5, np.nan])},
        intervals=True,
    )
    assert scores["exact_match"] == pytest.approx(1 / 3) and scores["parse_rate"] == pytest.approx(
        2 / 3
    )
    assert scores["similarity"] == 0.75  # NaN (no answer to embed) left out of the mean
    assert scores["similarity_ci"][0] <= 0.75 <= scores["similarity_ci"][1]
    table = markdown_table({"trained": scores})
    assert "similarity (MiniLM)" in table and "[0.50, 1.00]" in table


def test_baselines_nearest_row_and_rules():
    assert nearest_rows([[1, 0], [0, 1]], [[0.1, 0.9], [5, 1]]) == [1, 0]
    # by cosine: a long row does not win by its length (a dot product would pick [30, 20])
    assert nearest_rows([[1, 0.1], [30, 20]], [[1, 0]]) == [0]
    assert nearest_rows([[1, 0.1], [30, 20]], [[1, 0]], bank_layers=[2, 5], query_layers=[5]) == [1]
    ablation, patching, hint = get_task("ablation"), get_task("patching"), get_task("hint")
    depth_30 = ScoringContext(seed=0, train_rows=[], corpus=None, target_layers=30)
    last = {
        "token_index": 4,
        "num_tokens": 5,
        "new_top1": " x",
        "orig_top1": " x",
        "changed": False,
    }
    assert ablation.rule_answer(last, depth_30) == ChangeAnswer(True, "")
    assert ablation.rule_answer({**last, "token_index": 1}, depth_30) == ChangeAnswer(False, "x")
    site = {
        "token": " France",
        "cf_token": " Italy",
        "position": 3,
        "num_tokens": 6,
        "cf_top1": " Rome",
        "orig_top1": " Paris",
        "new_top1": " Paris",
        "changed": False,
    }
    assert patching.rule_answer({**site, "layer": 2}, depth_30) == ChangeAnswer(True, "Rome")
    assert patching.rule_answer({**site, "layer": 20}, depth_30) == ChangeAnswer(False, "Paris")
    assert patching.rule_answer(
        {**site, "layer": 20, "position": 5, "token": " is", "cf_token": " is"}, depth_30
    ).changed
    # the depth is the target's, not a guess from the rows: layer 20 of 64 is early
    assert patching.rule_answer({**site, "layer": 20}, depth_30.__class__(0, [], None, 64)).changed
    assert "oracle" in patching.rule_name
    # hint, text only: "changed" when the hint names another answer than the one expected without it
    fact = {
        "form": "completion",
        "correct": "Paris",
        "outputs": ["Paris", "Berlin"],
        "hint_answer": "Berlin",
    }
    assert hint.rule_answer(fact, depth_30) == ChangeAnswer(True, "Paris")
    letters = [{"form": "choice", "answer_without_hint": "C"}] * 3 + [
        {"form": "choice", "answer_without_hint": "A"}
    ]
    by_letters = ScoringContext(seed=0, train_rows=letters, corpus=None, target_layers=30)
    question = {"form": "choice", "correct": "A", "outputs": list("ABCD"), "hint_answer": "C"}
    assert hint.rule_answer(question, by_letters) == ChangeAnswer(
        False, "C"
    )  # the constant-letter rule
    assert hint.rule_answer({**question, "hint_answer": "B"}, by_letters) == ChangeAnswer(True, "C")


def test_training_subsets_are_deterministic_and_nested():
    ids = [f"row{i}" for i in range(4000)]
    held = [i for i in ids if is_in_distribution_query(i, 0.1, seed=0)]
    assert 300 < len(held) < 500 and held == [
        i for i in ids if is_in_distribution_query(i, 0.1, seed=0)
    ]
    quarter = {i for i in ids if in_data_fraction(i, 0.25, 0)}
    half = {i for i in ids if in_data_fraction(i, 0.5, 0)}
    assert quarter < half and 800 < len(quarter) < 1200
    trained = [i for i in ids if trains_on(i, 0.1, 1.0, 0)]
    assert set(trained).isdisjoint(held) and len(trained) + len(held) == len(ids)


def test_in_distribution_queries_by_group_keep_every_layer_of_a_feature_out():
    """Drawn by row, a concept trained on at one layer is asked at another (its description
    already learnt); drawn by group, all of a feature's layers are kept out together."""
    import pyarrow as pa

    from selfexplain.corpus.subsets import in_distribution_keys, rows_trained_on
    from selfexplain.tasks import get_task

    rows = [
        {"record_id": f"c{c}-l{layer}", "feature_id": f"concept:c{c}", "split": "train"}
        for c in range(300)
        for layer in (3, 8, 13)
    ]
    table = pa.Table.from_pylist(rows)
    features = get_task("features")

    def concepts_split(by: str) -> int:
        keys = in_distribution_keys(features, table, by)
        trained = set(rows_trained_on(table, 0.2, 1.0, 0, keys)["record_id"].to_pylist())
        kept_out = {r["feature_id"] for r in rows if r["record_id"] not in trained}
        trained_on = {r["feature_id"] for r in rows if r["record_id"] in trained}
        return len(kept_out & trained_on)

    assert concepts_split("row") > 50  # most kept-out concepts are trained on at another layer
    assert concepts_split("group") == 0
    assert in_distribution_keys(features, table, "row") is None  # the row ids
