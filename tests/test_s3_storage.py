"""Runs on object storage: corpus, checkpoints, export and results on a real S3-compatible
server."""

import pyarrow.parquet as pq
import pytest

from selfexplain.config import load_config
from selfexplain.corpus.io import read_corpus, read_manifest
from selfexplain.pipeline import run_all
from selfexplain.storage import Location
from selfexplain.train.trainer import train


def test_pipeline_round_trip_on_s3(ray_cluster, s3_server):
    # checkpoints kept after the run, so that the restore from S3 below has one to restore
    config = load_config(
        "tiny",
        [
            f"output_dir={s3_server}/runs",
            "name=s3",
            "generate.max_items=8",
            "evaluate.max_examples=8",
            "train.keep_finished_checkpoints=true",
        ],
    )
    outcome = run_all(config)
    assert outcome.results["s3"]["trained explainer"]["n"] == 8

    run = Location(f"{s3_server}/runs/s3")
    assert not run.is_local
    corpus = run / "corpus"
    manifest = read_manifest(corpus)
    table = read_corpus(corpus)
    assert table.num_rows == manifest["rows"] > 0
    first = corpus / manifest["shards"][0]["file"]
    assert pq.read_schema(first.path, filesystem=first.fs).names == table.schema.names
    for name in (
        "results.json",
        "results.md",
        "predictions.parquet",
        "train_metrics.json",
        "explainer/config.json",
        "explainer/model.safetensors",
        "explainer/README.md",
    ):
        assert (run / name).exists(), name
    assert (run / "results.json").read_json()["results"]["majority baseline"]["n"] == 8
    assert (run / "ray_train" / "train").exists()  # Ray Train's checkpoints live on S3 too

    # Restore from the S3 checkpoint: with the export gone, a rerun loads the last epoch's
    # DeepSpeed checkpoint from S3 and exports again instead of training from scratch.
    before = (run / "train_metrics.json").read_json()
    (run / "explainer").delete_dir()
    train(config)
    after = (run / "train_metrics.json").read_json()
    assert (run / "explainer" / "README.md").exists()
    assert after["step"] == before["step"]
    assert after["loss_curve"] == pytest.approx(before["loss_curve"])
