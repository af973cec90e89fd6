"""Activation-patching sweeps: every (layer, position) site of a prompt, without one forward per
site.

Patching the site (layer L, position p) writes a vector into the stream at p after block L and
reads the next-token logits. The naive sweep runs the whole prompt once per site. Four facts make
that wasteful:

* Attention is causal, so positions before ``p`` are exactly those of the unpatched run at every
  layer: their keys and values can be taken from one clean run's KV cache, and only the suffix
  ``p..n-1`` is recomputed.
* Sites that share ``p`` need the same suffix, so all layers for one position run as one batch,
  each row patched at its own layer; on the residual stream a row starts at the block after its
  patched layer, since the blocks before it are the clean run's.
* Nearby positions share a batch too, over the suffix from the earliest of them: a later row
  recomputes a few clean tokens, which costs less than another forward over every weight.
* A site whose vector is the clean activation itself (the two prompts' shared prefix) changes
  nothing, nor does one in the last block at a position before the last token: their answer is
  the clean logits, without a forward.

A sweep is therefore one clean forward plus a batched suffix forward per group of positions. The
result equals the naive loop up to float rounding (the tests and ``tests/bench`` check <= 1e-4). A
prompt that fills a sliding-window layer's window (Gemma-3's local attention) cannot reuse a cropped
cache; it falls back to one forward per site.

A site's *component* is where the vector is written: ``residual`` (the block's output, the
stream itself), ``attn`` or ``mlp`` (that sub-layer's output, before it is added to the stream).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import torch

from selfexplain.models.architectures import decoder_layers
from selfexplain.models.hooks import capture, write_rows
from selfexplain.models.kv_cache import cache_argument, output_cache


@torch.no_grad()
def capture_component(
    model, input_ids: torch.Tensor, layers: Sequence[int], component: str = "residual"
) -> dict[int, torch.Tensor]:
    """``layer -> Float[Tensor, "pos d_model"]``: the component's output for one unbatched
    prompt."""
    with capture(model, layers, component) as captured:
        model(input_ids=input_ids[None].to(model.device), logits_to_keep=1)
    return {layer: hidden[0].float().cpu() for layer, hidden in captured.items()}


def reaches_sliding_window(model, length: int) -> bool:
    """A prompt of ``length`` tokens fills a sliding-window attention layer's window."""
    window = getattr(model.config, "sliding_window", None)
    layer_types = getattr(model.config, "layer_types", None) or []
    has_sliding = "sliding_attention" in layer_types or (window and not layer_types)
    return bool(window) and bool(has_sliding) and length >= window


@dataclass(frozen=True)
class CleanRun:
    """One unpatched forward of a prompt: what every sweep of it starts from. A caller that
    needs the clean logits first (to reject a pair before sweeping it) passes its run on, so
    the prompt is not run twice."""

    logits: torch.Tensor
    """Next-token logits, ``Float[Tensor, "vocab"]`` on the CPU."""
    cache: object
    """The KV cache; sweeps copy it, never change it."""
    activations: dict[int, torch.Tensor]
    """``layer -> Float[Tensor, "1 pos d_model"]``: the component's output at every layer, on the
    model's device."""


@torch.no_grad()
def clean_run(model, input_ids: torch.Tensor, component: str = "residual") -> CleanRun:
    with capture(model, range(len(decoder_layers(model))), component) as activations:
        output = model(input_ids=input_ids[None].to(model.device), use_cache=True, logits_to_keep=1)
    return CleanRun(output.logits[0, -1].float().cpu(), output_cache(output), dict(activations))


