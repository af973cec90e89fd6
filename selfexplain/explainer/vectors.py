"""Continuous tokens: how a vector from the target reaches the explainer (the paper's interface).

A query that carries a vector holds the span ``<|vector_start|><|vector|><|vector_end|>``. Before
the explainer runs, the input embedding at the ``<|vector|>`` placeholder is replaced by the
vector. By default (``train.rescale_vectors``) the vector is first scaled to a fixed reference
norm: the mean norm of the explainer's *looked-up* token embeddings when it was loaded (what its
embedding module returns, so Gemma's sqrt(hidden size) scale is included), stored in
``vector_interface.json``. A raw residual vector can be 100x larger than any embedding, and a
fixed reference (not a statistic of the batch) keeps a query's answer independent of its
neighbours. ``rescale_vectors=false`` writes the vector in as it is, as the paper does.

When the explainer is a different model (another hidden size), a learned linear map per target
layer takes the vector into the explainer's embedding space and trains with the explainer; for a
self-explainer the map is optional and starts as the identity. The map can instead start as a
least-squares fit between the two models' embeddings of the tokens they share (the paper's
"pre-trained projection"), or as a fixed random orthogonal map (a control: the target reading its
own vectors in a scrambled basis).

``train.vector_control`` withholds the vector, in training and in scoring alike: ``zero`` writes
zeros, ``shuffled`` gives each query another query's vector (of the same layer). The difference
to the same explainer with its vectors is "gain from the vector", the paper's "- activation"
ablation.

:class:`ExplainerWithVectors` wraps a causal LM so that DeepSpeed (and ZeRO-3's parameter
gathering) sees one module: the embedding lookup goes through the LM's own embedding module.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

VECTOR_TOKEN = "<|vector|>"
VECTOR_START = "<|vector_start|>"
VECTOR_END = "<|vector_end|>"
VECTOR_SPAN = f"{VECTOR_START}{VECTOR_TOKEN}{VECTOR_END}"


@dataclass(frozen=True)
class VectorMarkers:
    """The three tokens of a vector span in one explainer's vocabulary."""

    start: str
    placeholder: str
    end: str

    @property
    def span(self) -> str:
        return f"{self.start}{self.placeholder}{self.end}"


ADDED_MARKERS = VectorMarkers(VECTOR_START, VECTOR_TOKEN, VECTOR_END)
# The paper's markers: special tokens a family's tokenizer already holds and text never produces,
# so their embedding rows exist and the vocabulary does not grow.
FAMILY_MARKERS = {
    "llama-3 reserved tokens": VectorMarkers(
        "<|reserved_special_token_10|>",
        "<|reserved_special_token_12|>",
        "<|reserved_special_token_11|>",
    ),
    "qwen vision tokens": VectorMarkers("<|vision_start|>", "<|vision_pad|>", "<|vision_end|>"),
}


# tokenizer -> (its length when decided, its markers). get_added_vocab takes 3 ms on Gemma's
# tokenizer (6,384 added tokens), and encoding asks once per example and phrasing: minutes before
# each of Gemma's training stages. Keyed weakly on the tokenizer itself, and decided again if
# tokens were added.
_DECIDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def vector_markers(tokenizer) -> VectorMarkers:
    """The family's own markers when its tokenizer holds them, else selfexplain's added tokens.
    Decided by the vocabulary alone, so training, evaluation and a loaded export agree."""
    size = len(tokenizer)
    decided = _DECIDED.get(tokenizer)
    if decided is not None and decided[0] == size:
        return decided[1]
    special = tokenizer.get_added_vocab()
    found = next(
        (
            markers
            for markers in FAMILY_MARKERS.values()
            if all(t in special for t in (markers.start, markers.placeholder, markers.end))
        ),
        ADDED_MARKERS,
    )
    _DECIDED[tokenizer] = (size, found)
    return found


def in_explainer_markers(tokenizer, text: str) -> str:
    """A query written with selfexplain's vector span, in the explainer's own markers (queries in
    a corpus are model-independent; the span is swapped when an explainer tokenizes them)."""
    markers = vector_markers(tokenizer)
    return text if markers is ADDED_MARKERS else text.replace(VECTOR_SPAN, markers.span)


