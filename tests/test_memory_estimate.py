"""The GPU memory estimate: exact parameter and LoRA counts from config.json on the meta device,
and the refusal of a run that cannot fit, before Ray starts."""

import json

import pytest

from selfexplain.cli import main
from selfexplain.config import load_config
from selfexplain.models import load_model
from selfexplain.models.loading import resolve_model_dir
from selfexplain.train.memory import estimate, model_shape

# Llama-3.1-8B's config.json (meta-llama/Llama-3.1-8B-Instruct), the fields that set its size.
LLAMA_8B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "tie_word_embeddings": False,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
}


@pytest.fixture(scope="module")
def llama_8b(tmp_path_factory):
    """A folder with Llama-3.1-8B's config.json, weights that are a sparse file of the right size
    (the header lists every tensor; no disk is used), and a tokenizer, so the pre-run check reads
    it as it would the real one."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("llama-8b")
    (folder / "config.json").write_text(json.dumps(LLAMA_8B))
    shape = model_shape(folder)
    save_file({}, str(folder / "empty.safetensors"))  # the format, then a header of our own
    header = {"w": {"dtype": "BF16", "shape": [shape.parameters], "data_offsets": [0, 0]}}
    header["w"]["data_offsets"][1] = 2 * shape.parameters
    text = json.dumps(header).encode()
    with (folder / "model.safetensors").open("wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text)
        handle.truncate(8 + len(text) + 2 * shape.parameters)
    (folder / "empty.safetensors").unlink()
    _, tokenizer = load_model("tiny-llama")
    tokenizer.save_pretrained(folder)
    return folder


def test_counts_are_exact_and_an_8b_full_fine_tune_needs_zero3_or_lora(llama_8b):
    model, _ = load_model("tiny-llama")
    tiny = model_shape(resolve_model_dir("tiny-llama"))
    assert tiny.parameters == sum(p.numel() for p in model.parameters())
    shape = model_shape(llama_8b)
    assert 8.0e9 < shape.parameters < 8.1e9  # Llama-3.1-8B has 8.03B
    # all-linear LoRA at r=128: 32 layers x 128 x (q 8192 + k 5120 + v 5120 + o 8192 + 3 x 18432)
    assert shape.lora_parameters(128, "all-linear") == 32 * 128 * 81920

    def gpu(*overrides):
        return estimate(load_config("demo", ["train.use_gpu=true", *overrides]).train, shape)

    full = gpu("train.batch_size=8", "train.grad_accum=8")
    assert not full.fits and full.weights_gib + full.gradients_gib + full.optimizer_gib > 110
    assert gpu("train.lora_rank=128", "train.batch_size=32", "train.grad_accum=4").fits
    assert gpu(
        "train.zero_stage=3", "train.num_workers=8", "train.batch_size=8", "train.grad_accum=8"
    ).fits
    # activations: 32 sequences of 500 tokens at once do not fit beside LoRA; checkpointing does
    lora = ("train.lora_rank=128", "train.batch_size=32")
    assert not gpu(*lora).fits
    assert gpu(*lora, "train.gradient_checkpointing=true").fits


def test_a_run_that_cannot_fit_is_refused_before_ray_starts(llama_8b, tmp_path, capsys):
    code = main(
        ["train", "demo", f"output_dir={tmp_path}", f"target={llama_8b}", "task=patching",
         "train.use_gpu=true", "train.batch_size=8", "train.grad_accum=8"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "will not fit its GPUs" in err[0] and "of 80" in err[0]
    assert "train.lora_rank=128" in err[0] and "train.zero_stage=3" in err[0]
    assert not any(tmp_path.iterdir())  # nothing written