@torch.no_grad()
def clean_and_counterfactual_runs(
    model, input_ids: torch.Tensor, cf_ids: torch.Tensor, component: str = "residual"
) -> tuple[CleanRun, dict[int, torch.Tensor], torch.Tensor]:
    """The original prompt's :func:`clean_run`, and the counterfactual's activations at every layer
    (``layer -> Float[Tensor, "pos d_model"]`` on the CPU) and next-token logits, from one forward
    of both prompts as a batch of two. A forward this short is bound by reading the weights, so
    the second prompt comes almost free; a pair's prompts have the same length, so no padding."""
    with capture(model, range(len(decoder_layers(model))), component) as activations:
        output = model(
            input_ids=torch.stack([input_ids, cf_ids]).to(model.device),
            use_cache=True,
            logits_to_keep=1,
        )
    cache = output_cache(output)
    cache.batch_select_indices(torch.tensor([0], device=model.device))
    logits = output.logits[:, -1].float().cpu()
    clean = CleanRun(logits[0], cache, {layer: hidden[:1] for layer, hidden in activations.items()})
    return (
        clean,
        {layer: hidden[1].float().cpu() for layer, hidden in activations.items()},
        logits[1],
    )


@torch.no_grad()
def patch_sweep(
    model,
    input_ids: torch.Tensor,
    sources: Mapping[int, torch.Tensor],
    positions: Sequence[int],
    component: str = "residual",
    blocks: Mapping[int, Sequence[int]] | None = None,
    clean: CleanRun | None = None,
) -> torch.Tensor:
    """Next-token logits after patching each site, ``Float[Tensor, "position site vocab"]``.

    ``input_ids`` is one unbatched prompt; ``sources[key][pos]`` is the vector written at that
    site (the counterfactual run's activation). A key is a layer, or with ``blocks`` the name of
    a block of layers that all get the same vector (the paper's block patching). Rows follow
    ``positions`` and ``sorted(sources)``. ``clean``: this prompt's :func:`clean_run`, if the
    caller has it.
    """
    keys = sorted(sources)
    layer_sets = [list(blocks[key]) for key in keys] if blocks else [[key] for key in keys]
    if reaches_sliding_window(model, len(input_ids)):
        # A sliding-window cache (Gemma-3's local layers) keeps only the last `window` tokens, so
        # the clean prefix cannot be cropped and reused: one full forward per site instead.
        return torch.stack(
            [
                torch.stack(
                    [
                        patch_one_site(
                            model, input_ids, layers, position, sources[key][position], component
                        )
                        for key, layers in zip(keys, layer_sets)
                    ]
                )
                for position in positions
            ]
        )
    firsts = [min(layers) for layers in layer_sets]
    # the rows a block computes must be a leading slice of the batch: rows sorted by first layer
    from_their_layer = component == "residual" and firsts == sorted(firsts)
    return sweep(
        model,
        input_ids,
        [sources[key] for key in keys],
        layer_sets,
        positions,
        component,
        from_their_layer=from_their_layer,
        skip_noops=True,
        clean=clean,
    )


def sweep(
    model,
    input_ids: torch.Tensor,
    row_sources: Sequence[torch.Tensor],
    layer_sets: Sequence[Sequence[int]],
    positions: Sequence[int],
    component: str,
    *,
    from_their_layer: bool,
    skip_noops: bool,
    merge_positions: bool = True,
    clean: CleanRun | None = None,
) -> torch.Tensor:
    """:func:`patch_sweep` with its savings as switches (the benchmark times each one).

    One clean forward gives the KV cache, the clean logits and the clean activations; then the
    sites run in batches over the suffix of the prompt, each batch on the clean prefix's cache.

    * ``skip_noops``: a site whose vector *is* the clean activation at every layer it is written
      to (the prompts' shared prefix: causal attention makes the counterfactual's activation
      there the original's, bit for bit) changes nothing, so its answer is the clean logits and it
      joins no batch. So does a site in the last block at a position before the last token:
      no attention is left to carry it to the next-token logits.
    * ``from_their_layer`` (residual stream, rows sorted by first layer): patching the stream
      after block L leaves blocks 0..L exactly as in the clean run, at every position, so a row
      joins the batch at block L+1 from the clean output of block L; half the block-rows of the
      all-rows sweep are skipped. A sub-layer's write happens inside its block, so ``attn`` and
      ``mlp`` sites run every row through every block.
    * ``merge_positions``: sites at nearby positions share one batch over the suffix from the
      earliest of them (see :func:`_position_groups`); without it, one batch per position.
    """
    depth = len(decoder_layers(model))
    clean = clean or clean_run(model, input_ids, component)
    ids = input_ids.to(model.device)
    results = clean.logits.expand(len(positions), len(layer_sets), -1).clone()
    live = _live_rows(clean, row_sources, layer_sets, positions, len(ids), depth, skip_noops)
    groups = (
        _position_groups({positions[index]: len(rows) for index, rows in live.items()})
        if merge_positions
        else [[positions[index]] for index in live]
    )
    index_of = {position: index for index, position in enumerate(positions)}
    for group in groups:
        sites = [(index_of[p], row) for p in group for row in live[index_of[p]]]
        if from_their_layer:  # stable: within a layer, positions stay in order
            sites.sort(key=lambda site: min(layer_sets[site[1]]))
        batch = SiteBatch(
            start=group[0],
            layers=[layer_sets[row] for _, row in sites],
            offsets=[positions[index] - group[0] for index, _ in sites],
            vectors=torch.stack([row_sources[row][positions[index]] for index, row in sites]),
        )
        logits = _run_batch(model, clean, ids, batch, component, from_their_layer, depth)
        results[[index for index, _ in sites], [row for _, row in sites]] = logits.float().cpu()
    return results


