"""Read and write the residual stream at (layer, position) through forward hooks.

The residual stream is the sum every block reads from and adds into; ``layer=i`` means the
stream *after* decoder block ``i``. Reading it is activation capture; overwriting one position
with a vector from another run is activation patching (Vig et al. 2020; Meng et al. 2022): if
the output changes, that site carried the information that differs between the two runs.
Because attention is causal, a patch at (layer, pos) can only change positions >= pos in later
layers, which the tests check.

Both are context managers whose hooks are removed in ``finally``, so an exception inside never
leaves a model patched. Hooks accept a block output that is a tensor (transformers >= 5) or a
tuple whose first item is the hidden states (older versions, GPT-2).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch

from selfexplain.models.architectures import decoder_layers


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@contextmanager
def capture_residual(model: torch.nn.Module, layers: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Yield a dict that fills with ``layer -> Float[Tensor, "batch pos d_model"]`` as the model runs."""
    blocks = decoder_layers(model)
    captured: dict[int, torch.Tensor] = {}
    handles = []

    def make_hook(layer: int):
        def hook(_module, _inputs, output):
            captured[layer] = _hidden(output).detach()
        return hook

    try:
        for layer in layers:
            handles.append(blocks[layer].register_forward_hook(make_hook(layer)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def patch_residual(
    model: torch.nn.Module,
    patches: Mapping[int, Sequence[tuple[int, torch.Tensor]]],
) -> Iterator[None]:
    """Overwrite the stream: ``{layer: [(position, Float[Tensor, "d_model"] or "batch d_model"), ...]}``.

    A 1-d vector is written into every sequence of the batch; a 2-d one gives each sequence its own.
    """
    blocks = decoder_layers(model)
    handles = []

    def make_hook(sites: Sequence[tuple[int, torch.Tensor]]):
        def hook(_module, _inputs, output):
            hidden = _hidden(output).clone()
            for position, vector in sites:
                hidden[:, position, :] = vector.to(hidden.dtype)
            return _replace_hidden(output, hidden)
        return hook

    try:
        for layer, sites in patches.items():
            handles.append(blocks[layer].register_forward_hook(make_hook(list(sites))))
        yield
    finally:
        for handle in handles:
            handle.remove()
