"""Activation-patching sweep vs one full forward per (layer, position) site and vs nnsight, on
SmolLM2 with every layer, on CounterFact-style pairs, all in one process on the same sites.

The sweep's savings are timed one at a time: the clean prefix's KV cache reused with all
layers of a position in one batch ("all rows"), then each row starting at the block after its
patched layer, then nearby positions sharing a batch, then the sites that cannot change the
answer (the shared prefix's, where the counterfactual's activation is the clean one; the last
block's before the last token) answered by the clean run. The patching task never emits those no-op
sites, so the ratios are printed twice: over every site, and over the sites after the shared
prefix."""

import torch
from timing import best_time

from selfexplain.models import load_model
from selfexplain.models.patching import capture_component, patch_one_site, patch_sweep, sweep

PAIRS = [
    ("The capital of France is", "The capital of Japan is"),
    ("The official language of Mexico is", "The official language of Italy is"),
    ("People in Russia speak", "People in Greece speak"),
]


def naive_sweep(model, ids, sources, positions):
    return torch.stack(
        [
            torch.stack(
                [
                    patch_one_site(model, ids, layer, position, sources[layer][position])
                    for layer in sorted(sources)
                ]
            )
            for position in positions
        ]
    )


@torch.no_grad()  # as the sweep runs: no autograd graph kept for the peer either
def nnsight_sweep(nn_model, ids, sources, positions):
    """nnsight's own way, as batched as it goes: per layer, one trace whose row i patches position
    i."""
    rows, positions = torch.arange(len(positions)), torch.tensor(positions)
    per_layer = []
    for layer in sorted(sources):
        with nn_model.trace(ids[None].expand(len(positions), -1)):
            nn_model.model.layers[layer].output[rows, positions] = sources[layer][positions]
            logits = nn_model.output.logits[:, -1].save()
        per_layer.append(logits)
    return torch.stack(per_layer, dim=1)  # [position, layer, vocab], as patch_sweep


def variant(model, layers, from_their_layer, merge_positions):
    def run(ids, sources, positions):
        return torch.no_grad()(sweep)(
            model,
            ids,
            [sources[layer] for layer in layers],
            [[layer] for layer in layers],
            positions,
            "residual",
            from_their_layer=from_their_layer,
            skip_noops=False,
            merge_positions=merge_positions,
        )

    return run


def test_patching_sweep_speedup():
    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    layers = list(range(model.config.num_hidden_layers))
    cases = []
    for prompt, counterfactual in PAIRS:
        ids = torch.tensor(tokenizer(prompt).input_ids)
        cf_ids = torch.tensor(tokenizer(counterfactual).input_ids)
        assert len(ids) == len(cf_ids)
        first_difference = int((ids != cf_ids).nonzero()[0, 0])
        cases.append((ids, capture_component(model, cf_ids, layers), first_difference))
    every_site = [(ids, sources, list(range(len(ids)))) for ids, sources, _ in cases]
    after_prefix = [(ids, sources, list(range(first, len(ids)))) for ids, sources, first in cases]

    def timed(method, cases, repeats=2):
        return best_time(lambda: [method(*case) for case in cases], repeats=repeats)

    try:
        from nnsight import NNsight

        nn_model = NNsight(model)
    except ImportError:
        nn_model = None
    worst = 0.0
    for (
        ids,
        sources,
        positions,
    ) in every_site:  # same logits first: a fast wrong answer is no speedup
        fast = patch_sweep(model, ids, sources, positions)
        worst = max(worst, float((fast - naive_sweep(model, ids, sources, positions)).abs().max()))
        if nn_model is not None:
            worst = max(
                worst, float((fast - nnsight_sweep(nn_model, ids, sources, positions)).abs().max())
            )
    assert worst <= 1e-4, worst

    lines = []
    for label, sites in (
        ("every site", every_site),
        ("sites after the shared prefix", after_prefix),
    ):
        count = sum(len(positions) for *_, positions in sites) * len(layers)
        sweep_once = lambda ids, s, p: patch_sweep(model, ids, s, p)  # noqa: E731
        swept = timed(sweep_once, sites, 3)
        times = {
            "one forward per site (hooks)": timed(
                lambda ids, s, p: naive_sweep(model, ids, s, p), sites, 1
            )
        }
        if nn_model is not None:
            times["nnsight, a trace per layer, positions batched"] = timed(
                lambda ids, s, p: nnsight_sweep(nn_model, ids, s, p), sites
            )
        times["sweep, all rows through all blocks"] = timed(
            variant(model, layers, False, False), sites
        )
        times["sweep, rows from their layer"] = timed(variant(model, layers, True, False), sites)
        times["sweep, rows from their layer, positions merged"] = timed(
            variant(model, layers, True, True), sites
        )
        # this machine drifts over minutes: the sweep's best time is taken before and after its
        # peers
        swept = min(swept, timed(sweep_once, sites, 3))
        lines.append(f"  {label}: {count} sites; selfexplain's sweep {swept:.2f}s")
        lines += [
            f"    {name:<48} {seconds:6.2f}s  sweep {seconds / swept:5.2f}x faster"
            for name, seconds in times.items()
        ]
    if nn_model is None:
        lines.append("  nnsight not installed (pip install -e '.[bench]')")
    print(
        f"\npatching, SmolLM2-135M, {len(PAIRS)} pairs x {len(layers)} layers, 2 threads "
        f"(max |logit diff| vs the per-site forward and nnsight {worst:.1e}):\n" + "\n".join(lines)
    )
