"""Activation-patching sweeps: every (layer, position) site of a prompt, without one forward per site.

Patching the site (layer L, position p) writes a vector into the stream at p after block L and
reads the next-token logits. The naive sweep runs the whole prompt once per site. Two facts make
that wasteful:

* Attention is causal, so positions before ``p`` are exactly those of the unpatched run at every
  layer: their keys and values can be taken from one clean run's KV cache, and only the suffix
  ``p..n-1`` is recomputed.
* Sites that share ``p`` need the same suffix, so all layers for one position run as one batch,
  each row patched at its own layer.

A sweep is therefore one clean forward plus one batched suffix forward per position. The result
equals the naive loop up to float rounding (the tests and ``tests/bench`` check <= 1e-4). A prompt
that fills a sliding-window layer's window (Gemma-3's local attention) cannot reuse a cropped
cache; it falls back to one forward per site.

A site's *component* is where the vector is written: ``residual`` (the block's output, the
stream itself), ``attn`` or ``mlp`` (that sub-layer's output, before it is added to the stream).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence

import torch

from selfexplain.models.hooks import capture, write_rows


def _cache_argument(model) -> str:
    # transformers 5.2x renamed ``past_key_values`` to ``cache``; older versions know only the former.
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _output_cache(output):
    return output["cache"] if "cache" in output else output["past_key_values"]


def capture_component(model, input_ids: torch.Tensor, layers: Sequence[int], component: str = "residual"
                      ) -> dict[int, torch.Tensor]:
    """``layer -> Float[Tensor, "pos d_model"]``: the component's output for one unbatched prompt."""
    return capture_with_logits(model, input_ids, layers, component)[0]


@torch.no_grad()
def capture_with_logits(model, input_ids: torch.Tensor, layers: Sequence[int], component: str = "residual"
                        ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """:func:`capture_component` plus the next-token logits of the same forward, ``Float[Tensor, "vocab"]``."""
    with capture(model, layers, component) as captured:
        logits = model(input_ids=input_ids[None].to(model.device), logits_to_keep=1).logits[0, -1]
    return {layer: hidden[0].float().cpu() for layer, hidden in captured.items()}, logits.float().cpu()


def reaches_sliding_window(model, length: int) -> bool:
    """A prompt of ``length`` tokens fills a sliding-window attention layer's window."""
    window = getattr(model.config, "sliding_window", None)
    layer_types = getattr(model.config, "layer_types", None) or []
    has_sliding = "sliding_attention" in layer_types or (window and not layer_types)
    return bool(window) and bool(has_sliding) and length >= window


@torch.no_grad()
def patch_sweep(
    model,
    input_ids: torch.Tensor,
    sources: Mapping[int, torch.Tensor],
    positions: Sequence[int],
    component: str = "residual",
    blocks: Mapping[int, Sequence[int]] | None = None,
) -> torch.Tensor:
    """Next-token logits after patching each site, ``Float[Tensor, "position site vocab"]``.

    ``input_ids`` is one unbatched prompt; ``sources[key][pos]`` is the vector written at that
    site (the counterfactual run's activation). A key is a layer, or with ``blocks`` the name of
    a block of layers that all get the same vector (the paper's block patching). Rows follow
    ``positions`` and ``sorted(sources)``.
    """
    keys = sorted(sources)
    row_layers = [list(blocks[key]) for key in keys] if blocks else keys
    if reaches_sliding_window(model, len(input_ids)):
        # A sliding-window cache (Gemma-3's local layers) keeps only the last `window` tokens, so
        # the clean prefix cannot be cropped and reused: one full forward per site instead.
        return torch.stack([torch.stack([patch_one_site(model, input_ids, layers, position, sources[key][position],
                                                        component)
                                         for key, layers in zip(keys, row_layers)]) for position in positions])
    device = model.device
    ids = input_ids.to(device)
    cache_argument = _cache_argument(model)
    clean_cache = _output_cache(model(input_ids=ids[None], use_cache=True, logits_to_keep=1))
    results = []
    for position in positions:
        vectors = torch.stack([sources[key][position] for key in keys])
        suffix = ids[position:].expand(len(keys), -1)
        past = None
        if position > 0:
            # The cache is mutated by crop/repeat and by the forward; each position needs its own.
            past = copy.deepcopy(clean_cache)
            # A negative count removes that many tokens: the one form every transformers
            # version accepts (5.x refuses a positive target length).
            past.crop(position - len(ids))
            past.batch_repeat_interleave(len(keys))
        with write_rows(model, row_layers, 0, vectors, component):
            logits = model(input_ids=suffix, use_cache=past is not None, logits_to_keep=1,
                           **{cache_argument: past}).logits[:, -1, :]
        results.append(logits.float().cpu())
    return torch.stack(results)


@torch.no_grad()
def patch_one_site(model, input_ids: torch.Tensor, layer: int | Sequence[int], position: int, vector: torch.Tensor,
                   component: str = "residual") -> torch.Tensor:
    """The naive reference: one full forward with one site (a layer, or every layer of a block)
    patched; ``Float[Tensor, "vocab"]``."""
    with write_rows(model, [layer], position, vector[None], component):
        logits = model(input_ids=input_ids[None].to(model.device), logits_to_keep=1).logits[0, -1, :]
    return logits.float().cpu()
