"""The vector interface: how a target's vectors enter an explainer, as one typed record.

It is decided when training starts (from the corpus and the explainer's hidden size), completed
by the first training worker (the rescaling reference), exported as ``vector_interface.json``
beside the model, and read back, checked field by field, by evaluation and ``selfexplain explain``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from selfexplain.errors import InputError
from selfexplain.inputs import read_text

INTERFACE = "vector_interface.json"
VECTOR_CONTROLS = ("none", "zero", "shuffled")
PROJECTION_INITS = ("default", "orthogonal", "lstsq")


class ExplainerFileError(InputError):
    """An exported explainer's own files are damaged; the message names the file."""


@dataclass(frozen=True)
class VectorInterface:
    target_model: str
    """The model whose vectors the explainer reads (its reference)."""
    layers: tuple[int, ...]
    """Target layers the explainer was trained on (one projection each, when projected)."""
    d_target: int
    """Width of the target's vectors."""
    d_explainer: int
    """Width of the explainer's token embeddings."""
    projected: bool
    """A learned linear map per layer takes vectors into the explainer's embedding space."""
    rescale: bool
    """Vectors are scaled to ``reference_norm`` before injection."""
    reference_norm: float | None = None
    """The mean norm of the explainer's looked-up token embeddings at load (set by the first
    training worker)."""
    vector_control: str = "none"
    """``none``, or a "without the vector" control (``zero``, ``shuffled``) applied in training and
    scoring alike (``train.vector_control``)."""
    projection_init: str = "default"
    """How the projection starts: ``default`` (identity, or random when the widths differ),
    ``orthogonal`` (a random orthogonal map) or ``lstsq`` (fitted on shared tokens' embeddings)."""
    projection_frozen: bool = False
    """The projection keeps its starting map (the random-basis control)."""

    def with_reference_norm(self, norm: float) -> VectorInterface:
        return dataclasses.replace(self, reference_norm=norm)

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "layers": list(self.layers)}, indent=2)

    @classmethod
    def read(cls, path: Path) -> VectorInterface:
        """``vector_interface.json``, checked field by field: a hand edit or a cut copy fails here
        by name."""
        try:
            data = json.loads(read_text(path, ExplainerFileError, "vector interface"))
        except json.JSONDecodeError as err:
            raise ExplainerFileError(
                f"{path}:{err.lineno} is not valid JSON ({err.msg}); export the explainer again"
            ) from None
        if not isinstance(data, dict):
            raise ExplainerFileError(f"{path} must hold a JSON object; export the explainer again")
        for key, kind in (
            ("target_model", str),
            ("layers", list),
            ("d_target", int),
            ("d_explainer", int),
            ("projected", bool),
            ("rescale", bool),
        ):
            value = data.get(key)
            if not isinstance(value, kind) or (
                kind is int and (isinstance(value, bool) or value < 1)
            ):
                raise ExplainerFileError(
                    f"{path}: key '{key}' must be a {kind.__name__}, got {value!r}; "
                    "export the explainer again"
                )
        if not all(isinstance(layer, int) and layer >= 0 for layer in data["layers"]):
            raise ExplainerFileError(
                f"{path}: key 'layers' must list block indices; export the explainer again"
            )
        norm = data.get("reference_norm")
        if norm is not None and not (isinstance(norm, (int, float)) and norm > 0):
            raise ExplainerFileError(
                f"{path}: key 'reference_norm' must be a positive number or null"
            )
        for key, allowed in (
            ("vector_control", VECTOR_CONTROLS),
            ("projection_init", PROJECTION_INITS),
        ):
            if data.get(key, allowed[0]) not in allowed:
                raise ExplainerFileError(
                    f"{path}: key '{key}' must be one of {', '.join(allowed)}; "
                    "export the explainer again"
                )
        if not isinstance(data.get("projection_frozen", False), bool):
            raise ExplainerFileError(f"{path}: key 'projection_frozen' must be true or false")
        return cls(
            data["target_model"],
            tuple(data["layers"]),
            data["d_target"],
            data["d_explainer"],
            data["projected"],
            data["rescale"],
            None if norm is None else float(norm),
            data.get("vector_control", "none"),
            data.get("projection_init", "default"),
            data.get("projection_frozen", False),
        )
