"""Read and write a model's activations at its hook points, through forward hooks.

A hook point is (layer, component): ``residual`` is the stream after decoder block ``layer``
(the sum every block reads from and adds into); ``attn`` and ``mlp`` are that block's
sub-layer outputs before they are added to it (:mod:`selfexplain.models.architectures` says
where each lives). Reading is activation capture; overwriting a position with a vector from
another run is activation patching (Vig et al. 2020; Meng et al. 2022): if the output changes,
that site carried the information that differs between the runs. Because attention is causal,
a patch at (layer, pos) can only change positions >= pos in later layers, which the tests check.

Every helper is a context manager built on :func:`hooked`, whose hooks are removed in
``finally``: an exception inside never leaves a model patched. Hooks accept a module output that
is a tensor (transformers >= 5) or a tuple whose first item is the hidden states (older
versions, GPT-2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from selfexplain.models.architectures import arch_spec, decoder_layers

COMPONENTS = ("residual", "attn", "mlp")


def hook_point(model: torch.nn.Module, layer: int, component: str = "residual") -> torch.nn.Module:
    """The module whose output is the stream after block ``layer`` or one of its sub-layers."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; choose one of {COMPONENTS}")
    block = decoder_layers(model)[layer]
    if component == "residual":
        return block
    return getattr(block, getattr(arch_spec(model), component))


Edit = Callable[[torch.Tensor], torch.Tensor | None]
"""Sees a hook point's hidden states ``[batch, pos, d_model]``; returns replacements, or None to
leave them as they are (a read)."""


@contextmanager
def hooked(
    model: torch.nn.Module, edits: Mapping[int, Edit], component: str = "residual"
) -> Iterator[None]:
    """During the forwards inside, ``edits[layer]`` sees (and may replace) that hook point's
    output."""
    handles = []

    def make_hook(edit: Edit):
        def hook(_module, _inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            replaced = edit(hidden)
            if replaced is None:
                return None
            return (replaced, *output[1:]) if isinstance(output, tuple) else replaced

        return hook

    try:
        for layer, edit in edits.items():
            handles.append(
                hook_point(model, layer, component).register_forward_hook(make_hook(edit))
            )
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture(
    model: torch.nn.Module, layers: Sequence[int], component: str = "residual"
) -> Iterator[dict[int, torch.Tensor]]:
    """Yield a dict that fills with ``layer -> Float[Tensor, "batch pos d_model"]`` as the model
    runs."""
    captured: dict[int, torch.Tensor] = {}

    def reader(layer: int) -> Edit:
        def read(hidden: torch.Tensor) -> None:
            captured[layer] = hidden.detach()

        return read

    with hooked(model, {layer: reader(layer) for layer in layers}, component):
        yield captured


def capture_residual(model: torch.nn.Module, layers: Sequence[int]):
    """:func:`capture` of the residual stream."""
    return capture(model, layers, "residual")


@contextmanager
def patch_residual(
    model: torch.nn.Module, patches: Mapping[int, Sequence[tuple[int, torch.Tensor]]]
) -> Iterator[None]:
    """Overwrite the stream: ``{layer: [(position, Float[Tensor, "d_model"] or "batch d_model"),
    ...]}``.

    A 1-d vector is written into every sequence of the batch; a 2-d one gives each sequence its own.
    """

    def writer(sites: Sequence[tuple[int, torch.Tensor]]) -> Edit:
        def write(hidden: torch.Tensor) -> torch.Tensor:
            hidden = hidden.clone()
            for position, vector in sites:
                hidden[:, position, :] = vector.to(hidden.dtype)
            return hidden

        return write

    with hooked(model, {layer: writer(list(sites)) for layer, sites in patches.items()}):
        yield


@contextmanager
def write_rows(
    model: torch.nn.Module,
    row_layers: Sequence[int | Sequence[int]],
    offset: int | Sequence[int],
    vectors: torch.Tensor,
    component: str = "residual",
) -> Iterator[None]:
    """During the forwards inside, batch row ``b`` gets ``vectors[b]`` written at sequence index
    ``offset`` (or ``offset[b]``, one per row) of ``component`` in layer ``row_layers[b]`` (or in
    every layer of a block, when ``row_layers[b]`` is a list): each row of a batch patched at its
    own site."""
    offsets = torch.tensor(offset) if not isinstance(offset, int) else None
    by_layer: dict[int, list[int]] = {}
    for row, layers in enumerate(row_layers):
        for layer in [layers] if isinstance(layers, int) else layers:
            by_layer.setdefault(layer, []).append(row)

    def writer(index: torch.Tensor) -> Edit:
        def write(hidden: torch.Tensor) -> torch.Tensor:
            hidden = hidden.clone()
            at = offset if offsets is None else offsets[index]
            hidden[index, at, :] = vectors[index].to(hidden.device, hidden.dtype)
            return hidden

        return write

    with hooked(
        model, {layer: writer(torch.tensor(rows)) for layer, rows in by_layer.items()}, component
    ):
        yield