def add_vector_tokens(tokenizer) -> int:
    """Make the vector span tokenizable: a family's own markers, or selfexplain's three tokens
    added (if missing, always in the same order, so every copy of a tokenizer gives the same
    ids). Return the placeholder's id."""
    markers = vector_markers(tokenizer)
    if markers is ADDED_MARKERS:
        vocab = tokenizer.get_vocab()
        missing = [t for t in (VECTOR_START, VECTOR_TOKEN, VECTOR_END) if t not in vocab]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(markers.placeholder)


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


NORM_SAMPLE_TOKENS = 8192


@torch.no_grad()
def token_embedding_norm(model, vocab_size: int | None = None) -> float:
    """The mean L2 norm of ``model``'s token embeddings *as looked up* (through its embedding
    module, so a family that scales them, as Gemma multiplies by sqrt(hidden size), is measured
    at that scale): the rescaling reference. Measured on up to 8,192 evenly spaced ids of the
    first ``vocab_size`` (default: every row)."""
    embeddings = model.get_input_embeddings()
    rows = vocab_size or embeddings.weight.shape[0]
    ids = torch.linspace(0, rows - 1, min(rows, NORM_SAMPLE_TOKENS)).round().long().unique()
    looked_up = embeddings(ids.to(embeddings.weight.device)[None])[0]
    return float(looked_up.float().norm(dim=-1).mean())


def controlled_vectors(
    vectors: torch.Tensor,
    control: str,
    layers: torch.Tensor | None = None,
    keys: list[str] | None = None,
) -> torch.Tensor:
    """``vectors`` under a "without the vector" control: ``none`` as they are, ``zero`` zeroed,
    ``shuffled`` each row given another row's vector of the same layer (a fixed derangement of
    the rows ordered by ``keys``, so a query gets the same stand-in in every batch and run)."""
    if control == "none":
        return vectors
    if control == "zero":
        return torch.zeros_like(vectors)
    if control != "shuffled":
        raise ValueError(f"unknown vector control {control!r}; use none, zero or shuffled")
    order = (
        sorted(range(len(vectors)), key=lambda i: keys[i])
        if keys is not None
        else list(range(len(vectors)))
    )
    groups: dict[int, list[int]] = {}
    for i in order:
        groups.setdefault(int(layers[i]) if layers is not None else 0, []).append(i)
    out = vectors.clone()
    for members in groups.values():
        for i, j in zip(members, members[1:] + members[:1]):  # each row takes the next one's
            out[i] = vectors[j]
    return out


