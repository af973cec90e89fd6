"""Training to convergence: validation every few steps, the export taken at the step of lowest
in-distribution loss, and a stop after ``train.patience`` validations without a new low. The
same run trains under bf16 autocast with gradient checkpointing on two ranks."""

import json

import pytest
from safetensors.torch import load_file

from selfexplain.jobs.generate import generate
from selfexplain.train.trainer import train


def test_training_stops_at_convergence_and_exports_the_best_step(ray_cluster, tiny_config):
    config = tiny_config(
        "name=converge",
        "generate.max_items=8",
        "train.epochs=20",  # a budget, not the run's length
        "train.learning_rate=0.5",  # so the in-distribution loss turns up within a few steps
        "train.warmup_steps=0",
        "train.lr_schedule=constant",
        "train.select_best=true",
        "train.validate_every=2",
        "train.patience=2",
        "train.precision=bf16",
        "train.gradient_checkpointing=true",
    )
    generate(config)
    export = train(config)
    metrics = json.loads((config.run_dir / "train_metrics.json").read_text())
    curve = metrics["validation_curve"]
    in_distribution = [point["val_in_distribution"] for point in curve]
    assert metrics["stopped_early"]
    assert metrics["epoch"] < 20
    best = in_distribution.index(min(in_distribution))
    assert metrics["best_loss"] == min(in_distribution)
    assert metrics["best_step"] == curve[best]["step"]
    # the run stopped exactly `patience` validations after its best
    assert len(curve) - 1 - best == 2
    # bf16 autocast keeps fp32 master weights: the export is fp32
    weights = load_file(str(export.local_path / "model.safetensors"))
    assert {str(t.dtype) for t in weights.values()} == {"torch.float32"}


def test_a_run_that_goes_on_from_a_shorter_one_matches_one_trained_from_scratch(
    ray_cluster, tiny_config
):
    """A learning-rate sweep's last checkpoint starts its main run (selfexplain.study.warm_start).
    Whether the main run trains on past the sweep's steps or patience stops it inside them, its
    record is a from-scratch run's, and its export is labelled as its own."""
    from selfexplain.config import load_config
    from selfexplain.study.warm_start import continues
    from selfexplain.train.trainer import final_checkpoint

    recipe = (
        "generate.max_items=8",
        "train.learning_rate=0.5",  # the in-distribution loss turns up for good within a few steps
        "train.warmup_steps=0",
        "train.lr_schedule=constant",
        "train.select_best=true",
        "train.validate_every=2",
    )
    main = ("train.epochs=20", "train.patience=2")
    scratch = tiny_config("name=scratch", *recipe, *main)
    generate(scratch)
    train(scratch)
    expected = (scratch.run_dir / "train_metrics.json").read_json()
    assert expected["stopped_early"] and expected["epoch"] >= 3

    def sweep_then_main(epochs: int) -> tuple[dict, dict]:
        shared = (f"output_dir={scratch.output_dir}", "corpus_from=scratch", *recipe)
        sweep = load_config(
            "tiny",
            [
                f"name=sweep{epochs}",
                *shared,
                f"train.epochs={epochs}",
                "train.patience=0",
                "train.keep_finished_checkpoints=true",
            ],
        )
        train(sweep)
        swept = (sweep.run_dir / "train_metrics.json").read_json()
        went_on = load_config("tiny", [f"name=main{epochs}", *shared, *main])
        assert continues(sweep, went_on, swept)
        train(went_on, warm_start=final_checkpoint(sweep))
        info = (went_on.run_dir / "explainer" / "selfexplain.json").read_json()
        assert info["run"] == f"main{epochs}"
        return swept, (went_on.run_dir / "train_metrics.json").read_json()

    # the sweep ends before the stop: the main run trains on from its last step
    swept, went_on = sweep_then_main(1)
    assert went_on["resumed_from_step"] == swept["step"] and went_on["warm_started_from"]
    # the sweep trains past the stop: the main run ends where patience stopped the scratch run
    swept, stopped = sweep_then_main(expected["epoch"] + 1)
    assert swept["step"] > expected["step"] == stopped["step"]
    for record in (went_on, stopped):
        for key in ("step", "epoch", "best_step", "best_loss", "stopped_early"):
            assert record[key] == expected[key], key
        assert record["loss_curve"] == pytest.approx(expected["loss_curve"], abs=1e-5)
        assert record["validation_curve"] == [
            pytest.approx(point, abs=1e-5) for point in expected["validation_curve"]
        ]
