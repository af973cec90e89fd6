"""Continuous tokens: a vector replaces the placeholder's input embedding (projected when the
explainer is another model), and a saved explainer reloads to the same outputs."""

import json

import torch
from transformers import AutoModelForCausalLM

from selfexplain.explainer.export import INTERFACE, PROJECTION, load_explainer, save_explainer
from selfexplain.explainer.interface import VectorInterface
from selfexplain.explainer.vectors import (
    VECTOR_SPAN,
    ExplainerWithVectors,
    VectorProjection,
    with_vector_input,
)
from selfexplain.models.loading import load_model


def _interface(d_target, d_explainer, projected, layers=(1, 3), rescale=True, reference_norm=None):
    return VectorInterface(
        "tiny-llama", tuple(layers), d_target, d_explainer, projected, rescale, reference_norm
    )


def test_the_placeholder_embedding_is_the_rescaled_vector_and_nothing_else_changes():
    model, tokenizer = load_model("tiny-llama")
    plain = model.get_input_embeddings().weight.detach().clone()
    reference = float(plain.norm(dim=-1).mean())
    explainer = with_vector_input(
        model, tokenizer, _interface(64, 64, projected=False, reference_norm=reference)
    )
    ids = tokenizer(
        [f"At layer 1, {VECTOR_SPAN} encodes", "no vector here at all"],
        return_tensors="pt",
        padding=True,
    )["input_ids"]
    vectors = torch.randn(2, 64) * 100
    embeds = explainer.embed(ids, vectors, torch.tensor([1, 1]))
    where = ids == explainer.vector_token_id
    assert where.sum() == 1 and where[0].any()
    grown = explainer.lm.get_input_embeddings().weight.detach()
    injected = embeds[where][0].detach()
    assert torch.allclose(injected / injected.norm(), vectors[0] / vectors[0].norm(), atol=1e-5)
    assert abs(float(injected.norm()) - reference) < 1e-4 * reference  # the fixed reference norm
    assert torch.equal(embeds[~where], grown[ids[~where]])
    assert torch.equal(grown[: plain.shape[0]], plain)  # old tokens keep their embeddings
    assert torch.allclose(
        grown[plain.shape[0] :], plain.mean(0).expand(3, -1)
    )  # markers start at the mean


def test_a_querys_vector_is_written_the_same_alone_and_in_a_batch_of_32():
    model, tokenizer = load_model("tiny-llama")
    explainer = with_vector_input(model, tokenizer, _interface(64, 64, projected=False))
    tokenizer.padding_side = "left"
    queries = [f"At layer 1, {VECTOR_SPAN} encodes"] + [
        f"Layer 3 direction {VECTOR_SPAN} means {'x ' * k}" for k in range(31)
    ]
    vectors = torch.randn(32, 64) * torch.linspace(1, 300, 32)[:, None]
    layers = torch.tensor([1] + [3] * 31)

    def injected(count):
        ids = tokenizer(queries[:count], return_tensors="pt", padding=True)["input_ids"]
        embeds = explainer.embed(ids, vectors[:count], layers[:count])
        return embeds[0][ids[0] == explainer.vector_token_id]

    assert torch.equal(
        injected(1), injected(32)
    )  # the neighbours (and their padding) do not matter


def test_without_rescaling_the_raw_vector_is_written_in():
    model, tokenizer = load_model("tiny-llama")
    explainer = with_vector_input(
        model, tokenizer, _interface(64, 64, projected=False, rescale=False)
    )
    ids = tokenizer([f"At layer 1, {VECTOR_SPAN} encodes"], return_tensors="pt")["input_ids"]
    vector = torch.randn(1, 64) * 40
    embeds = explainer.embed(ids, vector, torch.tensor([1]))
    assert torch.equal(embeds[ids == explainer.vector_token_id][0], vector[0])


