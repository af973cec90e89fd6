"""Task mixing: one explainer trained on a feature corpus and an ablation corpus together, in
configured ratios, through the real pipeline (Ray Data -> Ray Train + DeepSpeed, 2 ranks -> export
-> evaluation on each corpus -> `selfexplain explain` answering both kinds of query)."""

import json
from collections import Counter

import numpy as np
import pytest

from selfexplain.cli import main
from selfexplain.config import ConfigError
from selfexplain.explain import Explainer, QueryError
from selfexplain.jobs.generate import generate
from selfexplain.models.loading import resolve_model_dir
from selfexplain.pipeline import run_all
from selfexplain.train.mixture import corpus_sources, repeat_factors
from selfexplain.train.order import epoch_order
from selfexplain.train.trainer import (
    encoded_examples,
    examples_with_role,
    training_examples,
    vector_interface,
)


def test_repeat_factors_give_each_corpus_its_share():
    factors = repeat_factors({"a": 100, "b": 50}, {"a": 1.0, "b": 3.0})
    assert factors == pytest.approx({"a": 150 * 0.25 / 100, "b": 150 * 0.75 / 50})
    assert repeat_factors({"a": 10, "b": 30}, {"a": 1, "b": 3}) == pytest.approx(
        {"a": 1.0, "b": 1.0}
    )


def test_an_explainer_trains_on_a_feature_and_an_ablation_corpus_in_one_run(
    ray_cluster, tiny_config
):
    features = tiny_config(
        "name=mix-features",
        "task=features",
        "generate.max_items=30",
        "generate.layers=[1,3]",
        "generate.min_probe_accuracy=0.7",
    )
    ablation = tiny_config("name=mix-ablation", "generate.max_items=12")
    generate(features)
    generate(ablation)
    mixed = tiny_config(
        "name=mixed",
        "train.mix={mix-features: 3, mix-ablation: 1}",
        "train.epochs=2",
        "evaluate.max_examples=12",
        "evaluate.untrained_baseline=false",
    )

    # the epoch: about 3 feature rows to each ablation row, interleaved rather than in blocks
    sources = corpus_sources(mixed)
    assert {s.run: s.task for s in sources} == {
        "mix-features": "features",
        "mix-ablation": "ablation",
    }
    interface = vector_interface(mixed, sources, resolve_model_dir("tiny-llama"))
    encoded = encoded_examples(mixed, sources, "tiny-llama", vector_width=interface.d_target)
    trained = examples_with_role(encoded, "train")
    rows = training_examples(mixed, sources, trained).to_dict("records")
    first_epoch = epoch_order(
        [r["record_id"] for r in rows], [r["copy"] for r in rows], mixed.seed, epoch=0
    )
    order = [rows[i]["source"] for i in first_epoch]
    share = Counter(order)["mix-features"] / len(order)
    assert 0.65 < share < 0.85
    assert sum(a != b for a, b in zip(order, order[1:])) > len(order) // 8
    assert len(order) == pytest.approx(len(trained), rel=0.15)

    outcome = run_all(mixed)
    metrics = json.loads((mixed.run_dir.local_path / "train_metrics.json").read_text())
    assert metrics["examples"] == len(order)
    assert {"val_held_out.mix-features", "val_held_out.mix-ablation"} <= set(metrics)
    assert metrics["loss_curve"][-1] < metrics["loss_curve"][0]
    info = json.loads((mixed.run_dir.local_path / "explainer" / "selfexplain.json").read_text())
    assert info["tasks"] == ["ablation", "features"] and "task" not in info

    # scored on each corpus's own held-out queries, with that task's metrics and baselines
    assert set(outcome.results) == {"mix-features", "mix-ablation"}
    assert "similarity" in outcome.results["mix-features"]["trained explainer"]
    assert "balanced_accuracy" in outcome.results["mix-ablation"]["trained explainer"]
    for run in ("mix-features", "mix-ablation"):
        assert (mixed.run_dir.local_path / "evaluate" / run / "results.json").is_file()

    # one explainer answers both kinds of query; the task comes from the query's fields
    explainer = Explainer(mixed.run_dir.local_path / "explainer")
    vector = np.random.default_rng(0).normal(size=64).astype(np.float32)
    answers = explainer.ask(
        [{"vector": vector, "layer": 3}, {"prompt": "The cat sat on the mat", "token_index": 2}]
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    with pytest.raises(QueryError, match="fit none of this explainer's tasks"):
        explainer.ask([{"prompt": "only a prompt"}])
    export = str(mixed.run_dir.local_path / "explainer")
    assert (
        main(["explain", export, "--prompt", "The cat sat on the mat", "--token-index", "2"]) == 0
    )
    assert (
        main(["explain", export, "--task", "patching", "--prompt", "a", "--token-index", "0"]) == 2
    )


def test_a_mix_names_runs_that_have_a_corpus(tiny_config):
    with pytest.raises(ConfigError, match="train.mix.*no finished corpus"):
        corpus_sources(tiny_config("name=m", "train.mix={never-generated: 1}"))
    with pytest.raises(ConfigError, match="train.mix.*positive ratios"):
        tiny_config("name=m", "train.mix={a: 0}")
    with pytest.raises(ConfigError, match="leave corpus_from empty"):
        tiny_config("name=m", "train.mix={a: 1}", "corpus_from=b")
