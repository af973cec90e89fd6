"""What a model folder's files promise, read without loading the weights: config.json, the
safetensors headers, the model type, the depth, the module names.

The pre-run check uses these so that a damaged or mismatched model is refused with one line
before Ray starts, not as a traceback from a worker minutes later.
"""

from __future__ import annotations

import json
import struct
from functools import cache
from pathlib import Path

from selfexplain.errors import InputError

# A safetensors file: an 8-byte little-endian header length, a JSON header, then the data.
HEADER_LENGTH = struct.Struct("<Q")
MAX_HEADER_BYTES = 100 << 20  # the format's own limit


class ModelFileError(InputError, FileNotFoundError):
    """A model folder whose files cannot be what they claim; the message names the file."""


def check_safetensors(path: Path) -> None:
    """The header parses and every tensor it lists lies inside the file (a truncated download or
    a file of another format fails here)."""
    size = path.stat().st_size
    fix = "download or export the model again"
    with path.open("rb") as handle:
        head = handle.read(HEADER_LENGTH.size)
        (length,) = HEADER_LENGTH.unpack(head) if len(head) == HEADER_LENGTH.size else (-1,)
        if not 0 < length <= min(MAX_HEADER_BYTES, size - HEADER_LENGTH.size):
            raise ModelFileError(f"{path} is not a safetensors file (no valid header); {fix}")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelFileError(f"{path} has a damaged safetensors header; {fix}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} has a damaged safetensors header; {fix}")
    data_bytes = size - HEADER_LENGTH.size - length
    ends = [
        entry.get("data_offsets", [0, 0])[1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict)
    ]
    if ends and max(ends) > data_bytes:
        raise ModelFileError(
            f"{path} is truncated: its header lists {max(ends)} bytes of tensors, the file holds "
            f"{data_bytes}; {fix}"
        )


def read_config(folder: Path) -> dict:
    """The folder's config.json (checked to be readable JSON when the folder was resolved)."""
    return json.loads((folder / "config.json").read_text(encoding="utf-8"))


def text_config(config: dict) -> dict:
    """The language model's part of a config.json (a multimodal wrapper nests it)."""
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def _declared(folder: Path, keys: tuple[str, ...]) -> int | None:
    """The first of ``keys`` that the language model's config.json sets to an integer."""
    config = text_config(read_config(folder))
    return next((config[key] for key in keys if isinstance(config.get(key), int)), None)


def model_depth(folder: Path) -> int | None:
    """The number of decoder blocks config.json declares, or None if it names none."""
    return _declared(folder, ("num_hidden_layers", "n_layer", "num_layers"))


def check_model_type_known(folder: Path, trust_remote_code: bool) -> None:
    """transformers knows the folder's ``model_type`` (or the folder brings its own code and the
    config allows running it)."""
    # deferred: transformers' registry is only needed when a run's inputs are checked
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    config = read_config(folder)
    model_type = config.get("model_type")
    if model_type in CONFIG_MAPPING_NAMES or (trust_remote_code and "auto_map" in config):
        return
    raise ModelFileError(
        f"{folder / 'config.json'}: model_type {model_type!r} is not known to this transformers "
        "version; upgrade transformers, or fix model_type"
    )


@cache
def meta_model(folder: Path, trust_remote_code: bool = False):
    """The model that config.json describes, built on the meta device: its modules and parameter
    shapes, no weights read or allocated. Built once per folder: the LoRA module check and the
    GPU memory estimate both read it, and an 8B model takes seconds to build even so."""
    # deferred: torch and transformers only when a run's model is checked this closely
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def module_names(folder: Path, trust_remote_code: bool = False) -> set[str]:
    """The dotted names of the model's modules, from config.json alone."""
    return {name for name, _ in meta_model(folder, trust_remote_code).named_modules() if name}


def model_width(folder: Path) -> int | None:
    """The residual stream's width that config.json declares (``hidden_size``), or None."""
    return _declared(folder, ("hidden_size", "n_embd", "d_model"))


def is_multimodal(folder: Path) -> bool:
    """Whether config.json describes a model with a vision tower beside its language model."""
    config = read_config(folder)
    return isinstance(config.get("vision_config"), dict)
