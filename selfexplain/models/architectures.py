"""Every hook point of each architecture: one small declarative table.

The residual stream after decoder block ``i`` is the output of ``<layers>[i]``; the stream
entering block 0 is the output of ``<embed>``; block ``i``'s attention and MLP contributions
(before they are added to the stream) are the outputs of ``<layers>[i].<attn>`` and
``<layers>[i].<mlp>``. A family not in the table is found through transformers' own accessors
(:func:`discovered_spec`: ``get_decoder()``, ``get_input_embeddings()`` and the usual attribute
names), so most new families need no row; a row pins one down, after the manner of pyvene's
per-model tables. Nothing else in selfexplain branches on model type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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


# Where families keep their parts, for the ones the table does not list.
LAYER_LISTS = ("layers", "h", "blocks", "block")
FINAL_NORMS = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")
ATTENTIONS = ("self_attn", "attn", "attention", "self_attention")
MLPS = ("mlp", "feed_forward", "ffn")


def arch_spec(model: torch.nn.Module) -> ArchSpec:
    model_type = getattr(model.config, "model_type", None)
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type]
    # found once per model class: every capture and patch asks, and the search walks every module
    if type(model) not in _DISCOVERED:
        _DISCOVERED[type(model)] = discovered_spec(model)
    return _DISCOVERED[type(model)]


_DISCOVERED: dict[type, ArchSpec] = {}


def discovered_spec(model: torch.nn.Module) -> ArchSpec:
    """The hook points of a family the table does not list, found through the decoder that
    ``get_decoder()`` returns (the language model of a multimodal wrapper); a ValueError names the
    model type and the part that could not be found."""
    model_type = getattr(model.config, "model_type", None)
    rows = ", ".join(sorted(ARCHITECTURES))
    known = f"add a row to selfexplain/models/architectures.py (known: {rows})"
    getter = getattr(model, "get_decoder", None)
    decoder = getter() if callable(getter) else None
    if decoder is None:
        raise ValueError(f"model type {model_type!r} has no get_decoder(); {known}")

    def attribute(owner, candidates, what, kind=torch.nn.Module) -> str:
        """The first of ``candidates`` that ``owner`` has as a ``kind``."""
        for name in candidates:
            if isinstance(getattr(owner, name, None), kind):
                return name
        raise ValueError(
            f"model type {model_type!r}: cannot find its {what} (looked for "
            f"{', '.join(candidates)}); {known}"
        )

    path = {id(module): name for name, module in model.named_modules()}
    layers = getattr(decoder, attribute(decoder, LAYER_LISTS, "decoder blocks", nn.ModuleList))
    norm = getattr(decoder, attribute(decoder, FINAL_NORMS, "final norm"))
    return ArchSpec(
        layers=path[id(layers)],
        embed=path[id(model.get_input_embeddings())],
        final_norm=path[id(norm)],
        attn=attribute(layers[0], ATTENTIONS, "attention sub-layer"),
        mlp=attribute(layers[0], MLPS, "MLP sub-layer"),
    )


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
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(config, "hidden_size", None) or config.n_embd