def test_projection_maps_each_layer_with_its_own_matrix():
    projection = VectorProjection([0, 2], d_target=64, d_explainer=96)
    vectors = torch.randn(3, 64)
    out = projection(vectors, torch.tensor([0, 2, 0]))
    assert out.shape == (3, 96)
    assert torch.allclose(out[0], projection.weight[0] @ vectors[0], atol=1e-6)
    assert torch.allclose(out[1], projection.weight[1] @ vectors[1], atol=1e-6)
    assert not torch.allclose(projection.weight[0], projection.weight[1])
    out.sum().backward()  # one parameter: every layer's map gets a gradient, used or not
    assert projection.weight.grad is not None and projection.weight.grad[1].abs().sum() > 0


def test_saved_other_explainer_loads_with_plain_transformers_and_gives_the_same_answers(tmp_path):
    model, tokenizer = load_model("tiny-llama-wide")
    interface = _interface(64, 96, projected=True)
    explainer = with_vector_input(model, tokenizer, interface)
    with torch.no_grad():
        explainer.projection.weight.add_(
            torch.randn_like(explainer.projection.weight) * 0.1
        )  # as if trained
    save_explainer(explainer, tokenizer, tmp_path, interface)
    assert (
        json.loads((tmp_path / INTERFACE).read_text())["projected"]
        and (tmp_path / PROJECTION).is_file()
    )
    plain = AutoModelForCausalLM.from_pretrained(
        tmp_path
    )  # no selfexplain needed for the LM itself
    assert plain.get_input_embeddings().weight.shape[0] == len(tokenizer)

    loaded, loaded_tokenizer = load_explainer(tmp_path)
    assert (
        isinstance(loaded, ExplainerWithVectors)
        and loaded.vector_token_id == explainer.vector_token_id
    )
    batch = loaded_tokenizer([f"At layer 3, {VECTOR_SPAN} encodes"], return_tensors="pt")
    vectors, layers = torch.randn(1, 64), torch.tensor([3])
    with torch.no_grad():
        expected = explainer.eval()(**batch, vectors=vectors, vector_layers=layers).logits
        actual = loaded(**batch, vectors=vectors, vector_layers=layers).logits
    assert torch.allclose(expected, actual, atol=1e-5)


def test_a_family_with_reserved_tokens_carries_the_vector_in_them_without_growing():
    """Llama-3 and Qwen tokenizers hold special tokens text never produces; the paper writes the
    vector span in them, so the vocabulary and the embedding matrix keep their size."""
    from selfexplain.explainer.vectors import FAMILY_MARKERS, add_vector_tokens
    from selfexplain.train.examples import encode_example

    for markers in FAMILY_MARKERS.values():
        model, tokenizer = load_model("tiny-llama")
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [markers.start, markers.placeholder, markers.end]}
        )
        model.resize_token_embeddings(len(tokenizer))  # as the family's checkpoint ships them
        rows, size = model.get_input_embeddings().weight.shape[0], len(tokenizer)
        placeholder = add_vector_tokens(tokenizer)
        explainer = with_vector_input(model, tokenizer, _interface(64, 64, projected=False))
        assert (len(tokenizer), explainer.lm.get_input_embeddings().weight.shape[0]) == (size, rows)
        assert placeholder == tokenizer.convert_tokens_to_ids(markers.placeholder)
        assert explainer.vector_token_id == placeholder
        ids, _ = encode_example(tokenizer, f"At layer 1, {VECTOR_SPAN} encodes", "a colour")
        assert ids.count(placeholder) == 1
        assert tokenizer.convert_tokens_to_ids(markers.start) in ids


def test_markers_are_decided_again_when_the_vocabulary_grows():
    from selfexplain.explainer.vectors import ADDED_MARKERS, FAMILY_MARKERS, vector_markers
    from selfexplain.models.loading import load_tokenizer, resolve_model_dir

    tokenizer = load_tokenizer(str(resolve_model_dir("tiny-llama")))
    assert vector_markers(tokenizer) is ADDED_MARKERS
    assert vector_markers(tokenizer) is ADDED_MARKERS  # the second answer comes from the cache
    qwen = FAMILY_MARKERS["qwen vision tokens"]
    tokenizer.add_tokens([qwen.start, qwen.placeholder, qwen.end], special_tokens=True)
    assert vector_markers(tokenizer) == qwen
