"""Activation capture (forward hooks at every layer) vs a bare forward that returns every
layer's hidden states through ``output_hidden_states``; same model, same batch, same process."""

import torch
from timing import best_time

from selfexplain.models import load_model
from selfexplain.models.hooks import capture

PROMPTS = [
    "The capital of France is Paris, a city on the Seine.",
    "In 1969 the first people walked on the Moon.",
    "def add(a, b):\n    return a + b",
    "The cat sat on the mat and looked out of the window.",
] * 8


def test_capture_matches_a_bare_forward():
    torch.set_num_threads(2)
    model, tokenizer = load_model("smollm2-135m")
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    layers = list(range(model.config.num_hidden_layers))

    @torch.no_grad()
    def bare():
        return model(**batch, output_hidden_states=True, logits_to_keep=1).hidden_states

    @torch.no_grad()
    def hooked():
        with capture(model, layers) as captured:
            model(**batch, logits_to_keep=1)
        return captured

    reference, captured = bare(), hooked()
    # hidden_states[0] is the embeddings; [l + 1] is block l's output, the last one after the final
    # norm
    assert all(torch.equal(captured[layer], reference[layer + 1]) for layer in layers[:-1])
    bare_seconds, hooked_seconds = best_time(bare, repeats=5), best_time(hooked, repeats=5)
    tokens = int(batch["attention_mask"].sum())
    print(
        f"\ncapture, SmolLM2-135M, {len(PROMPTS)} prompts ({tokens} tokens), all {len(layers)} "
        f"layers: "
        f"bare forward with output_hidden_states {bare_seconds:.3f}s, selfexplain's capture "
        f"{hooked_seconds:.3f}s: {hooked_seconds / bare_seconds:.2f}x the bare forward"
    )