def _live_rows(
    clean: CleanRun, row_sources, layer_sets, positions, length: int, depth: int, skip_noops: bool
) -> dict[int, list[int]]:
    """Per position index, the rows whose patch can change the output (all, without
    ``skip_noops``); positions left with none are dropped."""
    live = {}
    for index, position in enumerate(positions):
        rows = [
            row
            for row, layers in enumerate(layer_sets)
            if not (
                skip_noops
                and (
                    _writes_clean_value(
                        row_sources[row][position], clean.activations, layers, position
                    )
                    or _in_last_block_before_last_token(layers, position, length, depth)
                )
            )
        ]
        if rows:
            live[index] = rows
    return live  # fmt: skip


class SiteBatch(NamedTuple):
    """Sites that run as one batch over the prompt's suffix from ``start``."""

    start: int
    layers: list[Sequence[int]]
    offsets: list[int]
    """Each site's position, counted from ``start``."""
    vectors: torch.Tensor


def _run_batch(
    model,
    clean: CleanRun,
    ids: torch.Tensor,
    batch: SiteBatch,
    component: str,
    from_their_layer: bool,
    depth: int,
) -> torch.Tensor:
    """The next-token logits of every site of ``batch``, on the clean prefix's cache."""
    start, vectors = batch.start, batch.vectors.to(model.device)
    past = _clean_prefix_cache(clean.cache, start, len(ids)) if start > 0 else None
    if from_their_layer:
        computed = _rows_each_block_computes(batch.layers, depth)
        if past is not None:  # each block's prefix, once per row it computes
            for layer, cached in enumerate(past.layers):
                if computed[layer]:
                    cached.keys = cached.keys.expand(computed[layer], -1, -1, -1)
                    cached.values = cached.values.expand(computed[layer], -1, -1, -1)
        suffix = {layer: hidden[:, start:] for layer, hidden in clean.activations.items()}
        writing = _rows_from_their_layer(
            model, suffix, computed, batch.layers, batch.offsets, vectors
        )
    else:
        if past is not None:
            past.batch_repeat_interleave(len(batch.layers))
        writing = write_rows(model, batch.layers, batch.offsets, vectors, component)
    with writing:
        return model(
            input_ids=ids[start:].expand(len(batch.layers), -1),
            use_cache=past is not None,
            logits_to_keep=1,
            **{cache_argument(model): past},
        ).logits[:, -1, :]  # fmt: skip


# A forward's fixed cost (reading every weight once, launching every block) in row-tokens, the
# unit of its variable cost: on 2 CPU threads a 135M model's forward takes about 60 ms for one
# token and about 1.5 ms more per extra row-token (measured). On a GPU
# the fixed cost weighs more still, so merging there only gains more.
PASS_COST_ROW_TOKENS = 48


