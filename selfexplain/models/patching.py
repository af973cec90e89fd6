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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from selfexplain.models.architectures import decoder_layers
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
    if component == "residual":
        return _residual_sweep(model, input_ids, keys, row_layers, sources, positions)
    return _suffix_sweep(model, input_ids, keys, row_layers, sources, positions, component)


def _clean_prefix_cache(clean_cache, position: int, length: int):
    """The clean run's cache cut to its first ``position`` tokens (a copy: forwards mutate it)."""
    past = copy.deepcopy(clean_cache)
    # A negative count removes that many tokens: the one form every transformers version
    # accepts (5.x refuses a positive target length).
    past.crop(position - length)
    return past


def _suffix_sweep(model, input_ids, keys, row_layers, sources, positions, component) -> torch.Tensor:
    """Each position's sites as one batch over the suffix, every row through every layer (a
    sub-layer's write happens inside its block, so no block can be skipped)."""
    def share_prefix(past):
        past.batch_repeat_interleave(len(keys))

    def writing(position, vectors):
        return write_rows(model, row_layers, 0, vectors, component)

    clean_cache = _clean_run(model, input_ids)
    return _position_batches(model, input_ids, keys, sources, positions, clean_cache, share_prefix, writing)


def _residual_sweep(model, input_ids, keys, row_layers, sources, positions) -> torch.Tensor:
    """Each position's sites as one batch over the suffix, each row computed only from the block
    after its first patched layer.

    Patching the stream after block L leaves blocks 0..L exactly as in the clean run, at every
    position: a row joins the batch at block L+1, starting from the clean output of block L (with
    the vector written at the patched position). Rows are ordered by that first layer, so the
    rows a block computes are always a leading slice of the batch; the blocks before a row joins
    hand it the clean run's output instead. Half the block-rows of the all-rows sweep are skipped.
    """
    depth = len(decoder_layers(model))
    layer_sets = [[layers] if isinstance(layers, int) else list(layers) for layers in row_layers]
    first = [min(layers) for layers in layer_sets]
    if first != sorted(first):  # the rows a block computes must be a leading slice of the batch
        return _suffix_sweep(model, input_ids, keys, row_layers, sources, positions, "residual")
    # computed[l]: how many leading rows block l computes (rows whose first patched layer is < l)
    computed = [sum(f < layer for f in first) for layer in range(depth)]
    written = {layer: [row for row, layers in enumerate(layer_sets) if layer in layers] for layer in range(depth)}

    def share_prefix(past):
        for layer, cached in enumerate(past.layers):  # each block's prefix, once per row it computes
            if computed[layer]:
                cached.keys = cached.keys.expand(computed[layer], -1, -1, -1)
                cached.values = cached.values.expand(computed[layer], -1, -1, -1)

    def writing(position, vectors):
        clean = {layer: hidden[:, position:] for layer, hidden in clean_stream.items()}
        return _rows_from_their_layer(model, clean, computed, written, vectors)

    with capture(model, range(depth)) as clean_stream:
        clean_cache = _clean_run(model, input_ids)
    return _position_batches(model, input_ids, keys, sources, positions, clean_cache, share_prefix, writing)


def _clean_run(model, input_ids: torch.Tensor):
    """The KV cache of one unpatched forward over the whole prompt."""
    return _output_cache(model(input_ids=input_ids[None].to(model.device), use_cache=True, logits_to_keep=1))


def _position_batches(model, input_ids, keys, sources, positions, clean_cache, share_prefix, writing) -> torch.Tensor:
    """For each position, one forward of the suffix from that position with one row per site:
    the clean prefix's cache (``share_prefix`` spreads it over the rows), and the vectors written
    by the ``writing(position, vectors)`` context. ``Float[Tensor, "position site vocab"]``."""
    ids = input_ids.to(model.device)
    cache_argument = _cache_argument(model)
    results = []
    for position in positions:
        vectors = torch.stack([sources[key][position] for key in keys]).to(model.device)
        suffix = ids[position:].expand(len(keys), -1)
        past = None
        if position > 0:
            past = _clean_prefix_cache(clean_cache, position, len(ids))
            share_prefix(past)
        with writing(position, vectors):
            logits = model(input_ids=suffix, use_cache=past is not None, logits_to_keep=1,
                           **{cache_argument: past}).logits[:, -1, :]
        results.append(logits.float().cpu())
    return torch.stack(results)


@contextmanager
def _rows_from_their_layer(model, clean: Mapping[int, torch.Tensor], computed: Sequence[int],
                           written: Mapping[int, Sequence[int]], vectors: torch.Tensor) -> Iterator[None]:
    """While inside, block ``l`` runs on the first ``computed[l]`` rows of the batch only, the
    other rows take the clean output ``clean[l]``, and rows ``written[l]`` get their vector at the
    suffix's first position. The blocks' own forwards are restored on exit, always."""
    blocks = decoder_layers(model)

    def replacement(layer: int, original):
        def forward(hidden_states, *args, **kwargs):
            batch, count = hidden_states.shape[0], computed[layer]
            out = clean[layer].to(hidden_states.dtype).expand(batch, -1, -1).clone()
            if count:
                out[:count] = original(hidden_states[:count], *args,
                                       **{k: _leading_rows(v, count, batch) for k, v in kwargs.items()})
            rows = list(written[layer])
            if rows:
                out[rows, 0] = vectors[rows].to(out.dtype)
            return out
        return forward

    # a block may already carry its own instance forward (a wrapper of another tool): put back
    # exactly what was there
    saved = [block.__dict__.get("forward") for block in blocks]
    try:
        for layer, block in enumerate(blocks):
            block.forward = replacement(layer, block.forward)
        yield
    finally:
        for block, own in zip(blocks, saved):
            if own is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = own


def _leading_rows(value, count: int, batch: int):
    """A block's argument cut to the rows it computes: tensors with a batch dimension (the
    attention mask), and tuples of them; broadcast ones (batch 1) and the rest as they are."""
    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == batch and batch > 1:
        return value[:count]
    if isinstance(value, tuple):
        return tuple(_leading_rows(v, count, batch) for v in value)
    return value


@torch.no_grad()
def patch_one_site(model, input_ids: torch.Tensor, layer: int | Sequence[int], position: int, vector: torch.Tensor,
                   component: str = "residual") -> torch.Tensor:
    """The naive reference: one full forward with one site (a layer, or every layer of a block)
    patched; ``Float[Tensor, "vocab"]``."""
    with write_rows(model, [layer], position, vector[None], component):
        logits = model(input_ids=input_ids[None].to(model.device), logits_to_keep=1).logits[0, -1, :]
    return logits.float().cpu()
