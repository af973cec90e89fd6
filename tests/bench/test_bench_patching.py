"""Activation-patching sweep vs one full forward per (layer, position) site, on SmolLM2 with every
layer, on CounterFact-style pairs. The sweep reuses the clean prefix's KV cache, runs all layers of
a position as one batch, and starts each row at the block after its patched layer; the all-rows
variant (every row through every block) is timed beside it, so the layer skipping's own gain shows."""

import torch

from selfexplain.models import load_model
from selfexplain.models.patching import _suffix_sweep, capture_component, patch_one_site, patch_sweep
from timing import best_time

PAIRS = [("The capital of France is", "The capital of Japan is"),
         ("The official language of Mexico is", "The official language of Italy is"),
         ("People in Russia speak", "People in Greece speak")]


def naive_sweep(model, ids, sources):
    return torch.stack([torch.stack([patch_one_site(model, ids, layer, position, sources[layer][position])
                                     for layer in sorted(sources)]) for position in range(len(ids))])


def nnsight_sweep(nn_model, ids, sources):
    """nnsight's own way, as batched as it goes: per layer, one trace whose row p patches position p."""
    n = len(ids)
    per_layer = []
    for layer in sorted(sources):
        with nn_model.trace(ids[None].expand(n, -1)):
            nn_model.model.layers[layer].output[torch.arange(n), torch.arange(n)] = sources[layer]
            logits = nn_model.output.logits[:, -1].save()
        per_layer.append(logits)
    return torch.stack(per_layer, dim=1)  # [position, layer, vocab], as patch_sweep


def test_patching_sweep_speedup():
    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    layers = list(range(model.config.num_hidden_layers))
    cases = []
    for prompt, counterfactual in PAIRS:
        ids = torch.tensor(tokenizer(prompt).input_ids)
        cf_ids = torch.tensor(tokenizer(counterfactual).input_ids)
        assert len(ids) == len(cf_ids)
        cases.append((ids, capture_component(model, cf_ids, layers)))
    sites = sum(len(ids) * len(layers) for ids, _ in cases)

    worst = 0.0
    for ids, sources in cases:  # same logits first: a fast wrong answer is no speedup
        fast = patch_sweep(model, ids, sources, list(range(len(ids))))
        worst = max(worst, float((fast - naive_sweep(model, ids, sources)).abs().max()))
    assert worst <= 1e-4, worst

    swept = best_time(lambda: [patch_sweep(model, ids, s, list(range(len(ids)))) for ids, s in cases], repeats=2)
    all_rows = best_time(lambda: [torch.no_grad()(_suffix_sweep)(model, ids, layers, layers, s, list(range(len(ids))),
                                                                "residual") for ids, s in cases], repeats=2)
    naive = best_time(lambda: [naive_sweep(model, ids, s) for ids, s in cases], repeats=1)
    peer = "nnsight not installed (pip install -e '.[bench]')"
    try:
        from nnsight import NNsight
    except ImportError:
        NNsight = None
    if NNsight is not None:
        nn_model = NNsight(model)
        for ids, sources in cases:
            fast = patch_sweep(model, ids, sources, list(range(len(ids))))
            assert float((fast - nnsight_sweep(nn_model, ids, sources)).abs().max()) <= 1e-4
        traced = best_time(lambda: [nnsight_sweep(nn_model, ids, s) for ids, s in cases], repeats=2)
        peer = f"nnsight (a trace per layer) {traced:.2f}s: sweep {traced / swept:.2f}x nnsight"
    print(f"\npatching, SmolLM2-135M, {len(PAIRS)} pairs x {len(layers)} layers = {sites} sites: "
          f"naive {naive:.2f}s  all-rows sweep {all_rows:.2f}s  sweep {swept:.2f}s  "
          f"speedup {naive / swept:.2f}x over naive, {all_rows / swept:.2f}x over all-rows "
          f"(max |logit diff| {worst:.1e}); {peer}")
