"""Saving and loading a trained explainer as a plain HF directory, plus its vector interface.

The directory loads with ``transformers.AutoModelForCausalLM.from_pretrained`` alone (its
tokenizer includes the vector placeholder tokens). A vector-task explainer adds two small files:
``vector_interface.json`` (placeholder token, target model and layers, sizes, rescaling and its
reference norm) and,
when a projection was trained, ``vector_projection.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from selfexplain.explainer.interface import INTERFACE, VectorInterface
from selfexplain.explainer.vectors import VECTOR_TOKEN, ExplainerWithVectors, VectorProjection

PROJECTION = "vector_projection.safetensors"


def save_explainer(module, tokenizer, out_dir: Path, interface: VectorInterface | None,
                   state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """``module`` is the LM or an :class:`ExplainerWithVectors`; ``state_dict`` a consolidated one
    (ZeRO-3) with the same key names as ``module``, or None to read the module's own."""
    with_vectors = isinstance(module, ExplainerWithVectors)
    lm = module.lm if with_vectors else module
    lm_state = projection_state = None
    if state_dict is not None and with_vectors:
        lm_state = {k[len("lm."):]: v for k, v in state_dict.items() if k.startswith("lm.")}
        projection_state = {k[len("projection."):]: v for k, v in state_dict.items() if k.startswith("projection.")}
    elif state_dict is not None:
        lm_state = state_dict
    lm.save_pretrained(out_dir, state_dict=lm_state, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if with_vectors:
        (out_dir / INTERFACE).write_text(interface.to_json())
        if module.projection is not None:
            if projection_state is None:
                projection_state = module.projection.state_dict()
            save_file({k: v.detach().float().contiguous().cpu() for k, v in projection_state.items()},
                      str(out_dir / PROJECTION))


def load_explainer(folder: str | Path, device="cpu", dtype=torch.float32, trust_remote_code: bool = False):
    """(model, tokenizer): the LM, or an :class:`ExplainerWithVectors` when the folder has a vector interface."""
    from selfexplain.models.loading import load_model, resolve_model_dir

    folder = resolve_model_dir(str(folder))  # a local folder, or a URI copied to this node
    lm, tokenizer = load_model(folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    interface_path = folder / INTERFACE
    if not interface_path.is_file():
        return lm, tokenizer
    interface = VectorInterface.read(interface_path)
    projection = None
    if interface.projected:
        projection = VectorProjection(list(interface.layers), interface.d_target, interface.d_explainer)
        projection.load_state_dict(load_file(str(folder / PROJECTION)))
        projection.to(device=device, dtype=dtype)
    model = ExplainerWithVectors(lm, tokenizer.convert_tokens_to_ids(VECTOR_TOKEN), projection, interface.rescale,
                                 interface.reference_norm)
    model.interface = interface
    return model.eval(), tokenizer