def _position_groups(
    rows_at: Mapping[int, int], pass_cost: int = PASS_COST_ROW_TOKENS
) -> list[list[int]]:
    """Positions (with how many rows each has) cut into runs that share one batch.

    A batch starts at its earliest position, so a row at a later position ``p`` also recomputes
    the clean tokens ``start..p-1``: ``rows * (p - start)`` wasted row-tokens, worth paying while
    they cost less than the separate forward they save."""
    groups: list[list[int]] = []
    for position in sorted(rows_at):
        if groups and rows_at[position] * (position - groups[-1][0]) <= pass_cost:
            groups[-1].append(position)
        else:
            groups.append([position])
    return groups


def _writes_clean_value(
    vector: torch.Tensor, clean: Mapping[int, torch.Tensor], layers: Sequence[int], position: int
) -> bool:
    """The site writes back exactly what the clean run has there, at every layer it writes."""
    return all(
        torch.equal(vector.to(clean[layer].device, clean[layer].dtype), clean[layer][0, position])
        for layer in layers
    )


def _in_last_block_before_last_token(
    layers: Sequence[int], position: int, length: int, depth: int
) -> bool:
    """Only attention moves anything between positions, and it reads a block's input: a write in
    the last block (its output or either sub-layer's) at an earlier position never reaches the
    last token's logits."""
    return min(layers) == depth - 1 and position < length - 1


def _rows_each_block_computes(layer_sets: Sequence[Sequence[int]], depth: int) -> list[int]:
    """``computed[l]``: how many leading rows block ``l`` computes (rows first patched before
    ``l``)."""
    firsts = [min(layers) for layers in layer_sets]
    return [sum(first < layer for first in firsts) for layer in range(depth)]


def _clean_prefix_cache(clean_cache, position: int, length: int):
    """The clean run's cache cut to its first ``position`` tokens (a copy: forwards mutate it)."""
    past = copy.deepcopy(clean_cache)
    # A negative count removes that many tokens: the one form every transformers version
    # accepts (5.x refuses a positive target length).
    past.crop(position - length)
    return past


@contextmanager
def _rows_from_their_layer(
    model,
    clean: Mapping[int, torch.Tensor],
    computed: Sequence[int],
    layer_sets: Sequence[Sequence[int]],
    offsets: Sequence[int],
    vectors: torch.Tensor,
) -> Iterator[None]:
    """While inside, block ``l`` runs on the first ``computed[l]`` rows of the batch only, the
    other rows take the clean output ``clean[l]``, and row ``b`` gets its vector at suffix index
    ``offsets[b]`` after every block in its layer set. The blocks' own forwards are restored on
    exit, always."""
    blocks = decoder_layers(model)
    written = {
        layer: torch.tensor(
            [row for row, layers in enumerate(layer_sets) if layer in layers], dtype=torch.long
        )
        for layer in range(len(blocks))
    }
    at = torch.tensor(offsets, dtype=torch.long)

    def replacement(layer: int, original):
        def forward(hidden_states, *args, **kwargs):
            batch, count = hidden_states.shape[0], computed[layer]
            out = clean[layer].to(hidden_states.dtype).expand(batch, -1, -1).clone()
            if count:
                out[:count] = original(
                    hidden_states[:count],
                    *args,
                    **{k: _leading_rows(v, count, batch) for k, v in kwargs.items()},
                )
            rows = written[layer]
            if len(rows):
                out[rows, at[rows]] = vectors[rows].to(out.dtype)
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
    if (
        isinstance(value, torch.Tensor)
        and value.dim() >= 2
        and value.shape[0] == batch
        and batch > 1
    ):
        return value[:count]
    if isinstance(value, tuple):
        return tuple(_leading_rows(v, count, batch) for v in value)
    return value


@torch.no_grad()
def patch_one_site(
    model,
    input_ids: torch.Tensor,
    layer: int | Sequence[int],
    position: int,
    vector: torch.Tensor,
    component: str = "residual",
) -> torch.Tensor:
    """The naive reference: one full forward with one site (a layer, or every layer of a block)
    patched; ``Float[Tensor, "vocab"]``."""
    with write_rows(model, [layer], position, vector[None], component):
        logits = model(input_ids=input_ids[None].to(model.device), logits_to_keep=1).logits[
            0, -1, :
        ]
    return logits.float().cpu()
