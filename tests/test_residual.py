"""The residual-stream hooks: patching changes exactly what causality allows, and nothing leaks."""

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel

from selfexplain.models import arch_spec, capture_residual, hidden_size, num_layers, patch_residual
from selfexplain.models.architectures import get_module


def _gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(n_embd=32, n_layer=3, n_head=4, vocab_size=101, n_positions=64)
    ).eval()


def _gemma3():
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=101,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        final_logit_softcapping=None,
        sliding_window=4,
    )
    return Gemma3ForCausalLM(config).eval()


@pytest.fixture(params=["llama", "gpt2", "gemma3"])
def model(request, tiny_llama):
    return {"llama": lambda: tiny_llama[0], "gpt2": _gpt2, "gemma3": _gemma3}[request.param]()


def _run(model, ids):
    layers = list(range(num_layers(model)))
    with torch.no_grad(), capture_residual(model, layers) as stream:
        logits = model(input_ids=ids).logits
    return {k: v.clone() for k, v in stream.items()}, logits


def test_table_covers_the_model(model):
    assert num_layers(model) >= 3
    assert hidden_size(model) in (32, 64)
    assert arch_spec(model).layers


def test_patch_changes_exactly_the_downstream_sites(model):
    torch.manual_seed(1)
    ids = torch.randint(3, 100, (1, 8))
    layer, position = 1, 4
    clean, _ = _run(model, ids)
    vector = torch.randn(hidden_size(model)) * 5
    with patch_residual(model, {layer: [(position, vector)]}):
        patched, _ = _run(model, ids)

    for block in range(num_layers(model)):
        if block < layer:
            torch.testing.assert_close(
                patched[block], clean[block]
            )  # upstream layers never see the patch
        else:
            # causal attention: earlier positions are untouched at every later layer
            torch.testing.assert_close(patched[block][:, :position], clean[block][:, :position])
    torch.testing.assert_close(patched[layer][0, position], vector)
    torch.testing.assert_close(patched[layer][:, position + 1 :], clean[layer][:, position + 1 :])
    for block in range(layer + 1, num_layers(model)):
        assert not torch.allclose(patched[block][:, position:], clean[block][:, position:])


def test_final_layer_patch_matches_manual_unembedding(model):
    ids = torch.randint(3, 100, (1, 6))
    last, position = num_layers(model) - 1, 3
    vector = torch.randn(hidden_size(model))
    with torch.no_grad(), patch_residual(model, {last: [(position, vector)]}):
        logits = model(input_ids=ids).logits
    norm = get_module(model, arch_spec(model).final_norm)
    with torch.no_grad():
        manual = model.get_output_embeddings()(norm(vector[None, None]))[0, 0]
    torch.testing.assert_close(logits[0, position], manual, rtol=1e-4, atol=1e-4)


def test_swapping_a_whole_layer_reproduces_the_other_run(model):
    """Patch every position at layer L with another prompt's residual: all later layers and the
    logits must equal that prompt's own run."""
    a, b = torch.randint(3, 100, (1, 7)), torch.randint(3, 100, (1, 7))
    layer = 1
    stream_b, logits_b = _run(model, b)
    sites = [(p, stream_b[layer][0, p]) for p in range(7)]
    with patch_residual(model, {layer: sites}):
        stream_patched, logits_patched = _run(model, a)
    torch.testing.assert_close(logits_patched, logits_b, rtol=1e-4, atol=1e-4)
    for block in range(layer, num_layers(model)):
        torch.testing.assert_close(stream_patched[block], stream_b[block], rtol=1e-4, atol=1e-4)


def test_hooks_are_removed_even_after_an_exception(model):
    ids = torch.randint(3, 100, (1, 5))
    _, before = _run(model, ids)
    with (
        pytest.raises(RuntimeError),
        patch_residual(model, {0: [(0, torch.zeros(hidden_size(model)))]}),
    ):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError), capture_residual(model, [0, 1]):
        raise RuntimeError("boom")
    _, after = _run(model, ids)
    torch.testing.assert_close(after, before)
    assert all(not layer._forward_hooks for layer in get_module(model, arch_spec(model).layers))


def test_unknown_architecture_names_the_table():
    class Config:
        model_type = "mamba"

    class Fake(torch.nn.Module):
        config = Config()

    with pytest.raises(ValueError, match="architectures.py"):
        arch_spec(Fake())


def test_left_padded_ground_truth_forwards_match_each_prompt_run_alone(tiny_llama):
    from selfexplain.models.padding import padded_batch

    model, tokenizer = tiny_llama
    texts = ["The capital of France is", "Salt and"]
    batch = padded_batch(tokenizer, texts, model.device)
    with torch.no_grad():
        batched = model(**batch).logits[:, -1]
        alone = [model(**tokenizer([t], return_tensors="pt")).logits[0, -1] for t in texts]
    for row, expected in enumerate(alone):
        assert torch.allclose(batched[row], expected, atol=1e-4)
