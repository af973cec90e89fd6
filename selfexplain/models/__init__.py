"""Models: loading (HF directories, GGUF, embedded names, tiny test models) and their hook
points."""

from selfexplain.models.architectures import ARCHITECTURES, arch_spec, hidden_size, num_layers
from selfexplain.models.hooks import capture_residual, patch_residual
from selfexplain.models.loading import (
    EMBEDDED,
    ModelNotFoundError,
    load_model,
    load_tokenizer,
    resolve_model_dir,
)

__all__ = [
    "ARCHITECTURES",
    "EMBEDDED",
    "ModelNotFoundError",
    "arch_spec",
    "capture_residual",
    "hidden_size",
    "load_model",
    "load_tokenizer",
    "num_layers",
    "patch_residual",
    "resolve_model_dir",
]
