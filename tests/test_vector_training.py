"""Training on vector tasks through the real pipeline (Ray Data -> Ray Train + DeepSpeed -> export
-> evaluate): a self-explainer on patching, and another model with a learned projection on
features."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from selfexplain.cli import main
from selfexplain.evaluate.evaluate import evaluate
from selfexplain.explain import Explainer, QueryError
from selfexplain.explainer.export import INTERFACE, PROJECTION, load_explainer
from selfexplain.models.loading import load_tokenizer, resolve_model_dir
from selfexplain.pipeline import run_all
from selfexplain.tasks.features import SAME_FAMILY
from selfexplain.tasks.patching import templated_pairs


def test_other_explainer_learns_a_projection_and_exports_it(
    ray_cluster, tiny_config, tmp_path, capsys
):
    config = tiny_config(
        "name=other",
        "task=features",
        "generate.max_items=30",
        "generate.min_probe_accuracy=0.7",
        "train.explainer=tiny-llama-wide",
        "train.projection_init=lstsq",  # fitted on the tokens the two vocabularies share
        "train.epochs=2",
        "evaluate.max_examples=16",
    )
    outcome = run_all(config)
    export = config.run_dir.local_path / "explainer"
    interface = json.loads((export / INTERFACE).read_text())
    assert interface["projected"] and interface["d_target"] == 64 and interface["d_explainer"] == 96
    assert interface["projection_init"] == "lstsq" and interface["reference_norm"] > 0
    assert (export / PROJECTION).is_file()
    assert AutoModelForCausalLM.from_pretrained(export).config.hidden_size == 96
    model, _ = load_explainer(export)
    untrained = torch.eye(96, 64)  # what training would leave if the projection never moved
    assert model.projection.weight.shape == (len(interface["layers"]), 96, 64)
    assert not torch.allclose(model.projection.weight[0], untrained)
    results = outcome.results["other"]
    assert set(results) == {
        "nearest-neighbour baseline",
        "trained explainer",
        "untrained explainer",
        SAME_FAMILY,
    }
    assert all(0.0 <= r["word_f1"] <= 1.0 for r in results.values())
    losses = json.loads((config.run_dir.local_path / "train_metrics.json").read_text())[
        "loss_curve"
    ]
    assert losses[-1] < losses[0]

    # ask it about a vector from a file, from the command line: the answer the Python API gives
    # (what a barely trained tiny explainer says, often nothing, is not the point)
    direction = tmp_path / "direction.npy"
    np.save(direction, np.random.default_rng(0).normal(size=64).astype(np.float32))
    layer = interface["layers"][0]
    assert (
        main(
            [
                "explain",
                str(export),
                "--vector",
                str(direction),
                "--layer",
                str(layer),
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    explainer = Explainer(export)
    (expected,) = explainer.ask([{"vector": str(direction), "layer": layer}], max_new_tokens=8)
    assert capsys.readouterr().out == expected + "\n"
    # the same vector as a list is the same query (the phrasing is keyed on the vector's values)
    as_list = {"vector": np.load(direction).tolist(), "layer": layer}
    assert explainer.ask([as_list], max_new_tokens=8) == [expected]


def test_self_explainer_trains_on_patching_vectors(ray_cluster, tiny_config, tmp_path):
    tokenizer = load_tokenizer(resolve_model_dir("tiny-llama"))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "\n".join(
            json.dumps({k: v for k, v in p.items() if k not in ("answer", "cf_answer")})
            for p in templated_pairs(tokenizer, seed=0)[:40]
        )
    )
    # held out by entity, a pair needs both entities on one side: half the entities held out
    config = tiny_config(
        "name=selfpatch",
        "task=patching",
        f"generate.pairs={pairs}",
        "generate.layers=[1,3]",
        "generate.held_out_fraction=0.5",
        "generate.max_items=0",
        "train.epochs=1",
        "train.num_workers=1",
        "evaluate.max_examples=16",
        "evaluate.untrained_baseline=false",
    )
    outcome = run_all(config)
    interface = json.loads((config.run_dir.local_path / "explainer" / INTERFACE).read_text())
    assert not interface["projected"] and interface["layers"] == [
        1,
        3,
    ]  # same model: no projection needed
    assert set(outcome.results["selfpatch"]) == {
        "majority baseline",
        "nearest-neighbour baseline",
        "oracle-informed rule (reads the counterfactual)",
        "trained explainer",
        "trained explainer (candidate choice)",
    }
    assert outcome.results["selfpatch"]["trained explainer"]["n"] == 16

    # the explainer answers a new patching query; the vector is computed from the target on the fly
    explainer = Explainer(config.run_dir.local_path / "explainer")
    pair = templated_pairs(tokenizer, seed=1)[0]
    (answer,) = explainer.ask(
        [
            {
                "prompt": pair["prompt"],
                "counterfactual": pair["counterfactual"],
                "layer": 3,
                "position": 1,
            }
        ]
    )
    assert isinstance(answer, str)
    with pytest.raises(QueryError, match="missing position"):
        explainer.ask([{"prompt": "a", "counterfactual": "b", "layer": 1}])


def test_evaluate_scores_a_concept_explainer_on_an_imported_sae_feature_set(
    ray_cluster, tiny_config, tmp_path
):
    """Train on concept directions, then score that explainer on a SAELens SAE with Neuronpedia
    descriptions, generated as a corpus of its own (``evaluate.explainer`` names the export)."""
    from selfexplain.features.saelens import write_saelens
    from selfexplain.jobs.generate import generate

    concepts = tiny_config(
        "name=concepts",
        "task=features",
        "generate.max_items=24",
        "generate.layers=[2]",
        "generate.min_probe_accuracy=0.7",
        "train.num_workers=1",
        "evaluate.untrained_baseline=false",
    )
    run_all(concepts)
    write_saelens(
        tmp_path / "sae",
        torch.randn(12, 64),
        layer=2,
        model_name="tiny-llama",
        neuronpedia_id="tiny-llama/2-res-test",
    )
    names = [
        "dogs",
        "rivers",
        "anger",
        "numbers",
        "bread",
        "doctors",
        "football",
        "python code",
        "red",
        "music",
        "rain",
        "kings",
    ]
    (tmp_path / "np.jsonl").write_text(
        "\n".join(
            json.dumps({"index": str(i), "description": name}) for i, name in enumerate(names)
        )
    )
    sae = tiny_config(
        "name=sae",
        "task=features",
        f"generate.features={tmp_path / 'sae'}",
        f"generate.explanations={tmp_path / 'np.jsonl'}",
        "generate.held_out_fraction=0.5",
        f"evaluate.explainer={concepts.run_dir / 'explainer'}",
        "evaluate.untrained_baseline=false",
    )
    generate(sae)
    results = evaluate(sae)
    assert set(results) == {"nearest-neighbour baseline", "trained explainer", SAME_FAMILY}
    assert all(
        0.0 <= r["similarity"] <= 1.0 and 0.0 <= r["retrieval_accuracy"] <= 1.0
        for r in results.values()
    )
    saved = json.loads((sae.run_dir / "results.json").read_text())
    assert saved["explainer"] == str(concepts.run_dir / "explainer")
    with pytest.raises(ValueError, match="trained for features, not 'ablation'"):
        evaluate(
            tiny_config(
                "name=sae", "task=ablation", f"evaluate.explainer={concepts.run_dir / 'explainer'}"
            )
        )
