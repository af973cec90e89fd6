"""ZeRO-3 and ZeRO-3 with CPU offload train and export on two ranks (ZeRO-2 runs in
test_pipeline)."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from selfexplain.jobs.generate import generate
from selfexplain.models import load_model
from selfexplain.train.trainer import train


@pytest.mark.parametrize(
    "overrides",
    [("train.zero_stage=3",), ("train.zero_stage=3", "train.offload=true")],
    ids=["zero3", "zero3-offload"],
)
def test_zero3_trains_and_exports_a_full_model(ray_cluster, tiny_config, overrides):
    config = tiny_config("name=zero", "generate.max_items=8", "train.epochs=2", *overrides)
    assert config.train.num_workers == 2
    generate(config)
    export = train(config)
    curve = (config.run_dir / "train_metrics.json").read_json()["loss_curve"]
    assert curve[-1] < curve[0]
    # The export gathers every partition: full shapes, and weights moved away from the base model.
    trained = AutoModelForCausalLM.from_pretrained(export.local_path)
    base, _ = load_model("tiny-llama")
    for (name, a), b in zip(trained.named_parameters(), base.parameters()):
        assert a.shape == b.shape, name
    assert all(not torch.equal(a, b) for a, b in zip(trained.parameters(), base.parameters()))
