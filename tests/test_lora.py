"""LoRA fine-tuning through the real pipeline: adapters on 2 DeepSpeed ranks, the base frozen, and
an export with the adapters merged that loads with plain transformers."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from selfexplain.config import ConfigError
from selfexplain.models import load_model
from selfexplain.pipeline import run_all


def test_lora_trains_adapters_only_and_exports_merged_weights(ray_cluster, tiny_config):
    config = tiny_config(
        "name=lora",
        "generate.max_items=12",
        "train.lora_rank=4",
        "train.epochs=3",
        "train.learning_rate=5e-3",
        "evaluate.max_examples=8",
        "evaluate.untrained_baseline=false",
    )
    outcome = run_all(config)
    metrics = json.loads((config.run_dir.local_path / "train_metrics.json").read_text())
    assert 0 < metrics["trainable_parameters"] < 0.25 * metrics["parameters"]
    assert metrics["loss_curve"][-1] < metrics["loss_curve"][0]
    assert outcome.results["lora"]["trained explainer"]["n"] == 8

    export = config.run_dir.local_path / "explainer"
    weights = load_file(str(export / "model.safetensors"))
    assert not [key for key in weights if "lora" in key]  # merged: a plain model, no peft needed
    trained = AutoModelForCausalLM.from_pretrained(export)
    base, _ = load_model("tiny-llama")
    # the adapted linear layers moved; the embeddings (no adapter) are the base's, untouched
    assert not torch.allclose(
        trained.model.layers[0].self_attn.q_proj.weight,
        base.model.layers[0].self_attn.q_proj.weight,
    )
    assert torch.equal(trained.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_lora_settings_are_checked(tiny_config):
    with pytest.raises(ConfigError, match="train.lora_rank.*zero_stage 0-2"):
        tiny_config("train.lora_rank=8", "train.zero_stage=3")
    with pytest.raises(ConfigError, match="train.lora_rank"):
        tiny_config("train.lora_rank=-1")
