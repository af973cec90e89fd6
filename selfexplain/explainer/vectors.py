"""Continuous tokens: how a vector from the target reaches the explainer (the paper's interface).

A query that carries a vector holds the span ``<|vector_start|><|vector|><|vector_end|>``. Before
the explainer runs, the input embedding at the ``<|vector|>`` placeholder is replaced by the
vector. By default (``train.rescale_vectors``) the vector is first scaled to a fixed reference
norm: the mean row norm of the explainer's embedding matrix when it was loaded, stored in
``vector_interface.json``. A raw residual vector can be 100x larger than any embedding, and a
fixed reference (not a statistic of the batch) keeps a query's answer independent of its
neighbours. ``rescale_vectors=false`` writes the vector in as it is, as the paper does. When the explainer is a different model (another hidden
size), a learned linear map per target layer takes the vector into the explainer's embedding
space and trains with the explainer; for a self-explainer the map is optional and starts as the
identity.

:class:`ExplainerWithVectors` wraps a causal LM so that DeepSpeed (and ZeRO-3's parameter
gathering) sees one module: the embedding lookup goes through the LM's own embedding module.
"""

from __future__ import annotations

import torch
from torch import nn

VECTOR_TOKEN = "<|vector|>"
VECTOR_START = "<|vector_start|>"
VECTOR_END = "<|vector_end|>"
VECTOR_SPAN = f"{VECTOR_START}{VECTOR_TOKEN}{VECTOR_END}"


def add_vector_tokens(tokenizer) -> int:
    """Add the marker and placeholder tokens to a tokenizer (if missing); return the placeholder's
    id. Always added in the same order, so every copy of a tokenizer gives the same ids."""
    missing = [t for t in (VECTOR_START, VECTOR_TOKEN, VECTOR_END) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(VECTOR_TOKEN)


def grow_embeddings(model, tokenizer) -> None:
    """Give ``model`` embedding rows for every token of ``tokenizer``; new rows start at the mean
    embedding, a neutral point."""
    vocab = len(tokenizer)
    embeddings = model.get_input_embeddings()
    if embeddings.weight.shape[0] < vocab:
        old = embeddings.weight.shape[0]
        model.resize_token_embeddings(vocab, mean_resizing=False)
        with torch.no_grad():
            weight = model.get_input_embeddings().weight
            weight[old:] = weight[:old].mean(dim=0)
            output = model.get_output_embeddings()
            if output is not None and output.weight.data_ptr() != weight.data_ptr():
                output.weight[old:] = output.weight[:old].mean(dim=0)


def mean_embedding_norm(model) -> float:
    """The mean L2 norm of the rows of ``model``'s input embedding matrix (the rescaling reference)."""
    weight = model.get_input_embeddings().weight
    return float(weight.detach().float().norm(dim=-1).mean())


def vector_batch(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(``Float[Tensor, "row d_target"]`` vectors, their target layers) from corpus-style rows."""
    import numpy as np

    vectors = torch.from_numpy(np.stack([np.asarray(r["vector"], dtype=np.float32) for r in rows]))
    return vectors, torch.tensor([int(r["layer"]) for r in rows])


class VectorProjection(nn.Module):
    """One linear map per target layer, target hidden size -> explainer hidden size.

    The maps are one parameter ``weight[layer_index]`` rather than a module per layer: a batch
    uses only some layers, and data-parallel ranks must still all reduce a gradient for every
    parameter (gloo aborts on a size mismatch when one rank's batch skipped a layer's module).
    """

    def __init__(self, layers: list[int], d_target: int, d_explainer: int):
        super().__init__()
        self.layers = sorted(layers)
        weight = torch.empty(len(self.layers), d_explainer, d_target)
        if d_target == d_explainer:
            weight.copy_(torch.eye(d_target).expand_as(weight))
        else:  # a random map that roughly keeps norms
            nn.init.normal_(weight, std=d_target ** -0.5)
        self.weight = nn.Parameter(weight)

    def forward(self, vectors: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
        out = vectors.new_zeros(vectors.shape[0], self.weight.shape[1])
        if not len(vectors):  # still a (zero) gradient for the weight: every rank must reduce it
            return out + 0.0 * self.weight.sum()
        for layer in layers.unique().tolist():
            if layer not in self.layers:
                raise ValueError(f"no projection for target layer {layer}; this explainer knows {self.layers}")
            rows = layers == layer
            out[rows] = vectors[rows] @ self.weight[self.layers.index(layer)].T
        return out


class ExplainerWithVectors(nn.Module):
    """A causal LM whose ``<|vector|>`` positions receive vectors instead of token embeddings."""

    def __init__(self, lm: nn.Module, vector_token_id: int, projection: VectorProjection | None,
                 rescale: bool = True, reference_norm: float | None = None):
        super().__init__()
        self.lm = lm
        self.projection = projection
        self.vector_token_id = vector_token_id
        self.rescale = rescale
        self.reference_norm = reference_norm if reference_norm is not None else mean_embedding_norm(lm)
        """The norm every injected vector is scaled to (with ``rescale``)."""

    @property
    def config(self):
        return self.lm.config

    def embed(self, input_ids: torch.Tensor, vectors: torch.Tensor | None = None,
              vector_layers: torch.Tensor | None = None) -> torch.Tensor:
        embeds = self.lm.get_input_embeddings()(input_ids)
        where = input_ids == self.vector_token_id
        if vectors is None:
            return embeds
        rows = where.any(dim=1)
        if not rows.any():
            if self.projection is not None:
                # A batch of text tasks only (a task mix): run the projection on nothing, so its
                # weight still gets a (zero) gradient and data-parallel ranks reduce the same tensors.
                embeds = embeds + self.projection(vectors[:0], vector_layers[:0]).sum()
            return embeds
        if (where.sum(dim=1) > 1).any():
            raise ValueError("a query holds more than one vector placeholder; one vector per query is supported")
        values = vectors[rows].to(embeds.dtype)
        if self.projection is not None:
            values = self.projection(values, vector_layers[rows])
        if self.rescale:
            values = values / values.norm(dim=-1, keepdim=True).clamp(min=1e-6) * self.reference_norm
        embeds = embeds.clone()
        embeds[where] = values
        return embeds

    def forward(self, input_ids, attention_mask=None, position_ids=None, vectors=None, vector_layers=None, **kwargs):
        return self.lm(inputs_embeds=self.embed(input_ids, vectors, vector_layers), attention_mask=attention_mask,
                       position_ids=position_ids, **kwargs)


def with_vector_input(model, tokenizer, interface, adapt_lm=None):
    """The explainer as trained: for vector tasks (``interface``, a
    :class:`~selfexplain.explainer.interface.VectorInterface`) the placeholder tokens, grown
    embeddings and projection around the LM. ``adapt_lm`` (e.g. adding LoRA adapters) is applied
    to the LM after its embeddings grow, so adapters see the final vocabulary."""
    if interface:
        token_id = add_vector_tokens(tokenizer)
        grow_embeddings(model, tokenizer)
    if adapt_lm is not None:
        model = adapt_lm(model)
    if not interface:
        return model
    projection = None
    if interface.projected:
        projection = VectorProjection(list(interface.layers), interface.d_target, interface.d_explainer)
    return ExplainerWithVectors(model, token_id, projection, interface.rescale, interface.reference_norm)
