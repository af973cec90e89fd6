"""Import SAE features in the formats public SAEs ship in: SAELens weights + Neuronpedia
descriptions.

A SAELens SAE is a directory with ``cfg.json`` (``d_in``, ``d_sae``, ``hook_name`` such as
``blocks.8.hook_resid_post``, optionally ``neuronpedia_id``) and ``sae_weights.safetensors``
(``W_dec`` of shape [d_sae, d_in]; each decoder row is a feature's direction in the stream).
A Neuronpedia explanation export is JSON (a list) or JSONL of objects with ``index`` (the
feature) and ``description``, plus ``modelId`` and ``layer`` (the SAE id, e.g. ``8-res-jb``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from selfexplain.errors import InputError
from selfexplain.inputs import read_text


class SAEFormatError(InputError):
    """The SAE or explanation file is not in the expected format; the message says what is
    missing."""


@dataclass
class SAE:
    path: Path
    sae_id: str
    layer: int
    """Decoder block whose *output* stream the SAE reads (resid_pre of block L+1 is the same)."""
    decoder: torch.Tensor
    """Float[Tensor, "d_sae d_in"]."""


_HOOK = re.compile(r"(?:blocks|layers)\.(\d+)\.hook_resid_(pre|post)")


def is_sae_dir(path: str) -> bool:
    folder = Path(path)
    return folder.is_dir() and (folder / "cfg.json").is_file()


def load_sae(path: str) -> SAE:
    folder = Path(path)
    cfg_path, weights_path = folder / "cfg.json", folder / "sae_weights.safetensors"
    for required in (cfg_path, weights_path):
        if not required.is_file():
            raise SAEFormatError(f"{folder} is not a SAELens SAE: {required.name} is missing")
    try:
        cfg = json.loads(read_text(cfg_path, SAEFormatError, "SAE config"))
    except json.JSONDecodeError as err:
        raise SAEFormatError(f"{cfg_path}:{err.lineno} is not valid JSON ({err.msg})") from None
    if not isinstance(cfg, dict):
        raise SAEFormatError(f"{cfg_path} must hold a JSON object (SAELens cfg.json)")
    hook = cfg.get("hook_name") or cfg.get("hook_point") or ""
    match = _HOOK.search(hook)
    if not match:
        raise SAEFormatError(
            f"{cfg_path}: hook_name {hook!r} is not a residual-stream hook "
            "(blocks.<L>.hook_resid_pre or _post); only residual SAEs are supported"
        )
    block, kind = int(match.group(1)), match.group(2)
    layer = block if kind == "post" else block - 1
    if layer < 0:
        raise SAEFormatError(
            f"{cfg_path}: {hook} reads the embeddings, before block 0; not supported"
        )
    try:
        weights = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own SafetensorError on a damaged file
        raise SAEFormatError(f"{weights_path} is not a readable safetensors file ({err})") from None
    if "W_dec" not in weights:
        raise SAEFormatError(f"{weights_path} has no W_dec tensor (found {sorted(weights)})")
    decoder = weights["W_dec"].float()
    d_in = cfg.get("d_in", decoder.shape[1])
    if decoder.ndim != 2 or decoder.shape[1] != d_in:
        raise SAEFormatError(
            f"{weights_path}: W_dec has shape {tuple(decoder.shape)}, expected [d_sae, {d_in}]"
        )
    sae_id = cfg.get("neuronpedia_id") or f"{cfg.get('model_name', 'model')}/{layer}-res"
    return SAE(folder, sae_id, layer, decoder)


def read_explanations(path: str) -> dict[int, str]:
    """Feature index -> description from a Neuronpedia export (.json list or .jsonl); the first
    description of an index wins."""
    file = Path(path)
    text = read_text(
        file,
        SAEFormatError,
        "explanation export",
        "set generate.explanations to a Neuronpedia .json/.jsonl export",
    )
    try:
        records = (
            json.loads(text)
            if file.suffix == ".json"
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as err:
        raise SAEFormatError(f"{file} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(records, dict):
        records = records.get("explanations", [])
    descriptions: dict[int, str] = {}
    for number, record in enumerate(records, start=1):
        if (
            not isinstance(record, dict)
            or "index" not in record
            or not isinstance(record.get("description"), str)
        ):
            raise SAEFormatError(f"{file}: entry {number} needs 'index' and a string 'description'")
        try:
            index = int(record["index"])
        except (TypeError, ValueError):
            raise SAEFormatError(
                f"{file}: entry {number} has index {record['index']!r}; use a feature number"
            ) from None
        descriptions.setdefault(index, record["description"].strip())
    if not descriptions:
        raise SAEFormatError(f"{file} holds no explanations")
    return descriptions


def write_saelens(
    folder: Path, decoder: torch.Tensor, layer: int, model_name: str, neuronpedia_id: str = ""
) -> None:
    """Write a minimal SAELens-format SAE (decoder plus a matching encoder), for tests and tools."""

    folder.mkdir(parents=True, exist_ok=True)
    d_sae, d_in = decoder.shape
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "hook_name": f"blocks.{layer}.hook_resid_post",
        "hook_layer": layer,
        "model_name": model_name,
        "architecture": "standard",
    }
    if neuronpedia_id:
        cfg["neuronpedia_id"] = neuronpedia_id
    (folder / "cfg.json").write_text(json.dumps(cfg, indent=2))
    save_file(
        {
            "W_dec": decoder.contiguous(),
            "W_enc": decoder.T.contiguous(),
            "b_enc": torch.zeros(d_sae),
            "b_dec": torch.zeros(d_in),
        },
        str(folder / "sae_weights.safetensors"),
    )
