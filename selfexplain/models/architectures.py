"""Every hook point of each architecture: one small declarative table.

The residual stream after decoder block ``i`` is the output of ``<layers>[i]``; the stream
entering block 0 is the output of ``<embed>``; block ``i``'s attention and MLP contributions
(before they are added to the stream) are the outputs of ``<layers>[i].<attn>`` and
``<layers>[i].<mlp>``. Adding an architecture is one row here, after the manner of pyvene's
per-model tables; nothing else in selfexplain branches on model type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ArchSpec:
    layers: str
    """Attribute path of the ModuleList of decoder blocks."""
    embed: str
    """Attribute path of the token embedding (its output is the stream entering block 0)."""
    final_norm: str
    """Attribute path of the norm applied before the unembedding."""
    attn: str
    """Attribute of a decoder block holding its attention sub-layer."""
    mlp: str
    """Attribute of a decoder block holding its MLP sub-layer."""


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec(
        layers="model.layers",
        embed="model.embed_tokens",
        final_norm="model.norm",
        attn="self_attn",
        mlp="mlp",
    ),
    "gemma3_text": ArchSpec(
        layers="model.layers",
        embed="model.embed_tokens",
        final_norm="model.norm",
        attn="self_attn",
        mlp="mlp",
    ),
    "gpt2": ArchSpec(
        layers="transformer.h",
        embed="transformer.wte",
        final_norm="transformer.ln_f",
        attn="attn",
        mlp="mlp",
    ),
}


def arch_spec(model: torch.nn.Module) -> ArchSpec:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"model type {model_type!r} has no residual-stream entry; add one to "
            f"selfexplain/models/architectures.py (known: {', '.join(sorted(ARCHITECTURES))})"
        )
    return ARCHITECTURES[model_type]


def get_module(model: torch.nn.Module, path: str) -> torch.nn.Module:
    module = model
    for part in path.split("."):
        module = getattr(module, part)
    return module


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    return get_module(model, arch_spec(model).layers)


def num_layers(model: torch.nn.Module) -> int:
    return len(decoder_layers(model))


def hidden_size(model: torch.nn.Module) -> int:
    config = model.config
    return getattr(config, "hidden_size", None) or config.n_embd
