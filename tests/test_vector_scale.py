"""An injected vector arrives at the scale of the tokens around it, for every family: the
reference is the norm of *looked-up* token embeddings, so a family that scales them (Gemma
multiplies by sqrt(hidden size)) is matched too."""

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from selfexplain.explainer.interface import VectorInterface
from selfexplain.explainer.vectors import VECTOR_SPAN, VectorProjection, with_vector_input
from selfexplain.models.tiny import train_tiny_tokenizer

QUERY = f"At layer 3, the vector {VECTOR_SPAN} encodes the meaning of a common English word"


def injected_and_neighbour_norms(
    model, tokenizer, d_target: int, projected: bool
) -> tuple[float, float]:
    """(the injected vector's norm, the mean norm of the query's ordinary tokens)."""
    vocab = len(tokenizer)  # before the vector tokens are added
    d_explainer = model.get_input_embeddings().weight.shape[1]
    interface = VectorInterface("target", (3,), d_target, d_explainer, projected, rescale=True)
    wrapped = with_vector_input(model, tokenizer, interface)
    ids = tokenizer(QUERY, return_tensors="pt", add_special_tokens=False)["input_ids"]
    raw = (
        torch.randn(1, d_target, generator=torch.Generator().manual_seed(0)) * 300
    )  # a residual's scale
    with torch.no_grad():
        embeds = wrapped.embed(ids, raw, torch.tensor([3]))[0]
    where = ids[0] == wrapped.vector_token_id
    ordinary = ids[0] < vocab
    return float(embeds[where].norm()), float(embeds[ordinary].norm(dim=-1).mean())


def test_a_scaled_embedding_family_gets_vectors_at_its_token_scale():
    tokenizer = train_tiny_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).eval()
    injected, neighbours = injected_and_neighbour_norms(
        model, tokenizer, d_target=48, projected=True
    )
    assert (
        neighbours > 4 * model.get_input_embeddings().weight.norm(dim=-1).mean()
    )  # the sqrt(64) scale
    assert injected == pytest.approx(neighbours, rel=0.2)


def test_a_least_squares_projection_fits_shared_tokens():
    source = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    truth = torch.randn(12, 8, generator=torch.Generator().manual_seed(2))
    projection = VectorProjection([0, 5], d_target=8, d_explainer=12)
    assert projection.fit_least_squares(source, source @ truth.T) == pytest.approx(1.0)
    assert torch.allclose(projection.weight[1], truth, atol=1e-4)
    orthogonal = VectorProjection([0], d_target=8, d_explainer=8, init="orthogonal")
    assert torch.allclose(orthogonal.weight[0] @ orthogonal.weight[0].T, torch.eye(8), atol=1e-5)


def test_a_projection_trains_under_bf16_autocast():
    projection = VectorProjection([0, 5], d_target=8, d_explainer=12)
    vectors, layers = torch.randn(4, 8), torch.tensor([0, 5, 5, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = projection(vectors, layers)
    assert out.dtype == torch.float32  # the dtype of the embeddings it is written into
    out.sum().backward()
    assert projection.weight.grad is not None and projection.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("explainer, projected", [("smollm2-135m", False), ("gemma3-270m", True)])
def test_the_embedded_models_get_vectors_at_their_token_scale(explainer, projected):
    from selfexplain.models.loading import load_model

    model, tokenizer = load_model(explainer)
    injected, neighbours = injected_and_neighbour_norms(
        model, tokenizer, d_target=576, projected=projected
    )
    assert injected == pytest.approx(neighbours, rel=0.2), (injected, neighbours)
