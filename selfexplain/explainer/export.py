"""Saving and loading a trained explainer as a plain HF directory, plus its vector interface.

The directory loads with ``transformers.AutoModelForCausalLM.from_pretrained`` alone (its
tokenizer includes the vector placeholder tokens). A vector-task explainer adds two small files:
``vector_interface.json`` (placeholder token, target model and layers, sizes, rescaling and its
reference norm) and,
when a projection was trained, ``vector_projection.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from selfexplain.errors import InputError
from selfexplain.explainer.vectors import VECTOR_TOKEN, ExplainerWithVectors, VectorProjection
from selfexplain.inputs import read_text

INTERFACE = "vector_interface.json"
PROJECTION = "vector_projection.safetensors"


def save_explainer(module, tokenizer, out_dir: Path, interface: dict | None,
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
        (out_dir / INTERFACE).write_text(json.dumps(interface, indent=2))
        if module.projection is not None:
            if projection_state is None:
                projection_state = module.projection.state_dict()
            save_file({k: v.detach().float().contiguous().cpu() for k, v in projection_state.items()},
                      str(out_dir / PROJECTION))


class ExplainerFileError(InputError):
    """An exported explainer's own files are damaged; the message names the file."""


# vector_interface.json's keys and the type each must have.
INTERFACE_KEYS = {"target_model": str, "layers": list, "d_target": int, "d_explainer": int, "projected": bool,
                  "rescale": bool}


def read_interface(path: Path) -> dict:
    """``vector_interface.json``, checked key by key: a hand edit or a cut copy fails here by name."""
    try:
        interface = json.loads(read_text(path, ExplainerFileError, "vector interface"))
    except json.JSONDecodeError as err:
        raise ExplainerFileError(f"{path}:{err.lineno} is not valid JSON ({err.msg}); export the explainer again") from None
    if not isinstance(interface, dict):
        raise ExplainerFileError(f"{path} must hold a JSON object; export the explainer again")
    for key, kind in INTERFACE_KEYS.items():
        value = interface.get(key)
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 1)):
            raise ExplainerFileError(f"{path}: key '{key}' must be a {kind.__name__}, got {value!r}; "
                                     "export the explainer again")
    if not all(isinstance(layer, int) and layer >= 0 for layer in interface["layers"]):
        raise ExplainerFileError(f"{path}: key 'layers' must list block indices; export the explainer again")
    return interface


def load_explainer(folder: str | Path, device="cpu", dtype=torch.float32, trust_remote_code: bool = False):
    """(model, tokenizer): the LM, or an :class:`ExplainerWithVectors` when the folder has a vector interface."""
    from selfexplain.models.loading import load_model, resolve_model_dir

    folder = resolve_model_dir(str(folder))  # a local folder, or a URI copied to this node
    lm, tokenizer = load_model(folder, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
    interface_path = folder / INTERFACE
    if not interface_path.is_file():
        return lm, tokenizer
    interface = read_interface(interface_path)
    projection = None
    if interface["projected"]:
        projection = VectorProjection(interface["layers"], interface["d_target"], interface["d_explainer"])
        projection.load_state_dict(load_file(str(folder / PROJECTION)))
        projection.to(device=device, dtype=dtype)
    model = ExplainerWithVectors(lm, tokenizer.convert_tokens_to_ids(VECTOR_TOKEN), projection, interface["rescale"],
                                 interface.get("reference_norm"))
    model.interface = interface
    return model.eval(), tokenizer
