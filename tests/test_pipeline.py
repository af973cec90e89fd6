"""The pipeline on a real local Ray cluster with real DeepSpeed: generate, resume, train,
evaluate."""

import json
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM

from selfexplain.cli import main
from selfexplain.corpus.io import read_corpus, read_manifest, shard_name
from selfexplain.tasks.ablation import ABLATION_SCHEMA, ablate_prompt
from tests.listeners import reachable_from_network, watched_listeners


def test_generate_job_matches_direct_computation_and_resumes(ray_cluster, tiny_config, tiny_llama):
    from selfexplain.jobs.generate import generate

    config = tiny_config(
        "name=gen",
        "generate.max_items=40",
        "generate.items_per_shard=12",
        "generate.held_out_by=family",
    )
    corpus = generate(config)
    corpus_dir = corpus.local_path
    manifest = read_manifest(corpus)
    assert len(manifest["shards"]) == 4
    for shard in manifest[
        "shards"
    ]:  # any Parquet reader sees the declared schema, no selfexplain needed
        schema = pq.read_schema(corpus_dir / shard["file"]).remove_metadata()
        assert schema.equals(ABLATION_SCHEMA.remove_metadata())

    table = read_corpus(corpus).to_pandas()
    model, tokenizer = tiny_llama
    direct = pd.DataFrame(
        [
            row
            for p in table.prompt.unique()
            for row in ablate_prompt(model, tokenizer, p, "tiny-llama")
        ]
    )
    merged = table.merge(direct, on="record_id", suffixes=("", "_direct"))
    assert len(merged) == len(table) == len(direct) == manifest["rows"]
    assert (merged.new_top1_id == merged.new_top1_id_direct).all()
    assert (merged.changed == merged.changed_direct).all()
    assert (merged.prob_change - merged.prob_change_direct).abs().max() < 1e-5
    # held out by template family: no family (so no prompt) is in both splits
    assert table.groupby("family").split.nunique().max() == 1
    assert table.groupby("prompt").split.nunique().max() == 1
    assert set(table.split) == {"train", "test"}

    # A rerun redoes only the missing shard, leaves the others untouched.
    mtimes = {s["file"]: os.stat(corpus_dir / s["file"]).st_mtime_ns for s in manifest["shards"]}
    (corpus_dir / shard_name(2)).unlink()
    generate(config)
    after = {
        s["file"]: os.stat(corpus_dir / s["file"]).st_mtime_ns
        for s in read_manifest(corpus)["shards"]
    }
    assert {f for f in after if after[f] != mtimes[f]} == {shard_name(2)}
    assert read_manifest(corpus)["rows"] == manifest["rows"]
    assert not [p for p in corpus_dir.iterdir() if p.name.startswith(".")]


def test_run_end_to_end_on_tiny_llama(ray_cluster, tmp_path, capsys):
    runs = tmp_path / "runs"
    # select_best: the exported weights are the validation's of lowest in-distribution loss
    run_tiny = ["run", "tiny", f"output_dir={runs}", "train.select_best=true"]
    with watched_listeners() as listeners:
        assert main(run_tiny) == 0
    # nothing of the run, training's rendezvous store included, listened beyond loopback
    assert listeners and not reachable_from_network(listeners), listeners
    out, err = capsys.readouterr()
    for name in ("majority baseline", "trained explainer", "untrained explainer", "balanced acc."):
        assert name in out
    # the workers' own lines reach the console; Ray Train's INFO lines stay in its session folder
    assert "validation: val_held_out" in out + err
    # and the validation line says what selection made of it
    assert "(lowest in-distribution loss so far: exported)" in out + err
    assert "Requesting resources" not in out + err and "worker group" not in out + err

    run_dir = runs / "tiny"
    results = json.loads((run_dir / "results.json").read_text())["results"]
    assert results["trained explainer"]["n"] == 32
    assert 0.0 <= results["trained explainer"]["balanced_accuracy"] <= 1.0
    assert results["majority baseline"]["balanced_accuracy"] == 0.5
    # every explainer is scored twice: greedy (the headline) and by choosing among one fixed,
    # label-free candidate set (well-formed answers: the untrained explainer is scored, not left at
    # 0)
    assert {
        "trained explainer",
        "untrained explainer",
        "trained explainer (candidate choice)",
    } <= set(results)
    assert results["untrained explainer (candidate choice)"]["parse_rate"] == 1.0
    assert {"exact_match", "has_changed_f1", "content_match"} <= set(results["trained explainer"])
    assert (
        results["trained explainer"]["groups"] < results["trained explainer"]["n"]
    )  # units: prompt families
    train_metrics = json.loads((run_dir / "train_metrics.json").read_text())
    curve = train_metrics["loss_curve"]
    assert curve[-1] < curve[0]  # two DeepSpeed ranks over gloo actually trained the explainer
    # validated at the epoch's end on both query sets (never trained on), the loss below the start
    (validated,) = train_metrics["validation_curve"]
    assert validated["step"] == train_metrics["step"]
    assert (
        0 < validated["val_held_out"] < curve[0] and 0 < validated["val_in_distribution"] < curve[0]
    )
    # rank 0 logged the same curve to TensorBoard, readable offline
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx(curve, rel=1e-5)
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert (predictions.query_set == "held-out").sum() == 32 and (
        predictions.query_set == "in-distribution"
    ).sum() > 0

    # The export is a plain HF directory, and differs from the untrained model.
    trained = AutoModelForCausalLM.from_pretrained(run_dir / "explainer")
    from selfexplain.models import load_model

    base, _ = load_model("tiny-llama")
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))

    # The finished run's checkpoints are gone (the export replaces them); its training plan stays.
    assert (
        not (run_dir / "ray_train" / "train").exists()
        and (run_dir / "ray_train" / "plan.json").exists()
    )

    # A rerun reuses every finished stage.
    mtime = (run_dir / "explainer" / "model.safetensors").stat().st_mtime_ns
    assert main(run_tiny) == 0
    assert (run_dir / "explainer" / "model.safetensors").stat().st_mtime_ns == mtime

    # `selfexplain explain` answers from the export, in the task's answer form.
    capsys.readouterr()
    assert (
        main(
            [
                "explain",
                str(run_dir / "explainer"),
                "--prompt",
                "The capital of France is",
                "--token-index",
                "2",
            ]
        )
        == 0
    )
    answer = capsys.readouterr().out.strip()
    assert answer and "\n" not in answer
    assert main(["explain", str(run_dir / "explainer"), "--prompt", "x"]) == 2
    assert "needs prompt, token_index; missing token_index" in capsys.readouterr().err
