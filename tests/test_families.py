"""Every supported model family, as a tiny random model built from its transformers config class:
the residual hooks read what ``output_hidden_states`` reports and write without side effects, and
a run goes generate -> train -> evaluate -> explain across two families."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from selfexplain.cli import main
from selfexplain.models import arch_spec, capture_residual, hidden_size, num_layers, patch_residual
from selfexplain.models.loading import resolve_model_dir
from tests.families import FAMILIES, save_tiny_family, tiny_model


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hooks_read_the_hidden_states_and_a_clean_patch_changes_nothing(family):
    model = tiny_model(family)
    ids = torch.randint(3, 100, (1, 7))
    depth = num_layers(model)
    assert depth == 3 and hidden_size(model) == 64 and arch_spec(model).layers
    with torch.no_grad(), capture_residual(model, range(depth)) as stream:
        clean = model(input_ids=ids, output_hidden_states=True)
    # hidden_states[i + 1] is block i's output (the last one has the final norm applied)
    for block in range(depth - 1):
        torch.testing.assert_close(stream[block], clean.hidden_states[block + 1])
    sites = {1: [(position, stream[1][0, position]) for position in range(7)]}
    with torch.no_grad(), patch_residual(model, sites):
        patched = model(input_ids=ids).logits
    torch.testing.assert_close(patched, clean.logits)


def test_a_family_whose_parts_cannot_be_found_is_named():
    class Config:
        model_type = "strange"

    class Decoder(torch.nn.Module):
        pass

    class Strange(torch.nn.Module):
        config = Config()

        def __init__(self):
            super().__init__()
            self.decoder = Decoder()

        def get_decoder(self):
            return self.decoder

    with pytest.raises(ValueError, match="'strange': cannot find its decoder blocks"):
        arch_spec(Strange())


def pipeline_across(tmp_path, target_family: str, explainer: str, capsys) -> None:
    """A features run whose target is a tiny ``target_family`` model and whose explainer is
    another model (through the learned projection), then a question to the export."""
    tokenizer = resolve_model_dir("tiny-llama")
    target = save_tiny_family(target_family, tmp_path / target_family, tokenizer)
    runs = tmp_path / "runs"
    argv = ["run", "tiny", f"output_dir={runs}", "name=across", "task=features",
            f"target={target}", f"train.explainer={explainer}", "generate.max_items=24",
            "generate.min_probe_accuracy=0.5", "evaluate.max_examples=8",
            "train.projection=always"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    export = runs / "across" / "explainer"
    interface = json.loads((export / "vector_interface.json").read_text())
    assert interface["projected"] and interface["d_target"] == 64
    vector = tmp_path / "v.npy"
    np.save(vector, np.random.default_rng(0).normal(size=64).astype(np.float32))
    capsys.readouterr()
    layer = str(interface["layers"][0])
    assert main(["explain", str(export), "--vector", str(vector), "--layer", layer]) == 0


def test_a_llama_explains_a_qwen3(ray_cluster, tmp_path, capsys):
    pipeline_across(tmp_path, "qwen3", "tiny-llama-wide", capsys)


def test_a_qwen3_explains_a_llama(ray_cluster, tmp_path, capsys):
    tokenizer = resolve_model_dir("tiny-llama")
    explainer = save_tiny_family("qwen3", tmp_path / "qwen3-explainer", tokenizer, seed=1)
    pipeline_across(tmp_path, "llama", str(explainer), capsys)


@pytest.mark.slow
@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "qwen3"])
def test_every_family_runs_the_pipeline_as_target_and_as_explainer(
    ray_cluster, tmp_path, capsys, family
):
    """Each family as the target (explained by tiny-llama-wide), and as the other explainer of a
    tiny qwen3 (a multimodal wrapper is refused as an explainer before Ray starts)."""
    pipeline_across(tmp_path, family, "tiny-llama-wide", capsys)
    if family == "gemma3":
        return  # refused as an explainer: tests/test_bad_input.py
    tokenizer = resolve_model_dir("tiny-llama")
    explainer = save_tiny_family(family, tmp_path / f"{family}-explainer", tokenizer, seed=1)
    pipeline_across(tmp_path / "as-explainer", "qwen3", str(explainer), capsys)
