"""The patching task's generate options (``generate.<key>``): a light module, so the config can
gather them without importing the task's model code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PatchingOptions:
    pairs: str = "builtin"
    """patching: prompt pairs, ``builtin`` (templated facts the target must answer correctly) or a
    .jsonl file of ``{"prompt": ..., "counterfactual": ...}`` objects (optionally ``answer``,
    ``cf_answer``, ``relation``, ``template``, ``entity``)."""
    layer_blocks: int = 0
    """patching: 0 patches one layer at a time; N > 0 splits the used layers into N blocks of
    consecutive layers and writes the counterfactual's activation, averaged over a block, into
    every layer of that block at one position (the paper's block patching: 4 blocks of 8 layers
    for Llama-3.1-8B). The query names the block (``layer 8-15``)."""
    component: Literal["residual", "attn", "mlp"] = "residual"
    """patching: what is patched, ``residual`` (the stream after a block), ``attn`` or ``mlp``
    (that sub-layer's output)."""

    def rules(self) -> list[tuple[bool, str, str]]:
        layers = getattr(self, "layers", [])  # the shared generate.layers, beside these options
        fits = self.layer_blocks >= 0 and (not layers or self.layer_blocks <= len(layers))
        fix = "use 0 (single-layer patching) or at most as many blocks as generate.layers"
        return [(fits, "generate.layer_blocks", fix)]
