"""Training to convergence: validation every few steps, the export taken at the step of lowest
in-distribution loss, and a stop after ``train.patience`` validations without a new low. The
same run trains under bf16 autocast with gradient checkpointing on two ranks."""

import json

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