def vector_batch(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """(``Float[Tensor, "row d_target"]`` vectors, their target layers) from corpus-style rows."""

    vectors = torch.from_numpy(np.stack([np.asarray(r["vector"], dtype=np.float32) for r in rows]))
    return vectors, torch.tensor([int(r["layer"]) for r in rows])


class VectorProjection(nn.Module):
    """One linear map per target layer, target hidden size -> explainer hidden size.

    The maps are one parameter ``weight[layer_index]`` rather than a module per layer: a batch
    uses only some layers, and data-parallel ranks must still all reduce a gradient for every
    parameter (gloo aborts on a size mismatch when one rank's batch skipped a layer's module).
    """

    def __init__(
        self,
        layers: list[int],
        d_target: int,
        d_explainer: int,
        init: str = "default",
        seed: int = 0,
    ):
        super().__init__()
        self.layers = sorted(layers)
        weight = torch.empty(len(self.layers), d_explainer, d_target)
        generator = torch.Generator().manual_seed(seed)  # every rank starts from the same map
        if init == "orthogonal":  # a fixed random basis change (a control), norms kept exactly
            for index in range(len(self.layers)):
                gaussian = torch.randn(
                    max(d_explainer, d_target), min(d_explainer, d_target), generator=generator
                )
                q, _ = torch.linalg.qr(gaussian)
                weight[index] = q if d_explainer >= d_target else q.T
        elif d_target == d_explainer:
            weight.copy_(torch.eye(d_target).expand_as(weight))
        else:  # a random map that roughly keeps norms
            weight.normal_(std=d_target**-0.5, generator=generator)
        self.weight = nn.Parameter(weight)

    @torch.no_grad()
    def fit_least_squares(self, source: torch.Tensor, destination: torch.Tensor) -> float:
        """Start every layer's map as the least-squares map from ``source`` rows (the target's
        embeddings of shared tokens) to ``destination`` rows (the explainer's embeddings of the
        same tokens); return the fit's R^2."""
        source, destination = source.float(), destination.float()
        solution = torch.linalg.lstsq(source, destination).solution  # (d_target, d_explainer)
        self.weight.copy_(solution.T.expand_as(self.weight))
        residual = destination - source @ solution
        total = destination - destination.mean(dim=0)
        return float(1 - residual.pow(2).sum() / total.pow(2).sum())

    def forward(self, vectors: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
        out = vectors.new_zeros(vectors.shape[0], self.weight.shape[1])
        if not len(vectors):  # still a (zero) gradient for the weight: every rank must reduce it
            return out + 0.0 * self.weight.sum()
        for layer in layers.unique().tolist():
            if layer not in self.layers:
                raise ValueError(
                    f"no projection for target layer {layer}; this explainer knows {self.layers}"
                )
            rows = layers == layer
            # under bf16 autocast the product is bf16; the vectors keep their own dtype, as the
            # embeddings they are written into do
            out[rows] = (vectors[rows] @ self.weight[self.layers.index(layer)].T).to(out.dtype)
        return out


class ExplainerWithVectors(nn.Module):
    """A causal LM whose ``<|vector|>`` positions receive vectors instead of token embeddings."""

    def __init__(
        self,
        lm: nn.Module,
        vector_token_id: int,
        projection: VectorProjection | None,
        rescale: bool = True,
        reference_norm: float | None = None,
    ):
        super().__init__()
        self.lm = lm
        self.projection = projection
        self.vector_token_id = vector_token_id
        self.rescale = rescale
        self.reference_norm = (
            reference_norm if reference_norm is not None else token_embedding_norm(lm)
        )
        """The norm every injected vector is scaled to (with ``rescale``)."""

    @property
    def config(self):
        return self.lm.config

    def embed(
        self,
        input_ids: torch.Tensor,
        vectors: torch.Tensor | None = None,
        vector_layers: torch.Tensor | None = None,
    ) -> torch.Tensor:
        embeds = self.lm.get_input_embeddings()(input_ids)
        where = input_ids == self.vector_token_id
        if vectors is None:
            return embeds
        rows = where.any(dim=1)
        if not rows.any():
            if self.projection is not None:
                # A batch of text tasks only (a task mix): run the projection on nothing, so its
                # weight still gets a (zero) gradient and data-parallel ranks reduce the same
                # tensors.
                embeds = embeds + self.projection(vectors[:0], vector_layers[:0]).sum()
            return embeds
        if (where.sum(dim=1) > 1).any():
            raise ValueError(
                "a query holds more than one vector placeholder; one vector per query is supported"
            )
        values = vectors[rows].to(embeds.dtype)
        if self.projection is not None:
            values = self.projection(values, vector_layers[rows])
        if self.rescale:
            values = (
                values / values.norm(dim=-1, keepdim=True).clamp(min=1e-6) * self.reference_norm
            )
        embeds = embeds.clone()
        embeds[where] = values
        return embeds

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        vectors=None,
        vector_layers=None,
        **kwargs,
    ):
        return self.lm(
            inputs_embeds=self.embed(input_ids, vectors, vector_layers),
            attention_mask=attention_mask,
            position_ids=position_ids,
            **kwargs,
        )


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
        projection = VectorProjection(
            list(interface.layers),
            interface.d_target,
            interface.d_explainer,
            interface.projection_init,
        )
        projection.weight.requires_grad_(not interface.projection_frozen)
    return ExplainerWithVectors(
        model, token_id, projection, interface.rescale, interface.reference_norm
    )
